//! The decision: what the cache does for a request, from the store's lookup and the pure
//! use-time rules. Serves nothing itself.

use std::sync::Arc;

use http::header;

use super::context::Ctx;
use super::fetch::Basis;
use super::Proxy;
use crate::cache::{CachedObject, Lookup};
use crate::error::ProxyError;
use crate::rfc::cache_status::{CacheStatus, Detail, Fwd};
use crate::rfc::partial::ContentRange;
use crate::rfc::storable::NoStore;
use crate::rfc::usage::{self, RevalidateReason, StaleReason, Usage};
use crate::rfc::vary::Vary;
use crate::verify::Admission;

/// What to do with a request.
pub enum Decision {
    /// Answer from this stored object.
    Serve(Arc<CachedObject>, CacheStatus),
    /// Answer from this stale object and refresh it in the background.
    ServeAndRefresh(Arc<CachedObject>, CacheStatus),
    /// Fetch from the origin (collapsed), revalidating what is stored when it has validators.
    Fill {
        /// The stored object being replaced, or other variants a 304 may select.
        basis: Basis,
        /// Why the origin is asked.
        fwd: Fwd,
        /// What concurrent requests collapse on: the key, plus the request's values for the
        /// fields the URL is known to vary on.
        flight: String,
    },
    /// Answer a range from a kept part: the part object, its range, the range served.
    Part(Arc<CachedObject>, ContentRange, (u64, u64), CacheStatus),
    /// Pass the request through, uncached.
    Forward(CacheStatus),
    /// An unsafe method: pass through, then invalidate.
    Unsafe,
    /// Answer with an error without asking the origin.
    Reject(ProxyError, CacheStatus),
}

impl Proxy {
    /// Decide what the cache does for `ctx`.
    pub(super) async fn decide(&self, ctx: &Ctx<'_>) -> Decision {
        if !ctx.is_read() {
            return Decision::Unsafe;
        }
        if let Some(why) = ctx.bypass {
            return Decision::Forward(CacheStatus::forward(Fwd::Bypass).detail(why));
        }
        match &ctx.admission {
            Some(Admission::Rejected(r)) => {
                let e = ProxyError::CredentialRejected(r.clone());
                return Decision::Reject(e, CacheStatus::default());
            }
            Some(Admission::Unverified) => return self.verify_first(ctx).await,
            _ => {}
        }
        let (stored, miss, vary, mut variants) = match self.store.lookup(&ctx.key, &ctx.vary).await
        {
            Lookup::Hit(obj) => {
                let vary = obj.vary.clone();
                (Some(obj), Fwd::Stale, vary, Vec::new())
            }
            Lookup::VaryMiss(vary, others) => (None, Fwd::VaryMiss, vary, others),
            Lookup::Miss => (None, Fwd::UriMiss, Vary::default(), Vec::new()),
        };
        let facts = stored.as_ref().map(|o| o.stored(self.clock.now()));
        let ttl = facts.map_or(0, |f| f.ttl());
        let (stale, fwd) = match (usage::decide(facts.as_ref(), &ctx.directives), stored) {
            (Usage::Fresh, Some(obj)) => {
                // A hit on an object whose encodings were crowded out gets them now.
                self.encoder.schedule(&ctx.key, &obj);
                return Decision::Serve(obj, CacheStatus::hit(ttl));
            }
            (Usage::Stale(StaleReason::MaxStale), Some(obj)) => {
                let status = CacheStatus::hit(ttl).detail(Detail::MaxStale);
                return Decision::Serve(obj, status);
            }
            (Usage::Stale(StaleReason::WhileRevalidate), Some(obj)) => {
                let status = CacheStatus::forward(Fwd::Stale)
                    .ttl(ttl)
                    .detail(Detail::StaleWhileRevalidate);
                return Decision::ServeAndRefresh(obj, status);
            }
            (Usage::Revalidate(RevalidateReason::Request), stale) => (stale, Fwd::Request),
            (Usage::Revalidate(RevalidateReason::Stale), stale) => (stale, Fwd::Stale),
            _ => (None, miss),
        };
        if let Some(part) = self.part_for(ctx, stale.as_deref()).await {
            return part;
        }
        // Checked only now: a fresh stored object is served even while the key is marked pass.
        if let Some(no_fill) = self.no_fill(ctx) {
            return no_fill;
        }
        let flight = ctx.flight(&vary);
        // Only variants the origin can name (a 304 selects one by its ETag), and only when the
        // request carries no credential and the URL does not vary on who is asking.
        let anonymous = ctx.credential.is_none() && !ctx.headers().contains_key(header::COOKIE);
        variants.retain(|o| anonymous && o.origin_etag.is_some() && o.vary.shareable_by_etag());
        variants.truncate(ctx.set.cfg.cache.max_variants);
        let basis = match (stale, variants.is_empty()) {
            (Some(obj), _) => Basis::Stale(obj),
            (None, false) => Basis::Variants(variants),
            (None, true) => Basis::Fresh,
        };
        Decision::Fill { basis, fwd, flight }
    }

    /// A request whose credential has no current verdict (`shared-verified`): nothing stored is
    /// served to it, not even stale on an origin error. The request itself goes to the origin,
    /// collapsed only with requests carrying the same credential, and its answer is the verdict.
    async fn verify_first(&self, ctx: &Ctx<'_>) -> Decision {
        if let Some(no_fill) = self.no_fill(ctx) {
            return no_fill;
        }
        // Always a miss to it: what others stored is none of an unverified asker's business.
        Decision::Fill {
            basis: Basis::Fresh,
            fwd: Fwd::UriMiss,
            flight: ctx.flight(&Vary::default()),
        }
    }

    /// What a request that nothing stored can answer gets instead of a fill: a 504 under
    /// `only-if-cached`, a pass-through under request `no-store` or on a key marked pass.
    fn no_fill(&self, ctx: &Ctx<'_>) -> Option<Decision> {
        if ctx.directives.only_if_cached {
            let status = CacheStatus::default().detail(Detail::OnlyIfCached);
            return Some(Decision::Reject(ProxyError::NotCached, status));
        }
        if ctx.directives.no_store {
            let status = CacheStatus::forward(Fwd::Bypass)
                .detail(Detail::NotStored(NoStore::RequestNoStore));
            return Some(Decision::Forward(status));
        }
        let reason = self.pass.get(&ctx.key)?;
        let status = CacheStatus::forward(Fwd::Bypass).detail(Detail::NotStored(reason));
        Some(Decision::Forward(status))
    }
}
