//! Errors, and the one place they become responses: short plain text, never stored. The error
//! rides along in the response's extensions, so `Proxy::finish` can name it in `Cache-Status`.

use std::error::Error as StdError;
use std::io;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{BodyStalled, ProxyBody};
use crate::normalize::NormalizeError;

/// What went wrong while answering a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// The request target could not be normalized.
    #[error("{0}")]
    BadRequest(#[from] NormalizeError),
    /// The origin could not be reached (or its certificate was rejected).
    #[error("{}", connect_text(*.0))]
    Connect(OriginCause),
    /// The origin did not answer in time.
    #[error("origin timed out")]
    Timeout,
    /// The origin answered something unusable or closed mid-response.
    #[error("bad origin response")]
    Origin(OriginCause),
    /// The origin answered with this server error (reported when a stale object stood in).
    #[error("origin answered {0}")]
    OriginStatus(StatusCode),
    /// `only-if-cached` and nothing suitable is stored.
    #[error("not cached")]
    NotCached,
    /// The request body is larger than `server.max_body_size`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request body could not be read (malformed chunked encoding, client gone).
    #[error("malformed request body")]
    BadBody,
    /// The request target is longer than `server.max_uri_length`.
    #[error("request target too long")]
    UriTooLong,
    /// The request is for a host outside `server.hosts`.
    #[error("this server does not answer for that host")]
    Misdirected,
    /// On a `shared-verified` route, the origin recently rejected this credential.
    #[error("credential rejected by the origin")]
    CredentialRejected(crate::verify::Rejection),
}

impl ProxyError {
    /// The status a client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) | ProxyError::BadBody => StatusCode::BAD_REQUEST,
            ProxyError::UriTooLong => StatusCode::URI_TOO_LONG,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Connect(_) | ProxyError::Origin(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout | ProxyError::NotCached => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::OriginStatus(s) if *s == StatusCode::GATEWAY_TIMEOUT => *s,
            ProxyError::OriginStatus(_) => StatusCode::BAD_GATEWAY,
            ProxyError::CredentialRejected(r) => r.status,
        }
    }

    /// Whether the origin is to blame (counted in `apicache_origin_errors_total`).
    pub fn is_origin_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::Connect(_)
                | ProxyError::Timeout
                | ProxyError::Origin(_)
                | ProxyError::OriginStatus(_)
        )
    }

    /// The `Cache-Status` detail naming this error: the origin failure's cause, or what was wrong
    /// with the request.
    pub fn detail(&self) -> &'static str {
        match self {
            ProxyError::BadRequest(_) => "bad-request",
            ProxyError::Connect(c) | ProxyError::Origin(c) => c.as_str(),
            ProxyError::Timeout => OriginCause::Timeout.as_str(),
            ProxyError::OriginStatus(_) => "origin-error",
            ProxyError::NotCached => "only-if-cached",
            ProxyError::PayloadTooLarge => "body-too-large",
            ProxyError::BadBody => "bad-body",
            ProxyError::UriTooLong => "uri-too-long",
            ProxyError::Misdirected => "misdirected",
            ProxyError::CredentialRejected(_) => "credential-rejected",
        }
    }

    /// The `fwd-status` this error stands for: the origin's own status, or the one answered for it.
    pub fn fwd_status(&self) -> u16 {
        match self {
            ProxyError::OriginStatus(s) => s.as_u16(),
            e => e.status().as_u16(),
        }
    }

    /// A short plain-text response, carrying the error in its extensions.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut r = plain_text(self.status(), format!("{self}\n"));
        if let ProxyError::CredentialRejected(rejection) = &self {
            if let Some(c) = &rejection.challenge {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, c.clone());
            }
        }
        r.extensions_mut().insert(self);
        r
    }
}

/// A connect failure's body: a rejected certificate is told apart from an unreachable origin,
/// so whoever reads the 502 looks at the certificate (the reason is in the log, not the body).
fn connect_text(cause: OriginCause) -> &'static str {
    match cause {
        OriginCause::Certificate => "origin certificate rejected",
        OriginCause::Tls => "origin TLS handshake failed",
        _ => "origin unreachable",
    }
}

