//! The pooled client to the origin: absolute URIs, hop-by-hop stripping, forwarding headers,
//! timeouts; HTTP/1.1 or HTTP/2 (`origin.http2`), over TLS for `https` ([`tls`], [`connect`]).

mod connect;
pub mod tls;

use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri, Version};
use http_body::Body as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Builder;
use hyper_util::client::legacy::{connect::HttpConnector, Client, Error as LegacyError};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ClientBodyError;
use crate::config::{Http2, OriginConfig};
use crate::error::{OriginCause, ProxyError};
use crate::request_id::REQUEST_ID;

/// Request bodies sent to the origin.
pub type OriginBody = BoxBody<Bytes, crate::body::BoxError>;

/// An empty request body.
pub fn empty_body() -> OriginBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// The origin and its connection pool.
pub struct Origin {
    client: Client<connect::OriginConnector, OriginBody>,
    /// No pooling: every request on a new connection, for the one retry after a pooled
    /// connection failed.
    fresh: Client<connect::OriginConnector, OriginBody>,
    /// The requests' authority: `origin.host` when set, else `origin.url`'s.
    authority: Authority,
    cfg: OriginConfig,
}

impl Origin {
    /// Build the pooled client.
    pub fn new(cfg: &OriginConfig) -> Self {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(cfg.connect_timeout));
        tcp.set_nodelay(true);
        tcp.set_keepalive(Some(Duration::from_secs(60)));
        let connector = connect::OriginConnector::new(cfg, tcp);
        let buf = usize::try_from(cfg.max_header_size.as_u64()).unwrap_or(usize::MAX);
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .http1_max_buf_size(buf)
            // `always`: h2 only (ALPN h2 over TLS, prior knowledge over http). Otherwise a TLS
            // connection is h2 when ALPN picked it, HTTP/1.1 else.
            .http2_only(cfg.http2_mode() == Http2::Always)
            // An HTTP/2 response head is bounded like an HTTP/1 one.
            .http2_max_header_list_size(u32::try_from(buf).unwrap_or(u32::MAX))
            .timer(TokioTimer::new());
        let client = pooled(builder.clone(), cfg).build(connector.clone());
        let fresh = builder.pool_max_idle_per_host(0).build(connector);
        // `origin.host` was validated as a host[:port] when the config was loaded.
        let host = cfg.host.as_deref().and_then(|h| h.parse().ok());
        Self {
            client,
            fresh,
            authority: host.unwrap_or_else(|| cfg.authority.clone()),
            cfg: cfg.clone(),
        }
    }

    /// The absolute URI of a normalized path on the origin; its authority is `origin.host`
    /// when set (the `Host` or `:authority` sent; the connection still goes to `origin.url`).
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, ProxyError> {
        let pq = format!("{}{}", self.cfg.base_path, path_and_query);
        Uri::builder()
            .scheme(self.cfg.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| ProxyError::BadRequest(crate::normalize::NormalizeError::NotAPath))
    }

    /// Idle time allowed between body chunks.
    pub fn body_timeout(&self) -> Duration {
        self.cfg.body_timeout
    }

    /// Send a request; errors map to 502 (connect, certificate, bad response) and 504 (no
    /// headers in time),
    /// and are logged with their cause, the origin's address and the request id.
    ///
    /// A bodiless GET or HEAD that fails without a response (typically a pooled connection the
    /// origin closed as it was reused: Node's keep-alive timeout, worker recycling) is retried
    /// once on a new connection, within the same `origin.timeout`.
    pub async fn send(
        &self,
        mut req: Request<OriginBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        // Whatever the client used: the pool refuses an HTTP/2 request on an HTTP/1 connection,
        // and an HTTP/2 connection (ALPN or `always`) ignores the version.
        *req.version_mut() = Version::HTTP_11;
        let request_id = req.headers().get(REQUEST_ID).cloned();
        let path = req.uri().path().to_string();
        let (e, why) = match self.exchange(req).await {
            Ok(resp) => return Ok(resp),
            Err(failed) => failed,
        };
        if e.is_origin_failure() {
            self.log_failure(request_id.as_ref(), &path, &e, &why);
        } else {
            tracing::debug!(error = %why, "client request body failed");
        }
        Err(e)
    }

    /// Log an origin failure with its cause, the origin's address and the request id (`why`: the
    /// underlying error chain).
    pub fn log_failure(
        &self,
        request_id: Option<&HeaderValue>,
        path: &str,
        e: &ProxyError,
        why: &str,
    ) {
        let id = request_id.and_then(|v| v.to_str().ok());
        tracing::warn!(
            origin = %self.cfg.authority,
            cause = %e.detail(),
            request_id = %id.unwrap_or("-"),
            path = %path,
            error = %why,
            "origin request failed"
        );
    }

    /// [`Origin::send`] without the failure log: the error, and the whole chain behind it.
    async fn exchange(
        &self,
        req: Request<OriginBody>,
    ) -> Result<Response<Incoming>, (ProxyError, String)> {
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let idempotent = matches!(*req.method(), Method::GET | Method::HEAD);
        let again = (idempotent && req.body().is_end_stream()).then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            )
        });
        let first = tokio::time::timeout_at(deadline, self.client.request(req)).await;
        let (method, uri, headers) = match (first, again) {
            // A connect failure (TLS handshakes and certificates included) is the origin's
            // answer, not a stale pooled connection: a new connection would fail the same way.
            // A pooled TLS connection the origin closed without close_notify is not one: it is
            // retried like a plain one.
            (Ok(Err(e)), Some(again)) if !e.is_connect() => {
                // Fields are only evaluated when debug lines are on: this path costs nothing else.
                tracing::debug!(
                    error = %error_chain(&e),
                    cause = OriginCause::of(&e).as_str(),
                    "origin request failed before a response: retrying once"
                );
                again
            }
            (first, _) => return self.outcome(first),
        };
        let mut req = Request::new(empty_body());
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        self.outcome(tokio::time::timeout_at(deadline, self.fresh.request(req)).await)
    }

    fn outcome(
        &self,
        r: Result<Result<Response<Incoming>, LegacyError>, tokio::time::error::Elapsed>,
    ) -> Result<Response<Incoming>, (ProxyError, String)> {
        match r {
            Err(_) => {
                let why = format!("no response headers within {:?}", self.cfg.timeout);
                Err((ProxyError::Timeout, why))
            }
            Ok(Err(e)) if e.is_connect() => {
                Err((ProxyError::Connect(OriginCause::of(&e)), error_chain(&e)))
            }
            Ok(Err(e)) => {
                let why = error_chain(&e);
                match ClientBodyError::find(&e) {
                    Some(ClientBodyError::TooLarge) => Err((ProxyError::PayloadTooLarge, why)),
                    Some(ClientBodyError::Malformed(_)) => Err((ProxyError::BadBody, why)),
                    None => Err((ProxyError::Origin(OriginCause::of(&e)), why)),
                }
            }
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// The pooled client's settings: idle connections kept `pool_idle_timeout`, at most
/// `pool_max_idle_per_host`.
fn pooled(mut builder: Builder, cfg: &OriginConfig) -> Builder {
    builder
        .pool_idle_timeout(cfg.pool_idle_timeout)
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .pool_timer(TokioTimer::new());
    builder
}

/// An error and its sources, `: `-separated (at most 16 links; a link that repeats the previous
/// one's text is skipped).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut prev = out.clone();
    for err in crate::error::sources(e).skip(1) {
        let msg = err.to_string();
        if msg != prev && !prev.ends_with(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        prev = msg;
    }
    out
}

/// Remove the fields of an origin response that belong to one exchange and are never stored or
/// replayed: hop-by-hop fields, and the request id an origin may echo.
pub fn strip_response_fields(h: &mut HeaderMap) {
    strip_hop_by_hop(h);
    h.remove(REQUEST_ID);
}

/// Hop-by-hop fields (RFC 9110 §7.6.1) plus the ones a `Connection` header names.
pub fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|s| HeaderName::from_bytes(s.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
    ] {
        h.remove(n);
    }
    h.remove("keep-alive");
    h.remove("proxy-connection");
}

/// Append this proxy to `Via`.
pub fn add_via(h: &mut HeaderMap, version: Version, pseudonym: &str) {
    let proto = match version {
        Version::HTTP_2 => "2",
        Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    let value = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {proto} {pseudonym}"),
        None => format!("{proto} {pseudonym}"),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(header::VIA, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_fields_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
        // An origin's echo of the request id is one exchange's, never stored or replayed.
        h.insert(REQUEST_ID, HeaderValue::from_static("abc"));
        strip_response_fields(&mut h);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn error_chains_are_joined_without_repeats() {
        let inner = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = std::io::Error::other(crate::body::BodyStalled);
        assert_eq!(error_chain(&e), "origin body stalled");
        #[derive(Debug, thiserror::Error)]
        #[error("tcp connect error")]
        struct Outer(#[source] std::io::Error);
        assert_eq!(error_chain(&Outer(inner)), "tcp connect error: refused");
    }
}
