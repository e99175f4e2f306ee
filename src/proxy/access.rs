//! The access log: one line per request (target `apicache::access`), written once its body is
//! sent. A complete body (every cached answer, every error) is written at once and logged with
//! its length; a streamed body (origin answers passed through) is counted as it goes and logged
//! when it ends, or when it is dropped unfinished (`complete=false`: client gone, origin failed).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::BodyExt;

use crate::body::{BoxError, ProxyBody};

/// Everything the line says but the bytes sent.
pub(super) struct AccessLine {
    pub method: Method,
    /// The normalized target (never holding a moved API key), or `-` for a refused request.
    pub path: String,
    pub status: u16,
    /// X-Cache, or `-` for a refused request.
    pub cache: &'static str,
    /// Cache-Status' `detail`, or `-`.
    pub detail: &'static str,
    /// The peer, or the client a trusted proxy forwarded for.
    pub client: String,
    pub request_id: HeaderValue,
    /// Milliseconds waiting for the origin; -1 when it was not asked.
    pub origin_ms: i64,
    pub start: Instant,
}

impl AccessLine {
    /// Whether access lines are written at all (skip building them otherwise).
    pub fn enabled() -> bool {
        tracing::enabled!(target: "apicache::access", tracing::Level::INFO)
    }

    fn emit(&self, bytes: u64, complete: bool) {
        tracing::info!(
            target: "apicache::access",
            method = %self.method,
            path = %self.path,
            status = self.status,
            cache = self.cache,
            detail = %self.detail,
            client = %self.client,
            bytes,
            complete,
            request_id = %self.request_id.to_str().unwrap_or("-"),
            origin_ms = self.origin_ms,
            total_us = self.start.elapsed().as_micros() as u64,
        );
    }

    /// Log `resp` now if its body is complete or empty, else when its stream ends.
    pub fn attach(self, resp: Response<ProxyBody>) -> Response<ProxyBody> {
        // hyper never polls these bodies: waiting for their end would log them as cut short.
        if self.method == http::Method::HEAD || matches!(self.status, 100..=199 | 204 | 304) {
            self.emit(0, true);
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let body = match body {
            ProxyBody::Full(b) => {
                self.emit(b.as_ref().map_or(0, |b| b.len() as u64), true);
                ProxyBody::Full(b)
            }
            ProxyBody::Stream(s) if s.is_end_stream() => {
                self.emit(0, true);
                ProxyBody::Stream(s)
            }
            ProxyBody::Stream(s) => {
                let expected = s.size_hint().exact();
                let counted = Counted {
                    inner: s,
                    log: Pending {
                        line: Some(self),
                        bytes: 0,
                        expected,
                    },
                };
                ProxyBody::Stream(counted.boxed())
            }
        };
        Response::from_parts(parts, body)
    }
}

/// The line of a body still being sent, and the bytes sent so far.
struct Pending {
    line: Option<AccessLine>,
    bytes: u64,
    /// The body's declared length: a connection may stop polling once it has written that much.
    expected: Option<u64>,
}

impl Pending {
    fn finish(&mut self, complete: bool) {
        if let Some(line) = self.line.take() {
            line.emit(self.bytes, complete);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let complete = self.expected == Some(self.bytes);
        self.finish(complete);
    }
}

/// A streamed body that counts its data bytes for the access log.
struct Counted {
    inner: BoxBody<Bytes, BoxError>,
    log: Pending,
}

impl Body for Counted {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.log.bytes += data.len() as u64;
                }
            }
            Poll::Ready(Some(Err(_))) => this.log.finish(false),
            Poll::Ready(None) => this.log.finish(true),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Captures formatted events in memory for the duration of one test thread.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn line() -> AccessLine {
        AccessLine {
            method: Method::GET,
            path: "/a?b=1".into(),
            status: 200,
            cache: "PASS",
            detail: "-",
            client: "127.0.0.1:5000".into(),
            request_id: HeaderValue::from_static("rid-1"),
            origin_ms: 3,
            start: Instant::now(),
        }
    }

    fn logged(f: impl FnOnce()) -> String {
        let buf = Buf::default();
        let out = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, f);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        text
    }

    fn stream(chunks: &'static [&'static [u8]]) -> ProxyBody {
        let frames = chunks
            .iter()
            .map(|c| Ok::<_, BoxError>(Frame::data(Bytes::from_static(c))));
        ProxyBody::stream(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
    }

    fn drain(resp: Response<ProxyBody>, frames: usize) {
        let mut body = resp.into_body();
        let mut cx = Context::from_waker(std::task::Waker::noop());
        for _ in 0..frames {
            let _ = Pin::new(&mut body).poll_frame(&mut cx);
        }
    }

    #[test]
    fn complete_bodies_are_logged_at_once_with_their_length() {
        let text = logged(|| {
            let resp = line().attach(Response::new(ProxyBody::full("0123456789")));
            drop(resp);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        for field in [
            "method=GET",
            "path=/a?b=1",
            "status=200",
            "cache=\"PASS\"",
            "client=127.0.0.1:5000",
            "bytes=10",
            "complete=true",
            "request_id=rid-1",
            "detail=-",
            "origin_ms=3",
        ] {
            assert!(text.contains(field), "{field} missing: {text}");
        }
        assert!(!text.contains("Some("), "{text}");
    }

    #[test]
    fn streamed_bodies_are_logged_when_they_end() {
        let text = logged(|| {
            let resp = line().attach(Response::new(stream(&[b"abc", b"defg"])));
            drain(resp, 3);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("bytes=7 complete=true"), "{text}");
        // Dropped after one chunk: what was sent, and that it was cut short.
        let text = logged(|| {
            let resp = line().attach(Response::new(stream(&[b"abc", b"defg"])));
            drain(resp, 1);
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("bytes=3 complete=false"), "{text}");
    }
}
