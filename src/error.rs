//! Errors, and the one place they become responses: short plain text, never stored.

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;
use crate::normalize::NormalizeError;

/// What went wrong while answering a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// The request target could not be normalized.
    #[error("{0}")]
    BadRequest(#[from] NormalizeError),
    /// The origin could not be reached.
    #[error("origin unreachable")]
    Connect,
    /// The origin did not answer in time.
    #[error("origin timed out")]
    Timeout,
    /// The origin answered something unusable or closed mid-response.
    #[error("bad origin response")]
    Origin,
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
            ProxyError::Connect | ProxyError::Origin => StatusCode::BAD_GATEWAY,
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
            ProxyError::Connect
                | ProxyError::Timeout
                | ProxyError::Origin
                | ProxyError::OriginStatus(_)
        )
    }

    /// The `fwd-status` this error stands for: the origin's own status, or the one answered for it.
    pub fn fwd_status(&self) -> u16 {
        match self {
            ProxyError::OriginStatus(s) => s.as_u16(),
            e => e.status().as_u16(),
        }
    }

    /// A short plain-text response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut r = plain_text(self.status(), format!("{self}\n"));
        if let ProxyError::CredentialRejected(rejection) = self {
            if let Some(c) = rejection.challenge {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, c);
            }
        }
        r
    }
}

/// Why an admin call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
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
    /// An empty key or one with a space.
    #[error("bad surrogate key")]
    BadKey,
    /// `PURGE` with a target that cannot be normalized.
    #[error("malformed URL")]
    BadUrl,
    /// Unknown admin path.
    #[error("not found")]
    NotFound,
}

impl AdminError {
    /// The status the caller gets.
    pub fn status(self) -> StatusCode {
        match self {
            AdminError::Unauthorized => StatusCode::UNAUTHORIZED,
            AdminError::NotFound => StatusCode::NOT_FOUND,
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
            (ProxyError::Connect, 502),
            (ProxyError::Origin, 502),
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
            (AdminError::BadUrl, 400),
            (AdminError::NotFound, 404),
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
        assert_eq!(ProxyError::Connect.fwd_status(), 502);
    }
}
