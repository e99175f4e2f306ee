//! Errors on the request path, and the one place they become responses.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::ProxyBody;

/// What went wrong while answering a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProxyError {
    /// The request target could not be normalized.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The origin could not be reached.
    #[error("origin unreachable")]
    Connect,
    /// The origin did not answer in time.
    #[error("origin timed out")]
    Timeout,
    /// The origin answered something unusable or closed mid-response.
    #[error("bad origin response")]
    Origin,
    /// `only-if-cached` and nothing suitable is stored.
    #[error("not cached")]
    NotCached,
    /// The request body is larger than `server.max_body_size`.
    #[error("request body too large")]
    PayloadTooLarge,
}

impl ProxyError {
    /// The status a client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Connect | ProxyError::Origin => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout | ProxyError::NotCached => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// A short plain-text response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let mut resp = Response::new(ProxyBody::full(format!("{self}\n")));
        *resp.status_mut() = self.status();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}