/// Why an exchange with the origin failed, as logs and `Cache-Status` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginCause {
    /// Nothing listens on the origin's port (connection refused).
    Refused,
    /// Connecting, the response head or a body chunk took too long.
    Timeout,
    /// The origin reset the connection.
    Reset,
    /// The origin closed the connection before a complete response.
    Closed,
    /// The origin's certificate was rejected (unknown issuer, wrong name, expired...).
    Certificate,
    /// The TLS handshake or the TLS layer failed for another reason.
    Tls,
    /// The origin's bytes were not a usable HTTP response (or a corrupt gzip or zstd body).
    Protocol,
    /// Anything else (a DNS failure, a panicked fill).
    Other,
}

/// `e` and its `source()` chain, at most 16 links (a chain may be cyclic or absurdly deep). An
/// `io::Error` wrapping another error links to that error itself: its own `source()` skips it
/// (hyper-rustls wraps rustls' error in two of them).
pub fn sources<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut cur = Some(e);
    std::iter::from_fn(move || {
        let this = cur?;
        cur = match this.downcast_ref::<io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => this.source(),
        };
        Some(this)
    })
    .take(16)
}

impl OriginCause {
    /// The token logs and `Cache-Status` use.
    pub fn as_str(self) -> &'static str {
        match self {
            OriginCause::Refused => "refused",
            OriginCause::Timeout => "timeout",
            OriginCause::Reset => "reset",
            OriginCause::Closed => "closed",
            OriginCause::Certificate => "certificate",
            OriginCause::Tls => "tls",
            OriginCause::Protocol => "protocol",
            OriginCause::Other => "other",
        }
    }

    /// Classify an error by walking its `source()` chain (at most 16 links): a certificate
    /// rustls rejected, then TLS wording (TLS libraries wrap their errors in `io::Error`s of
    /// unrelated kinds), then the first `io::Error` kind, hyper's own kinds, and an idle body.
    pub fn of(e: &(dyn StdError + 'static)) -> Self {
        if sources(e).any(|err| {
            matches!(
                err.downcast_ref::<rustls::Error>(),
                Some(rustls::Error::InvalidCertificate(_))
            )
        }) {
            return OriginCause::Certificate;
        }
        if sources(e).any(|err| err.is::<rustls::Error>() || looks_like_tls(err)) {
            return OriginCause::Tls;
        }
        for err in sources(e) {
            if let Some(io) = err.downcast_ref::<io::Error>() {
                match io_cause(io.kind()) {
                    OriginCause::Other => {}
                    cause => return cause,
                }
            }
            if err.is::<BodyStalled>() || err.is::<tokio::time::error::Elapsed>() {
                return OriginCause::Timeout;
            }
            if let Some(h) = err.downcast_ref::<hyper::Error>() {
                if h.is_timeout() {
                    return OriginCause::Timeout;
                }
                if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                    return OriginCause::Closed;
                }
                if h.is_parse() || h.is_parse_status() || h.is_parse_too_large() {
                    return OriginCause::Protocol;
                }
            }
        }
        OriginCause::Other
    }
}

/// The cause an `io::Error` kind stands for (`Other` when it says nothing specific).
fn io_cause(kind: io::ErrorKind) -> OriginCause {
    use io::ErrorKind::*;
    match kind {
        ConnectionRefused => OriginCause::Refused,
        TimedOut | WouldBlock => OriginCause::Timeout,
        ConnectionReset | ConnectionAborted | BrokenPipe => OriginCause::Reset,
        UnexpectedEof | NotConnected => OriginCause::Closed,
        _ => OriginCause::Other,
    }
}

