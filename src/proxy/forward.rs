//! Pass-through: requests the cache does not answer (bypassed routes, request no-store,
//! hit-for-pass, unsafe methods), streamed both ways; unsafe methods then invalidate.

use std::time::{Instant, SystemTime};

use http::response::Parts;
use http::{header, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::context::Ctx;
use super::post::PostAnswer;
use super::{respond, Proxy};
use crate::body::{declared_length, ClientBodyError, IdleTimeout, ProxyBody};
use crate::cache::tags;
use crate::error::ProxyError;
use crate::forwarding;
use crate::origin;
use crate::rewrite::{OriginAddr, Public};
use crate::rfc::cache_status::{CacheStatus, Detail, Fwd};
use crate::rfc::storable;

impl Proxy {
    /// Pass a request through unchanged but for normalization; errors become their responses.
    pub(super) async fn forward(&self, ctx: &mut Ctx<'_>, body: Incoming) -> Response<ProxyBody> {
        let t0 = Instant::now();
        // Taken before the origin is asked: a purge from now on wins over a kept part.
        let (ticket, request_time) = (self.store.purge_ticket(), SystemTime::now());
        let sent = self.send_forward(ctx, body).await;
        ctx.origin_ms = Some(t0.elapsed().as_millis());
        match sent {
            Ok((parts, body)) if self.may_keep_part(ctx, &parts) => {
                self.keep_part(ctx, parts, body, ticket, request_time).await
            }
            Ok((parts, body)) => self.relay(ctx, parts, ProxyBody::stream(body)),
            Err(e) => e.into_response(),
        }
    }

    /// Send the client's request to the origin, body streamed; the answer's head and body.
    pub(super) async fn send_forward(
        &self,
        ctx: &Ctx<'_>,
        body: Incoming,
    ) -> Result<(Parts, IdleTimeout<Incoming>), ProxyError> {
        let limit = ctx.set.cfg.server.max_body_size.as_u64();
        if declared_length(ctx.headers()).is_some_and(|n| n > limit) {
            return Err(ProxyError::PayloadTooLarge);
        }
        // A chunked body over the limit is cut off mid-stream: the origin sees an aborted request,
        // the client a 413 (or whatever the origin answered before it noticed).
        let body = http_body_util::Limited::new(body, limit as usize)
            .map_err(ClientBodyError::from_limited);
        let headers = ctx.origin_headers();
        let mut oreq = Request::new(body.boxed());
        *oreq.method_mut() = ctx.head.method.clone();
        *oreq.uri_mut() = ctx.set.origin.uri(&ctx.norm.path_and_query)?;
        *oreq.headers_mut() = headers;
        // RFC 9111 §4.3.5 for a HEAD passed through (hit-for-pass, say). Not for a request
        // no-store: its answer is not the cache's to keep or act on, and acting on it would let
        // any client make stored responses stale at will.
        let acts = ctx.head.method == Method::HEAD && !ctx.directives.no_store;
        let head_target = if acts && !ctx.key.is_empty() {
            self.head_target(ctx).await
        } else {
            None
        };
        let ticket = self.store.purge_ticket();
        let (mut parts, rbody) = self
            .send_origin(
                &ctx.set,
                ctx.route.id,
                ctx.asker.as_ref(),
                &ctx.client.public(),
                oreq,
            )
            .await?
            .into_parts();
        origin::strip_response_fields(&mut parts.headers);
        if !ctx.key.is_empty() {
            self.clear_pass_if_cacheable(ctx, &parts);
            if let Some(old) = head_target {
                self.head_update(ctx, &old, &parts, ticket).await;
            }
        }
        Ok((
            parts,
            IdleTimeout::new(rbody, ctx.set.origin.body_timeout()),
        ))
    }

    /// The origin's answer as the client gets it (compressed on the fly if it asked for that).
    pub(super) fn relay(
        &self,
        ctx: &Ctx<'_>,
        parts: Parts,
        body: ProxyBody,
    ) -> Response<ProxyBody> {
        let resp = respond::response(parts.status, parts.headers, body);
        respond::compress_passed(resp, ctx.headers(), &ctx.set.cfg.compression)
    }

    /// A key marked hit-for-pass whose origin answer is cacheable again is unmarked at once, so
    /// the next request fills.
    fn clear_pass_if_cacheable(&self, ctx: &Ctx<'_>, parts: &http::response::Parts) {
        if self.pass.get(&ctx.key).is_none() {
            return;
        }
        let facts = ctx.facts_now(false);
        let policy = ctx.set.cache_policy();
        let storable = storable::evaluate(
            parts.status,
            &parts.headers,
            facts,
            ctx.route.policy,
            policy,
        );
        let too_large = declared_length(&parts.headers)
            .is_some_and(|n| n > ctx.set.cfg.cache.max_object_size.as_u64());
        if storable.is_ok() && !too_large {
            self.pass.forget(&ctx.key);
        }
    }

    /// Unsafe methods pass through; a non-error answer invalidates the URI and same-origin
    /// Location / Content-Location (RFC 9111 §4.4). A POST answer that names its own target as
    /// Content-Location, with explicit freshness, is then stored for later GETs (RFC 9111 §4).
    pub(super) async fn unsafe_method(
        &self,
        ctx: &mut Ctx<'_>,
        body: Incoming,
    ) -> (Response<ProxyBody>, CacheStatus) {
        let mut status = CacheStatus::forward(Fwd::Method).detail(Detail::Unsafe);
        let t0 = Instant::now();
        let sent = self.send_forward(ctx, body).await;
        ctx.origin_ms = Some(t0.elapsed().as_millis());
        let (parts, body) = match sent {
            Ok(answer) => answer,
            Err(e) => return (e.into_response(), status),
        };
        let safe = matches!(ctx.head.method, Method::OPTIONS | Method::TRACE);
        if safe || parts.status.is_client_error() || parts.status.is_server_error() {
            return (self.relay(ctx, parts, ProxyBody::stream(body)), status);
        }
        self.invalidate_after_unsafe(ctx, &parts).await;
        let Some(reuse) = self.post_for_reuse(ctx, &parts) else {
            return (self.relay(ctx, parts, ProxyBody::stream(body)), status);
        };
        match self
            .read_post_answer(&parts.headers, body, ctx.set.max_object_size())
            .await
        {
            Ok(PostAnswer::Buffered(bytes, budget)) => {
                if self
                    .store_post_answer(ctx, reuse, &parts, bytes.clone(), budget)
                    .await
                {
                    status = status.stored();
                }
                (self.relay(ctx, parts, ProxyBody::full(bytes)), status)
            }
            Ok(PostAnswer::Streamed(rest)) => (self.relay(ctx, parts, rest), status),
            Err(failed) => {
                let id = Some(&ctx.request_id);
                let e = self.body_failed(&ctx.set, id, &ctx.norm.path_and_query, failed);
                (e.into_response(), status)
            }
        }
    }

    /// RFC 9111 §4.4: the target URI and same-origin Location / Content-Location are invalidated.
    async fn invalidate_after_unsafe(&self, ctx: &Ctx<'_>, parts: &Parts) {
        let mut urls = vec![ctx.norm.path_and_query.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(n) = self.same_origin_target(ctx, parts.headers.get(&name)) {
                // A Content-Location naming the target itself is purged once.
                if !urls.contains(&n) {
                    urls.push(n);
                }
            }
        }
        for url in urls {
            self.store.purge_tag(&tags::url_tag(&url), false).await;
        }
    }

    /// The normalized target of a Location-style value that points at the host the request was
    /// for, or at the origin's own address (as sent when `origin.rewrite_urls` is off).
    pub(super) fn same_origin_target(
        &self,
        ctx: &Ctx<'_>,
        value: Option<&http::HeaderValue>,
    ) -> Option<String> {
        let value = value?.to_str().ok()?;
        let target = same_origin_path(value, &ctx.client.public(), &ctx.set.origin_addr)?;
        ctx.set
            .normalizer
            .normalize(&target)
            .ok()
            .map(|n| n.path_and_query)
    }
}

/// Path of a Location value when it points at the client's scheme and host, or at the origin
/// under its base path (the same resource, reached through this proxy).
fn same_origin_path(value: &str, public: &Public, origin: &OriginAddr) -> Option<String> {
    if value.starts_with('/') && !value.starts_with("//") {
        return Some(value.to_string());
    }
    if let Some(path) = origin.proxy_path(value) {
        return Some(path);
    }
    // A network-path reference takes the scheme the client used.
    let absolute = match value.starts_with("//") {
        true => format!("{}:{value}", public.scheme),
        false => value.to_string(),
    };
    let uri: http::Uri = absolute.parse().ok()?;
    let proto = uri.scheme_str()?.to_ascii_lowercase();
    let host = forwarding::normalize_host(uri.authority()?.as_str(), &proto)?;
    (host == public.host && proto == public.scheme).then(|| {
        uri.path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_same_origin() {
        let public = Public {
            scheme: "http".into(),
            host: "api.example:8080".into(),
        };
        let authority = "origin:3000".parse().unwrap();
        let origin = OriginAddr::new("http", &authority, "/v1");
        let rows = [
            ("/a/b", Some("/a/b")),
            ("http://API.example:8080/x?y", Some("/x?y")),
            ("//api.example:8080/x", Some("/x")),
            ("https://api.example:8080/x", None),
            ("http://evil.example/x", None),
            ("//evil.example/x", None),
            // The origin's own address, under its base path: the proxy's path.
            ("http://origin:3000/v1/items/7", Some("/items/7")),
            ("http://origin:3000/v2/items/7", None),
        ];
        for (value, want) in rows {
            let got = same_origin_path(value, &public, &origin);
            assert_eq!(got.as_deref(), want, "{value}");
        }
    }
}
