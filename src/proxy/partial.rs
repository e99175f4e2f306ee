//! Partial content (RFC 9111 §3.3–3.4). The cache forwards a client's `Range` only when it does
//! not fill the URL whole (its body is over `max_object_size`, so the key is hit-for-pass). A 206
//! answer with a single strictly parsed `Content-Range`, a strong ETag, no content coding and a
//! storable `Cache-Control` is kept as a part, bounded by `max_object_size` per URL; parts of one
//! representation merge, a later range they cover is served from them while fresh, and parts
//! that add up to the whole body (when it fits `max_object_size`) become a stored 200.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::response::Parts as Head;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use hyper::body::Incoming;

use super::context::Ctx;
use super::fetch::{read_limited, take_withheld, Read};
use super::lookup::Decision;
use super::refresh::detach;
use super::{respond, Proxy};
use crate::body::{IdleTimeout, ProxyBody};
use crate::cache::purges::Ticket;
use crate::cache::{tags, CachedObject, NewObject};
use crate::rfc::cache_status::CacheStatus;
use crate::rfc::coding;
use crate::rfc::conditional::{self, RangeOutcome};
use crate::rfc::directives::no_transform;
use crate::rfc::partial::{parse_content_range, storable_part, ContentRange, Parts};
use crate::rfc::storable::{self, Freshness, RequestFacts};
use crate::rfc::usage::{self, Usage};
use crate::rfc::vary::Vary;

/// Preconditions other than If-Range (the first of the fill's list): a request with them is
/// not answered from parts.
fn conditional(req: &http::HeaderMap) -> bool {
    super::refresh::PRECONDITIONS[..4]
        .iter()
        .any(|h| req.contains_key(h))
}

/// Separate ranges kept per URL (adjacent ones merge into one).
const MAX_PARTS: usize = 16;

impl Proxy {
    /// A fresh kept part that covers this GET's single byte range (If-Range honoured), as the
    /// decision to serve it. A part of another representation than the stored whole response
    /// (`whole`, stale) is not served: a client must not mix bytes of two versions.
    pub(super) async fn part_for(
        &self,
        ctx: &Ctx<'_>,
        whole: Option<&CachedObject>,
    ) -> Option<Decision> {
        let req = ctx.headers();
        let range = req.get(header::RANGE)?;
        if ctx.head.method != Method::GET || conditional(req) {
            return None;
        }
        let now = self.clock.now();
        for obj in self.store.parts(&ctx.key).await {
            let Some(part) = kept_range(&obj) else {
                continue;
            };
            if whole.is_some_and(|w| w.origin_etag != obj.origin_etag) {
                continue;
            }
            let facts = obj.stored(now);
            if usage::decide(Some(&facts), &ctx.directives) != Usage::Fresh {
                continue;
            }
            let outcome = conditional::evaluate_range(
                range,
                req.get(header::IF_RANGE),
                part.complete,
                Some(obj.etag.as_bytes()),
                obj.last_modified.as_ref(),
            );
            if let RangeOutcome::Partial { start, end } = outcome {
                if part.first <= start && end <= part.last {
                    let status = CacheStatus::hit(facts.ttl());
                    return Some(Decision::Part(obj, part, (start, end), status));
                }
            }
        }
        None
    }

    /// Whether a forwarded answer is a 206 the cache may consider keeping.
    pub(super) fn may_keep_part(&self, ctx: &Ctx<'_>, head: &Head) -> bool {
        head.status == StatusCode::PARTIAL_CONTENT
            && ctx.head.method == Method::GET
            && !ctx.key.is_empty()
            && !ctx.directives.no_store
    }

    /// Relay a forwarded 206, keeping it as a part when it qualifies (read whole first: it is
    /// at most `max_object_size`, within the fills' byte budget).
    pub(super) async fn keep_part(
        &self,
        ctx: &Ctx<'_>,
        head: Head,
        body: IdleTimeout<Incoming>,
        ticket: Ticket,
        request_time: SystemTime,
    ) -> Response<ProxyBody> {
        let max = ctx.set.cfg.cache.max_object_size.as_u64();
        let relay = |head: Head, body| respond::response(head.status, head.headers, body);
        let Some((range, etag, freshness)) = self.part_policy(ctx, &head, request_time, max) else {
            return relay(head, ProxyBody::stream(body));
        };
        let mut budget = self.fill_budget.reservation();
        let bytes = match read_limited(body, &head.headers, range.len() as usize, &mut budget).await
        {
            Ok(Read::Complete(b)) => b,
            Ok(Read::TooLarge(rest) | Read::OverBudget(rest)) => return relay(head, rest),
            Err(failed) => {
                let id = Some(&ctx.request_id);
                return self
                    .body_failed(&ctx.set, id, &ctx.norm.path_and_query, failed)
                    .into_response();
            }
        };
        if bytes.len() as u64 == range.len() {
            self.store_part(
                ctx,
                &head.headers,
                (range, etag, freshness),
                bytes.clone(),
                ticket,
            )
            .await;
        }
        relay(head, ProxyBody::full(bytes))
    }

