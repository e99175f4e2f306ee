//! Responses built by the cache: answers from stored objects (304, 206/416, the negotiated coding)
//! and on-the-fly compression of uncached responses.

use std::time::Instant;

use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{declared_length, ProxyBody};
use crate::cache::CachedObject;
use crate::compress::CompressBody;
use crate::config::CompressionConfig;
use crate::metrics::Metrics;
use crate::rfc::coding::{self, Coding, Preference};
use crate::rfc::conditional::{self, RangeOutcome};
use crate::rfc::directives::no_transform;
use crate::rfc::partial::ContentRange;
use crate::rfc::vary::merge_vary;

/// A response with just a status and headers: nothing of the origin's response internals
/// (version, extensions) carries over.
pub fn response(status: StatusCode, headers: HeaderMap, body: ProxyBody) -> Response<ProxyBody> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// Build the client's answer from a stored object: 304, 206/416, or the negotiated coding.
pub fn from_object(
    obj: &CachedObject,
    now: Instant,
    req: &HeaderMap,
    head: bool,
    prefer: &Preference,
    metrics: &Metrics,
) -> Response<ProxyBody> {
    let mut codings = [Coding::Identity; 4];
    let mut n = 0;
    for c in obj.codings().take(if obj.no_transform { 1 } else { 4 }) {
        codings[n] = c;
        n += 1;
    }
    let codings = &codings[..n];
    let coding = if codings.len() > 1 {
        coding::negotiate(req.get_all(header::ACCEPT_ENCODING).iter(), codings, prefer)
    } else {
        Coding::Identity
    };
    let mut headers = obj.headers.clone();
    // Still compressible while its encodings are computed: the answer varies all along.
    if codings.len() > 1 || obj.needs_encoding() {
        merge_vary(&mut headers, "Accept-Encoding");
    }
    headers.insert("age", HeaderValue::from(obj.age(now)));
    let etag_value = obj.etag_value(coding).clone();

    if obj.status.is_success() {
        let mut etags: [&[u8]; 4] = [b""; 4];
        for (slot, c) in etags.iter_mut().zip(codings) {
            *slot = obj.etag_value(*c).as_bytes();
        }
        let etags = &etags[..codings.len()];
        if conditional::not_modified(req, etags, obj.last_modified.as_ref()) {
            metrics.not_modified();
            return not_modified(&headers, Some(etag_value));
        }
    }

    if obj.status == StatusCode::OK {
        if let Some(range) = req.get(header::RANGE) {
            let len = obj.body.len() as u64;
            let outcome = conditional::evaluate_range(
                range,
                req.get(header::IF_RANGE),
                len,
                Some(obj.etag.as_bytes()),
                obj.last_modified.as_ref(),
            );
            match outcome {
                RangeOutcome::Full => {}
                RangeOutcome::Partial { start, end } => {
                    let part = obj.body.slice(start as usize..=end as usize);
                    headers.insert(header::ETAG, obj.etag.clone());
                    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(part.len()));
                    if let Ok(v) =
                        HeaderValue::from_str(&conditional::content_range(start, end, len))
                    {
                        headers.insert(header::CONTENT_RANGE, v);
                    }
                    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
                    let body = if head {
                        ProxyBody::empty()
                    } else {
                        ProxyBody::full(part)
                    };
                    let mut resp = Response::new(body);
                    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
                    *resp.headers_mut() = headers;
                    return resp;
                }
                RangeOutcome::Unsatisfiable => {
                    let mut resp = Response::new(ProxyBody::empty());
                    *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
                    if let Ok(v) = HeaderValue::from_str(&conditional::unsatisfied_range(len)) {
                        resp.headers_mut().insert(header::CONTENT_RANGE, v);
                    }
                    return resp;
                }
            }
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }

    let bytes = obj
        .variant(coding)
        .cloned()
        .unwrap_or_else(|| obj.body.clone());
    if coding != Coding::Identity {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(coding.as_str()),
        );
        let saved = obj.body.len().saturating_sub(bytes.len()) as u64;
        metrics.compression_saved(saved);
    }
    headers.insert(header::ETAG, etag_value);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let body = if head {
        ProxyBody::empty()
    } else {
        ProxyBody::full(bytes)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = obj.status;
    *resp.headers_mut() = headers;
    resp
}

/// A 304 for a representation with these headers and ETag (RFC 9110 §15.4.5): the fields a
/// 200 would have carried that a cache needs, and no body.
fn not_modified(headers: &HeaderMap, etag: Option<HeaderValue>) -> Response<ProxyBody> {
    let mut out = HeaderMap::new();
    for name in [
        header::CACHE_CONTROL,
        header::EXPIRES,
        header::VARY,
        header::DATE,
        header::CONTENT_LOCATION,
        header::AGE,
    ] {
        for v in headers.get_all(&name) {
            out.append(name.clone(), v.clone());
        }
    }
    if let Some(e) = etag {
        out.insert(header::ETAG, e);
    }
    response(StatusCode::NOT_MODIFIED, out, ProxyBody::empty())
}