/// Whether an error's own message speaks of TLS (rustls, native-tls and OpenSSL wordings).
fn looks_like_tls(e: &(dyn StdError + 'static)) -> bool {
    let msg = e.to_string().to_ascii_lowercase();
    ["tls", "ssl", "certificate", "handshake"]
        .iter()
        .any(|w| msg.contains(w))
}

/// Why an admin call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// No or wrong bearer token.
    #[error("missing or wrong admin token")]
    Unauthorized,
    /// `POST /purge` without keys.
    #[error("POST /purge needs a Surrogate-Key header")]
    NoKeys,
    /// More keys than one purge may name.
    #[error("at most {} keys per purge", crate::admin::MAX_PURGE_KEYS)]
    TooManyKeys,
    /// An empty key, or one with a space or a control character.
    #[error("bad surrogate key")]
    BadKey,
    /// The keys of one purge take more bytes than the purge log carries.
    #[error("the keys of one purge may take at most 64KiB")]
    KeysTooLong,
    /// `PURGE` with a target that cannot be normalized.
    #[error("malformed URL")]
    BadUrl,
    /// Unknown admin path.
    #[error("not found")]
    NotFound,
    /// `POST /reload` on a proxy started from a config that was not read from a file.
    #[error("nothing to reload: apicache was not started from a config file")]
    NoConfigFile,
    /// `POST /reload` with a new config that is invalid (file, key and why); the running one
    /// was kept.
    #[error("config rejected, the running config is kept: {0}")]
    ReloadRejected(String),
    /// A cluster purge that could not be logged (Redis unreachable): no node applied it.
    #[error("{0}")]
    ClusterUnavailable(String),
}

