//! Pass-through: requests the cache does not answer (bypassed routes, request no-store,
//! hit-for-pass, unsafe methods), streamed both ways; unsafe methods then invalidate.

use std::time::Instant;

use http::{header, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::context::Ctx;
use super::{respond, Proxy};
use crate::body::{IdleTimeout, ProxyBody};
use crate::cache::tags;
use crate::error::ProxyError;
use crate::origin;
use crate::rfc::cache_status::{CacheStatus, Detail, Fwd};

impl Proxy {
    /// Pass a request through unchanged but for normalization; errors become their responses.
    pub(super) async fn forward(&self, ctx: &mut Ctx<'_>, body: Incoming) -> Response<ProxyBody> {
        let t0 = Instant::now();
        let resp = self.forward_raw(ctx, body).await;
        ctx.origin_ms = Some(t0.elapsed().as_millis());
        resp.unwrap_or_else(ProxyError::into_response)
    }

    async fn forward_raw(
        &self,
        ctx: &Ctx<'_>,
        body: Incoming,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let limit = self.cfg.server.max_body_size.as_u64();
        let declared = ctx
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ProxyError::PayloadTooLarge);
        }
        // A chunked body over the limit is cut off mid-stream: the origin sees an aborted request.
        let body = http_body_util::Limited::new(body, limit as usize);
        let headers = origin::forward_headers(
            ctx.headers(),
            ctx.head.version,
            ctx.peer,
            ctx.credential.as_ref(),
            &self.cfg.server.via,
        );
        let mut oreq = Request::new(body.boxed());
        *oreq.method_mut() = ctx.head.method.clone();
        *oreq.uri_mut() = self.origin.uri(&ctx.norm.path_and_query)?;
        *oreq.headers_mut() = headers;
        let (mut parts, rbody) = self.send_origin(ctx.route.id, oreq).await?.into_parts();
        origin::strip_hop_by_hop(&mut parts.headers);
        let body = IdleTimeout::new(rbody, self.origin.body_timeout());
        let resp = respond::response(parts.status, parts.headers, ProxyBody::stream(body));
        Ok(respond::compress_passed(
            resp,
            ctx.headers(),
            &self.cfg.compression,
        ))
    }

    /// Unsafe methods pass through; a non-error answer invalidates the URI and same-origin
    /// Location / Content-Location (RFC 9111 §4.4).
    pub(super) async fn unsafe_method(
        &self,
        ctx: &mut Ctx<'_>,
        body: Incoming,
    ) -> (Response<ProxyBody>, CacheStatus) {
        let status = CacheStatus::forward(Fwd::Method).detail(Detail::Unsafe);
        let resp = self.forward(ctx, body).await;
        let safe = matches!(ctx.head.method, Method::OPTIONS | Method::TRACE);
        if safe || resp.status().is_client_error() || resp.status().is_server_error() {
            return (resp, status);
        }
        let host = ctx.headers().get(header::HOST);
        let mut urls = vec![ctx.norm.path_and_query.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(target) = resp
                .headers()
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| same_origin_path(v, host))
            {
                if let Ok(n) = self.normalizer.normalize(&target) {
                    urls.push(n.path_and_query);
                }
            }
        }
        for url in urls {
            self.store.purge_tag(&tags::url_tag(&url), false).await;
        }
        (resp, status)
    }
}

/// Path of a Location value when it points at this same origin.
fn same_origin_path(value: &str, host: Option<&HeaderValue>) -> Option<String> {
    if value.starts_with('/') && !value.starts_with("//") {
        return Some(value.to_string());
    }
    let uri: http::Uri = value.parse().ok()?;
    let host = host?.to_str().ok()?;
    (uri.authority()?.as_str().eq_ignore_ascii_case(host)).then(|| {
        uri.path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_same_origin() {
        let host = HeaderValue::from_static("api.example:8080");
        assert_eq!(same_origin_path("/a/b", None).as_deref(), Some("/a/b"));
        assert_eq!(
            same_origin_path("http://api.example:8080/x?y", Some(&host)).as_deref(),
            Some("/x?y")
        );
        assert_eq!(same_origin_path("http://evil.example/x", Some(&host)), None);
        assert_eq!(same_origin_path("//evil.example/x", Some(&host)), None);
    }
}
