//! Response bodies: a plain `Full` for cache hits (no boxing on the hot path) or a boxed stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;

/// Errors carried by streamed bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The length a message declares in `Content-Length`, if it is a valid number.
pub fn declared_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A client's request body failed while it was being forwarded: the client's fault, not the
/// origin's (answered 400 or 413, never counted as an origin error).
#[derive(Debug, thiserror::Error)]
pub enum ClientBodyError {
    /// Over `server.max_body_size`.
    #[error("request body over the limit")]
    TooLarge,
    /// Malformed framing (bad chunk size) or the client went away.
    #[error("malformed request body: {0}")]
    Malformed(String),
}

impl ClientBodyError {
    /// Classify a body error from `Limited<Incoming>`.
    pub fn from_limited(e: BoxError) -> BoxError {
        let e = if e.is::<http_body_util::LengthLimitError>() {
            ClientBodyError::TooLarge
        } else {
            ClientBodyError::Malformed(e.to_string())
        };
        Box::new(e)
    }

    /// The client body error somewhere in `e`'s source chain, if any.
    pub fn find<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ClientBodyError> {
        crate::error::sources(e).find_map(|err| err.downcast_ref::<ClientBodyError>())
    }
}

/// The body of every response apicache sends.
pub enum ProxyBody {
    /// A complete body from the cache (or a short error text).
    Full(Option<Bytes>),
    /// A body streamed from the origin.
    Stream(BoxBody<Bytes, BoxError>),
}

impl ProxyBody {
    /// No body.
    pub fn empty() -> Self {
        ProxyBody::Full(None)
    }

    /// A complete body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        ProxyBody::Full((!b.is_empty()).then_some(b))
    }

    /// Box any body with the right data type.
    pub fn stream<B>(b: B) -> Self
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        ProxyBody::Stream(b.map_err(Into::into).boxed())
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Stream(s) => s.size_hint(),
        }
    }
}

pin_project_lite::pin_project! {
    /// Fails a streamed body when no frame arrives for `idle`, so a stalled origin cannot hold a client forever.
    pub struct IdleTimeout<B> {
        #[pin]
        inner: B,
        #[pin]
        sleep: tokio::time::Sleep,
        idle: Duration,
    }
}

impl<B> IdleTimeout<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, idle: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(idle),
            idle,
        }
    }
}

/// The error an [`IdleTimeout`] body fails with.
#[derive(Debug, thiserror::Error)]
#[error("origin body stalled")]
pub struct BodyStalled;

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(f) => {
                let deadline = tokio::time::Instant::now() + *this.idle;
                this.sleep.reset(deadline);
                Poll::Ready(f.map(|r| r.map_err(Into::into)))
            }
            Poll::Pending => match std::future::Future::poll(this.sleep, cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyStalled)))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
