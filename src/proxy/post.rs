//! POST answers that may serve later GETs (RFC 9111 §4, RFC 9110 §9.3.3): a 200/203 whose
//! `Content-Location` is the POST's own target, with explicit freshness, is stored under the GET
//! key of that target, after the POST has invalidated what was stored there.

use bytes::Bytes;
use http::response::Parts;
use http::{header, HeaderMap, Method, Response};
use hyper::body::Incoming;

use super::context::Ctx;
use super::fetch::{decode_for_storing, read_limited, take_withheld, BodyFailed, Read};
use super::Proxy;
use crate::body::{IdleTimeout, ProxyBody};
use crate::cache::budget::Reservation;
use crate::cache::purges::Ticket;
use crate::rfc::coding::{self, Coding};
use crate::rfc::directives::Directives;
use crate::rfc::storable::{self, Freshness, RoutePolicy};

/// What storing a POST answer for GETs needs, decided before its body is read.
pub(super) struct PostReuse {
    /// The GET key of the POST's target.
    key: String,
    /// Its lifetime, from the origin's own fields.
    freshness: Freshness,
    /// The content coding it arrives in (identity, gzip or zstd).
    encoding: Coding,
    /// Purges after this point win over the answer.
    ticket: Ticket,
}

/// A POST answer read for storing.
pub(super) enum PostAnswer {
    /// The whole body, its bytes reserved in the fills' budget until stored.
    Buffered(Bytes, Reservation),
    /// Over the object size or the fills' budget: what was read, then the rest, streamed.
    Streamed(ProxyBody),
}

impl Proxy {
    /// Where and how long a POST's answer may be stored for GETs, decided from its head alone
    /// (before any body is buffered): it names its own target and is storable with a lifetime of
    /// its own. A route `ttl` does not apply: only the origin can say a POST answer is reusable.
    pub(super) fn post_for_reuse(&self, ctx: &Ctx<'_>, parts: &Parts) -> Option<PostReuse> {
        if ctx.head.method != Method::POST || ctx.bypass.is_some() {
            return None;
        }
        let location = parts.headers.get(header::CONTENT_LOCATION);
        let is_target = self
            .same_origin_target(ctx, location)
            .is_some_and(|t| t == ctx.norm.path_and_query);
        if !storable::post_reusable(parts.status, &parts.headers, is_target) {
            return None;
        }
        let facts = ctx.facts_now(Directives::from_request(ctx.headers()).no_store);
        // Nor does `shared-verified`: a POST's answer is no verdict, so §3.5 applies as written.
        let policy = RoutePolicy {
            ttl: None,
            verify: None,
            ..ctx.route.policy
        };
        let freshness = storable::evaluate(
            parts.status,
            &parts.headers,
            facts,
            policy,
            ctx.set.cache_policy(),
        )
        .ok()
        .filter(|f| f.lifetime > f.initial_age)?;
        let encoding = coding::stored_encoding(&parts.headers).ok()?;
        Some(PostReuse {
            key: ctx.read_key(&ctx.client.origin()),
            freshness,
            encoding,
            // Taken right after this POST's own invalidation, before its body is read: a purge
            // (or a later POST's invalidation) from now on wins over this answer.
            ticket: self.store.purge_ticket(),
        })
    }

    /// Read a POST answer up to `cache.max_object_size`, within the fills' byte budget.
    pub(super) async fn read_post_answer(
        &self,
        headers: &HeaderMap,
        body: IdleTimeout<Incoming>,
        limit: usize,
    ) -> Result<PostAnswer, BodyFailed> {
        let mut budget = self.fill_budget.reservation();
        Ok(
            match read_limited(body, headers, limit, &mut budget).await? {
                Read::Complete(b) => PostAnswer::Buffered(b, budget),
                Read::TooLarge(rest) | Read::OverBudget(rest) => PostAnswer::Streamed(rest),
            },
        )
    }

    /// Store a POST answer as a GET fill would; false when it was not stored.
    pub(super) async fn store_post_answer(
        &self,
        ctx: &Ctx<'_>,
        reuse: PostReuse,
        parts: &Parts,
        body: Bytes,
        mut budget: Reservation,
    ) -> bool {
        let limit = ctx.set.cfg.cache.max_object_size.as_u64() as usize;
        let mut headers = parts.headers.clone();
        let Ok((body, encoded, etag)) =
            decode_for_storing(body, reuse.encoding, &mut headers, limit)
        else {
            return false;
        };
        if encoded.is_some() && !budget.grow(body.len()) {
            return false;
        }
        take_withheld(&mut headers);
        let (mut stored, ()) = Response::new(()).into_parts();
        stored.status = parts.status;
        stored.headers = headers;
        let mut job = self.fill_job(ctx, false);
        job.key = reuse.key;
        let obj = self.build_object(&job, stored, (body, encoded), etag, reuse.freshness);
        let stored = self.store_object(&job.key, &obj, reuse.ticket).await;
        drop(budget);
        stored
    }
}