/// An origin answer relayed uncached, with the client's own If-None-Match / If-Modified-Since
/// evaluated against it (the fill sent none): a match becomes a bodiless 304 and the origin's
/// body is dropped. Only a 2xx other than 206 is a representation preconditions apply to.
pub fn preconditions_on_passed(resp: Response<ProxyBody>, req: &HeaderMap) -> Response<ProxyBody> {
    let s = resp.status();
    if !s.is_success() || s == StatusCode::PARTIAL_CONTENT {
        return resp;
    }
    let h = resp.headers();
    let etag = h.get(header::ETAG);
    let etags: &[&[u8]] = match etag {
        Some(e) => &[e.as_bytes()],
        None => &[],
    };
    if !conditional::not_modified(req, etags, h.get(header::LAST_MODIFIED)) {
        return resp;
    }
    // The origin's own fields go to this one client (Set-Cookie, Link, …), as the 304 the origin
    // would have sent carries them; only those describing the dropped body go.
    let (mut parts, _) = resp.into_parts();
    for name in [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::CONTENT_TYPE,
        header::CONTENT_RANGE,
        header::TRANSFER_ENCODING,
        header::CONTENT_LANGUAGE,
    ] {
        parts.headers.remove(name);
    }
    response(StatusCode::NOT_MODIFIED, parts.headers, ProxyBody::empty())
}

/// A 206 for `start..=end` from a kept part covering `part` (`proxy::partial`).
pub fn from_part(
    obj: &CachedObject,
    part: ContentRange,
    (start, end): (u64, u64),
    now: Instant,
) -> Response<ProxyBody> {
    let bytes = obj
        .body
        .slice((start - part.first) as usize..=(end - part.first) as usize);
    let mut headers = obj.headers.clone();
    headers.insert("age", HeaderValue::from(obj.age(now)));
    if let Some(e) = &obj.origin_etag {
        headers.insert(header::ETAG, e.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&conditional::content_range(start, end, part.complete)) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    response(StatusCode::PARTIAL_CONTENT, headers, ProxyBody::full(bytes))
}

/// Compress an uncached response on the fly (fast level) when the client wants it and it is worth it.
pub fn compress_passed(
    resp: Response<ProxyBody>,
    req: &HeaderMap,
    c: &CompressionConfig,
) -> Response<ProxyBody> {
    if needs_gunzip(&resp, req) {
        return gunzip_for_client(resp);
    }
    let h = resp.headers();
    let small = declared_length(h).is_some_and(|n| n < c.min_size.as_u64());
    if !c.enabled
        || small
        || resp.status() == StatusCode::PARTIAL_CONTENT
        || resp.status() == StatusCode::NO_CONTENT
        || resp.status() == StatusCode::NOT_MODIFIED
        || h.contains_key(header::CONTENT_ENCODING)
        || h.contains_key(header::CONTENT_RANGE)
        || no_transform(h)
        || !coding::is_compressible(h.get(header::CONTENT_TYPE), &c.types)
    {
        return resp;
    }
    let coding = coding::negotiate(
        req.get_all(header::ACCEPT_ENCODING).iter(),
        &[Coding::Gzip, Coding::Br, Coding::Zstd],
        &c.preference(),
    );
    if coding == Coding::Identity {
        return resp;
    }
    let level = c.stream_levels().of(coding);
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(coding.as_str()),
    );
    if let Some(e) = parts.headers.get(header::ETAG) {
        let v = conditional::variant_etag(e, coding);
        parts.headers.insert(header::ETAG, v);
    }
    merge_vary(&mut parts.headers, "Accept-Encoding");
    Response::from_parts(
        parts,
        ProxyBody::stream(CompressBody::new(body, coding, level)),
    )
}

/// The origin sent gzip (though only asked for it on the client's behalf) to a client that does
/// not accept it: decode, unless the origin forbade transformations.
fn needs_gunzip(resp: &Response<ProxyBody>, req: &HeaderMap) -> bool {
    let h = resp.headers();
    coding::stored_encoding(h) == Ok(Coding::Gzip)
        && resp.status() != StatusCode::PARTIAL_CONTENT
        && !h.contains_key(header::CONTENT_RANGE)
        && !no_transform(h)
        && !coding::accepts(req, Coding::Gzip)
}

fn gunzip_for_client(resp: Response<ProxyBody>) -> Response<ProxyBody> {
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_ENCODING);
    parts.headers.remove(header::CONTENT_LENGTH);
    // The origin's tag named the gzip bytes; the decoded representation differs.
    if let Some(e) = parts.headers.get(header::ETAG) {
        let v = conditional::weaken(e);
        parts.headers.insert(header::ETAG, v);
    }
    merge_vary(&mut parts.headers, "Accept-Encoding");
    Response::from_parts(parts, ProxyBody::stream(CompressBody::gunzip(body)))
}
