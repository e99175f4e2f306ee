//! Updating stored responses from answers without a body: a 304 that selected one (RFC 9111
//! §4.3.4), and a HEAD response (§4.3.5), which updates the stored GET response or makes it stale.

use std::sync::Arc;
use std::time::Instant;

use http::response::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use super::context::Ctx;
use super::fetch::{take_withheld, Fetched, FillJob, Summary};
use super::{respond, Proxy};
use crate::body::{declared_length, ProxyBody};
use crate::cache::purges::Ticket;
use crate::cache::{CachedObject, Lookup};
use crate::origin;
use crate::rfc::cache_status::{CacheStatus, Detail, Fwd};
use crate::rfc::coding::{self, Coding};
use crate::rfc::storable::{self, RequestFacts};
use crate::rfc::update::{head_effect, Described, HeadEffect, Validators};
use crate::rfc::vary::Vary;

/// The request fields a fill or a HEAD write-through never forwards: the client's preconditions
/// are evaluated here, against what the origin answers or what is stored. The four conditionals
/// come first (`proxy::partial` uses them alone).
pub(super) const PRECONDITIONS: [header::HeaderName; 6] = [
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
    header::RANGE,
    header::IF_RANGE,
];

impl Proxy {
    /// RFC 9111 §4.3.4: a 304 that selected `old` updates its headers and freshness; the body
    /// stays. The result is stored as the variant this request selects: `old` itself, or, when
    /// the 304 named another variant's ETag (§4.3.1), a copy under this request's Vary values.
    pub(super) async fn refresh(
        &self,
        job: &FillJob,
        old: &CachedObject,
        update: &HeaderMap,
        facts: RequestFacts,
        ticket: Ticket,
    ) -> Fetched {
        let mut headers = detach(&merge_304(&old.headers, update));
        match storable::evaluate(
            old.status,
            &headers,
            facts,
            job.policy,
            job.set.cache_policy(),
        ) {
            Ok(freshness) => {
                let withheld = take_withheld(&mut headers);
                let vary = Vary::of(&headers, &job.vary_source, &job.set.vary_lists);
                let obj = Arc::new(old.refreshed(headers, freshness, vary, self.clock.now()));
                self.store_object(&job.key, &obj, ticket).await;
                Fetched {
                    withheld,
                    ..Fetched::done(Summary::Stored(obj, true))
                }
            }
            Err(reason) => {
                // The body is still valid but may no longer be kept: hand it to the leader once.
                // Only this request's own variant stops being served; another variant the 304
                // named (§4.3.1) stays for its own users, whose answers may differ in storability.
                if old.vary.matches(&job.vary_source) {
                    old.kill();
                }
                let mut resp =
                    respond::response(old.status, headers, ProxyBody::full(old.body.clone()));
                resp.headers_mut()
                    .insert(header::ETAG, old.etag_value(Coding::Identity).clone());
                let response =
                    respond::compress_passed(resp, &job.vary_source, &job.set.cfg.compression);
                Fetched {
                    response: Some(response),
                    ..Fetched::done(Summary::Pass(reason))
                }
            }
        }
    }