    /// The range, strong ETag and freshness of a 206 that may be kept; `None` otherwise.
    fn part_policy(
        &self,
        ctx: &Ctx<'_>,
        head: &Head,
        request_time: SystemTime,
        max: u64,
    ) -> Option<(ContentRange, HeaderValue, Freshness)> {
        let announced = parse_content_range(head.headers.get(header::CONTENT_RANGE)?)?;
        let (range, etag) = storable_part(head.status, &head.headers, announced.len(), max).ok()?;
        let facts = RequestFacts {
            authorized: ctx.credential.is_some(),
            no_store: false,
            // A 206 is a 2xx: it accepted its asker.
            unverified: false,
            request_time,
            response_time: SystemTime::now(),
        };
        // A 206 is cacheable as its status allows a 200 to be (RFC 9110 §15.3.7).
        let freshness = storable::evaluate(
            StatusCode::OK,
            &head.headers,
            facts,
            ctx.route.policy,
            ctx.set.cache_policy(),
        )
        .ok()?;
        // Parts of variants would need Vary matching per part: not kept.
        if !Vary::of(&head.headers, &ctx.vary, &ctx.set.vary_lists).is_empty() {
            return None;
        }
        etag.to_str().ok()?;
        Some((range, etag, freshness))
    }

    /// Merge a new part into the kept ones of its representation (others are dropped) and store
    /// them; when they cover the whole body and it fits, store it as a 200 instead.
    async fn store_part(
        &self,
        ctx: &Ctx<'_>,
        headers: &HeaderMap,
        (range, etag, freshness): (ContentRange, HeaderValue, Freshness),
        bytes: Bytes,
        ticket: Ticket,
    ) {
        let max = ctx.set.cfg.cache.max_object_size.as_u64();
        let mut set = Parts::new(etag.clone(), range.complete, max);
        for old in self.store.parts(&ctx.key).await {
            if let (Some(r), Some(e)) = (kept_range(&old), &old.origin_etag) {
                // Another representation's parts, or more than fits: left out.
                let _ = set.add(e, r, old.body.clone());
            }
        }
        // A bounded number of ranges per URL: each costs an object, and every new part is merged
        // with all kept ones.
        if set.add(&etag, range, bytes).is_err() || set.ranges().count() > MAX_PARTS {
            return;
        }
        let mut headers = detach(headers);
        // Fields a qualified private / no-cache keeps out of the cache stay out of parts too.
        take_withheld(&mut headers);
        for h in [header::CONTENT_RANGE, header::CONTENT_LENGTH] {
            headers.remove(h);
        }
        let mut tags = tags::parse_surrogate_keys(&headers);
        for t in ctx.route.tags.iter().cloned() {
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        tags.push(tags::url_tag(&ctx.norm.path_and_query));
        let object = |status, headers, body: Bytes, compressible| {
            let new = NewObject {
                status,
                no_transform: no_transform(&headers),
                headers,
                body,
                origin_encoded: None,
                etag: etag.clone(),
                origin_etag: Some(etag.clone()),
                freshness,
                vary: Vary::default(),
                tags: tags.clone(),
                compressible,
            };
            Arc::new(CachedObject::new(new, self.clock.now()))
        };
        if let Some(whole) = set.complete_body() {
            let c = &ctx.set.cfg.compression;
            let compressible = c.enabled
                && whole.len() as u64 >= c.min_size.as_u64()
                && coding::is_compressible(headers.get(header::CONTENT_TYPE), &c.types);
            let obj = object(StatusCode::OK, headers, whole, compressible);
            self.store_object(&ctx.key, &obj, ticket).await;
            self.store.set_parts(&ctx.key, Vec::new(), ticket).await;
            return;
        }
        let parts = set
            .ranges()
            .map(|(r, b)| {
                let mut h = headers.clone();
                if let Ok(v) =
                    HeaderValue::from_str(&conditional::content_range(r.first, r.last, r.complete))
                {
                    h.insert(header::CONTENT_RANGE, v);
                }
                object(StatusCode::PARTIAL_CONTENT, h, b.clone(), false)
            })
            .collect();
        self.store.set_parts(&ctx.key, parts, ticket).await;
    }
}

/// The range a kept part holds.
fn kept_range(obj: &CachedObject) -> Option<ContentRange> {
    let r = parse_content_range(obj.headers.get(header::CONTENT_RANGE)?)?;
    (r.len() == obj.body.len() as u64).then_some(r)
}