impl AdminError {
    /// The status the caller gets.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::NotFound => StatusCode::NOT_FOUND,
            AdminError::NoConfigFile => StatusCode::CONFLICT,
            AdminError::ReloadRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            AdminError::ClusterUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A short plain-text response (with `WWW-Authenticate` for 401).
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut r = plain_text(self.status(), format!("{self}\n"));
        if self == AdminError::Unauthorized {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// A plain-text response that no cache stores.
pub fn plain_text(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body.into()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_is_short_uncacheable_text() {
        let proxy = [
            (ProxyError::BadRequest(NormalizeError::NotAPath), 400),
            (ProxyError::Connect(OriginCause::Refused), 502),
            (ProxyError::Connect(OriginCause::Certificate), 502),
            (ProxyError::Origin(OriginCause::Closed), 502),
            (ProxyError::Timeout, 504),
            (ProxyError::NotCached, 504),
            (ProxyError::PayloadTooLarge, 413),
            (
                ProxyError::OriginStatus(StatusCode::SERVICE_UNAVAILABLE),
                502,
            ),
            (ProxyError::OriginStatus(StatusCode::GATEWAY_TIMEOUT), 504),
        ]
        .map(|(e, s)| (e.into_response(), s));
        let admin = [
            (AdminError::Unauthorized, 401),
            (AdminError::NoKeys, 400),
            (AdminError::TooManyKeys, 400),
            (AdminError::BadKey, 400),
            (AdminError::KeysTooLong, 400),
            (AdminError::BadUrl, 400),
            (AdminError::NotFound, 404),
            (AdminError::NoConfigFile, 409),
            (AdminError::ReloadRejected("f: key `k`: why".into()), 422),
            (AdminError::ClusterUnavailable("redis down".into()), 503),
        ]
        .map(|(e, s)| (e.into_response(), s));
        for (r, status) in proxy.into_iter().chain(admin) {
            assert_eq!(r.status().as_u16(), status);
            assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
            assert!(r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain"));
        }
        assert_eq!(
            AdminError::Unauthorized.into_response().headers()[header::WWW_AUTHENTICATE],
            "Bearer"
        );
        assert_eq!(
            AdminError::TooManyKeys.to_string(),
            "at most 256 keys per purge"
        );
        assert_eq!(
            ProxyError::OriginStatus(StatusCode::SERVICE_UNAVAILABLE).fwd_status(),
            503
        );
        assert_eq!(ProxyError::Connect(OriginCause::Refused).fwd_status(), 502);
        // (cause, body, Cache-Status detail)
        let connects = [
            (OriginCause::Refused, "origin unreachable", "refused"),
            (
                OriginCause::Certificate,
                "origin certificate rejected",
                "certificate",
            ),
            (OriginCause::Tls, "origin TLS handshake failed", "tls"),
        ];
        for (cause, body, detail) in connects {
            let e = ProxyError::Connect(cause);
            assert_eq!((e.to_string().as_str(), e.detail()), (body, detail));
        }
        let r = ProxyError::Timeout.into_response();
        assert_eq!(
            r.extensions().get::<ProxyError>().unwrap().detail(),
            "timeout"
        );
    }

    /// An error that wraps another, as hyper-util's connect errors and TLS libraries do.
    #[derive(Debug)]
    struct Wrap(&'static str, Option<Box<dyn StdError + Send + Sync>>);

    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Wrap {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|e| e as &(dyn StdError + 'static))
        }
    }

    fn wrap(msg: &'static str, inner: impl StdError + Send + Sync + 'static) -> Wrap {
        Wrap(msg, Some(Box::new(inner)))
    }

    #[test]
    fn origin_failure_causes_from_error_chains() {
        use io::ErrorKind as K;
        let io = |k: K| io::Error::new(k, "os error");
        let rows: Vec<(Box<dyn StdError + Send + Sync>, OriginCause)> = vec![
            (
                Box::new(wrap("tcp connect error", io(K::ConnectionRefused))),
                OriginCause::Refused,
            ),
            (
                Box::new(wrap(
                    "client error (Connect)",
                    wrap("tcp connect error", io(K::TimedOut)),
                )),
                OriginCause::Timeout,
            ),
            (
                Box::new(wrap("connection error", io(K::ConnectionReset))),
                OriginCause::Reset,
            ),
            (Box::new(io(K::BrokenPipe)), OriginCause::Reset),
            (Box::new(io(K::UnexpectedEof)), OriginCause::Closed),
            (Box::new(wrap("body", BodyStalled)), OriginCause::Timeout),
            (
                Box::new(wrap(
                    "client error (Connect)",
                    io::Error::new(K::InvalidData, "invalid peer certificate: UnknownIssuer"),
                )),
                OriginCause::Tls,
            ),
            (
                Box::new(io::Error::other("received fatal alert: HandshakeFailure")),
                OriginCause::Tls,
            ),
            // As hyper-rustls reports them: rustls' error in an io::Error in an io::Error.
            (
                Box::new(wrap(
                    "client error (Connect)",
                    io::Error::other(io::Error::new(
                        K::InvalidData,
                        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
                    )),
                )),
                OriginCause::Certificate,
            ),
            (
                Box::new(io::Error::other(io::Error::new(
                    K::InvalidData,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
                ))),
                OriginCause::Certificate,
            ),
            (
                Box::new(io::Error::other(io::Error::new(
                    K::InvalidData,
                    rustls::Error::NoApplicationProtocol,
                ))),
                OriginCause::Tls,
            ),
            // A kind that says nothing, under one that does: the specific one wins.
            (
                Box::new(io::Error::other(wrap("x", io(K::ConnectionRefused)))),
                OriginCause::Refused,
            ),
            (
                Box::new(wrap("dns error", io(K::Other))),
                OriginCause::Other,
            ),
            (Box::new(Wrap("no source", None)), OriginCause::Other),
        ];
        for (e, want) in rows {
            assert_eq!(OriginCause::of(e.as_ref()), want, "{e}");
        }
    }

    #[test]
    fn a_cycle_of_sources_is_walked_a_bounded_number_of_times() {
        #[derive(Debug)]
        struct Loop;
        impl std::fmt::Display for Loop {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("loop")
            }
        }
        impl StdError for Loop {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&Loop)
            }
        }
        assert_eq!(OriginCause::of(&Loop), OriginCause::Other);
    }
}