    /// A HEAD while a stale (or revalidated-on-request) GET response is stored: forwarded as
    /// HEAD, no body either way, with the fill's request fields (so the origin names the
    /// representation a fill stores), and a 200 updates the stored response or makes it stale.
    /// `None` when the origin answered anything else: the caller fills with a conditional GET.
    pub(super) async fn head_through(
        &self,
        ctx: &mut Ctx<'_>,
        stale: Arc<CachedObject>,
        fwd: Fwd,
    ) -> Option<(Response<ProxyBody>, CacheStatus)> {
        let ticket = self.store.purge_ticket();
        let t0 = Instant::now();
        let sent = match ctx.set.origin.uri(&ctx.norm.path_and_query) {
            Ok(uri) => {
                let mut req = Request::new(origin::empty_body());
                *req.method_mut() = Method::HEAD;
                *req.uri_mut() = uri;
                *req.headers_mut() = self.fill_headers(ctx);
                self.send_origin(
                    &ctx.set,
                    ctx.route.id,
                    ctx.asker.as_ref(),
                    &ctx.client.public(),
                    req,
                )
                .await
            }
            Err(e) => Err(e),
        };
        ctx.origin_ms = Some(t0.elapsed().as_millis());
        let now = self.clock.now();
        let usable = !stale.is_dead() && stale.stored(now).usable_on_error();
        let status = CacheStatus::forward(fwd);
        let answer = sent.as_ref().ok().map(|r| r.status());
        let mut parts = match (head_next(answer, usable), sent) {
            (HeadNext::Apply, Ok(r)) => r.into_parts().0,
            (HeadNext::StaleIfError, Err(e)) => {
                let status = CacheStatus::forward(Fwd::Stale)
                    .fwd_status(e.fwd_status())
                    .ttl(stale.ttl(now))
                    .detail(Detail::StaleIfError);
                return Some((self.serve(&stale, ctx), status));
            }
            (HeadNext::Fail, Err(e)) => return Some((e.into_response(), status)),
            _ => return None,
        };
        origin::strip_response_fields(&mut parts.headers);
        if let Some(obj) = self.head_update(ctx, &stale, &parts, ticket).await {
            let status = status.revalidated(parts.status.as_u16());
            let status = status.ttl(obj.ttl(self.clock.now()));
            return Some((self.serve(&obj, ctx), status));
        }
        let status = status.fwd_status(parts.status.as_u16());
        let resp = respond::response(parts.status, parts.headers, ProxyBody::empty());
        Some((self.passed(resp, ctx.headers()), status))
    }

    /// The stored GET response a HEAD on this request's key could be chosen for, looked up
    /// before the HEAD is sent: its answer speaks about that response, not a newer one.
    pub(super) async fn head_target(&self, ctx: &Ctx<'_>) -> Option<Arc<CachedObject>> {
        match self.store.lookup(&ctx.key, &ctx.vary).await {
            Lookup::Hit(old) => Some(old),
            _ => None,
        }
    }

    /// RFC 9111 §4.3.5 for a HEAD answer about the stored GET response `old`: updated when the
    /// answer vouches for it (returned when stored fresh), and otherwise marked stale, never
    /// removed: kept for revalidation, and the marks reach the encoder's copies. A 200 whose
    /// update may not be stored also marks it stale: the next GET revalidates and stores (or
    /// drops) the origin's full answer.
    pub(super) async fn head_update(
        &self,
        ctx: &Ctx<'_>,
        old: &Arc<CachedObject>,
        parts: &Parts,
        ticket: Ticket,
    ) -> Option<Arc<CachedObject>> {
        let stored = Described {
            validators: old.validators(),
            length: Some(old.body.len() as u64),
            content_type: old.headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
        };
        // A Content-Length of encoded bytes says nothing about the stored identity body.
        let identity = coding::stored_encoding(&parts.headers) == Ok(Coding::Identity);
        let answer = Described {
            validators: Validators::of(&parts.headers),
            length: declared_length(&parts.headers).filter(|_| identity),
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
        };
        match head_effect(parts.status, stored, answer) {
            HeadEffect::Nothing => None,
            HeadEffect::Stale => {
                old.soft_purge(self.clock.now());
                None
            }
            HeadEffect::Update => {
                let mut headers = detach(&merge_304(&old.headers, &parts.headers));
                take_withheld(&mut headers);
                let facts = ctx.facts_now(false);
                let policy = ctx.set.cache_policy();
                let Ok(freshness) =
                    storable::evaluate(old.status, &headers, facts, ctx.route.policy, policy)
                else {
                    old.soft_purge(self.clock.now());
                    return None;
                };
                let vary = Vary::of(&headers, &ctx.vary, &ctx.set.vary_lists);
                let obj = Arc::new(old.refreshed(headers, freshness, vary, self.clock.now()));
                // Only in place of `old`: a GET fill may have stored a newer response meanwhile,
                // and a purge since the ticket wins. Said stored and counted only when it is.
                if !self.store.replace_fill(&ctx.key, old, &obj, ticket).await {
                    return None;
                }
                self.encoder.schedule(&ctx.key, &obj);
                self.metrics.revalidated();
                Some(obj)
            }
        }
    }

    /// An uncached answer to this client, with its own preconditions evaluated against it.
    pub(super) fn passed(&self, resp: Response<ProxyBody>, req: &HeaderMap) -> Response<ProxyBody> {
        let before = resp.status();
        let resp = respond::preconditions_on_passed(resp, req);
        if resp.status() != before {
            self.metrics.not_modified();
        }
        resp
    }
}

