//! Response building for the demo origin: JSON documents, RFC 9457 problems, header helpers.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, LAST_MODIFIED};
use http::{Response, StatusCode};
use serde_json::{json, Value};

use apicache::body::ProxyBody;

use super::dates::http_date;

pub(super) const JSON: &str = "application/json";
pub(super) const PROBLEM_JSON: &str = "application/problem+json";
const SURROGATE_KEY: &str = "surrogate-key";
pub(super) const CC_NO_STORE: &str = "no-store";

/// Build a response; `body` is sent as-is.
pub(super) fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(body));
    *resp.status_mut() = status;
    set_header(&mut resp, CONTENT_TYPE, content_type);
    resp
}

pub(super) fn set_header(resp: &mut Response<ProxyBody>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A cacheable JSON document with `Cache-Control`, `Last-Modified` and optional `Surrogate-Key`.
pub(super) fn json_doc(
    value: &Value,
    cache_control: &str,
    surrogate_key: Option<&str>,
    last_modified: u64,
) -> Response<ProxyBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = respond(StatusCode::OK, JSON, body);
    set_header(&mut resp, CACHE_CONTROL, cache_control);
    set_header(&mut resp, LAST_MODIFIED, &http_date(last_modified));
    if let Some(key) = surrogate_key {
        set_header(&mut resp, HeaderName::from_static(SURROGATE_KEY), key);
    }
    resp
}

/// An RFC 9457 problem document (`application/problem+json`), never stored by caches.
pub(super) fn problem(status: StatusCode, detail: &str, instance: &str) -> Response<ProxyBody> {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "instance": instance,
    });
    let mut resp = respond(
        status,
        PROBLEM_JSON,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    set_header(&mut resp, CACHE_CONTROL, CC_NO_STORE);
    resp
}

pub(super) fn method_not_allowed(allow: &str, path: &str) -> Response<ProxyBody> {
    let mut resp = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("allowed methods: {allow}"),
        path,
    );
    set_header(&mut resp, ALLOW, allow);
    resp
}

pub(super) fn not_found(path: &str) -> Response<ProxyBody> {
    problem(StatusCode::NOT_FOUND, "no such resource", path)
}