/// What a HEAD forwarded for a stale stored response leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeadNext {
    /// A 200: it updates the stored response or makes it stale (RFC 9111 §4.3.5).
    Apply,
    /// Any other status: the conditional GET fill decides instead, as for a GET. An origin that
    /// does not implement HEAD (405, 501) must not answer in place of a response it serves to GET,
    /// and the fill applies its own stale-if-error to what GET answers.
    Fill,
    /// The origin could not be asked, and the stored response may stand in.
    StaleIfError,
    /// The origin could not be asked, and nothing may stand in.
    Fail,
}

/// [`HeadNext`] for the origin's status (`None`: it could not be asked) when the stored response
/// is `usable` on error (alive, within its stale-if-error rules). A failed connection is not
/// tried again as a GET: that would double the wait for an origin that is down.
fn head_next(answer: Option<StatusCode>, usable: bool) -> HeadNext {
    match answer {
        Some(StatusCode::OK) => HeadNext::Apply,
        Some(_) => HeadNext::Fill,
        None if usable => HeadNext::StaleIfError,
        None => HeadNext::Fail,
    }
}

/// RFC 9111 §4.3.4: the 304's end-to-end fields replace the stored ones of the same name.
pub(super) fn merge_304(stored: &HeaderMap, update: &HeaderMap) -> HeaderMap {
    let mut update = update.clone();
    origin::strip_response_fields(&mut update);
    update.remove(header::CONTENT_LENGTH);
    update.remove(header::CONTENT_ENCODING);
    let mut headers = stored.clone();
    for name in update.keys() {
        headers.remove(name);
    }
    for (name, value) in update.iter() {
        headers.append(name, value.clone());
    }
    headers
}

/// A copy of a header value in its own allocation.
fn copy_value(v: &HeaderValue) -> HeaderValue {
    let mut c = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
    c.set_sensitive(v.is_sensitive());
    c
}

/// Copy every value: hyper's parsed values are slices of the connection's read buffer, which often
/// holds the whole body too, so a stored header would otherwise pin that buffer for the object's life.
pub(super) fn detach(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (k, v) in h {
        out.append(k.clone(), copy_value(v));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(s: &'static str) -> HeaderValue {
        HeaderValue::from_static(s)
    }

    #[test]
    fn only_a_200_to_a_head_speaks_for_the_stored_response() {
        use HeadNext::*;
        let rows = [
            (Some(StatusCode::OK), false, Apply),
            (Some(StatusCode::OK), true, Apply),
            (Some(StatusCode::METHOD_NOT_ALLOWED), false, Fill),
            (Some(StatusCode::NOT_IMPLEMENTED), true, Fill),
            (Some(StatusCode::SERVICE_UNAVAILABLE), true, Fill),
            (Some(StatusCode::NOT_FOUND), false, Fill),
            (Some(StatusCode::NOT_MODIFIED), false, Fill),
            (None, true, StaleIfError),
            (None, false, Fail),
        ];
        for (answer, usable, want) in rows {
            assert_eq!(head_next(answer, usable), want, "{answer:?} {usable}");
        }
    }

    #[test]
    fn a_304_replaces_fields_of_the_same_name() {
        let mut stored = HeaderMap::new();
        stored.insert(header::CACHE_CONTROL, hv("max-age=5"));
        stored.append(header::LINK, hv("<a>"));
        stored.append(header::LINK, hv("<b>"));
        stored.insert(header::CONTENT_TYPE, hv("application/json"));
        let mut update = HeaderMap::new();
        update.insert(header::CACHE_CONTROL, hv("max-age=60"));
        update.insert(header::LINK, hv("<c>"));
        update.insert(header::CONTENT_LENGTH, hv("0"));
        update.insert(header::CONNECTION, hv("close"));
        let merged = merge_304(&stored, &update);
        assert_eq!(merged[header::CACHE_CONTROL], "max-age=60");
        assert_eq!(
            merged.get_all(header::LINK).iter().collect::<Vec<_>>(),
            [&hv("<c>")]
        );
        assert_eq!(merged[header::CONTENT_TYPE], "application/json");
        assert!(
            !merged.contains_key(header::CONTENT_LENGTH)
                && !merged.contains_key(header::CONNECTION)
        );
    }
}
