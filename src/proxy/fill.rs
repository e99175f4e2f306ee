//! Collapsed fills: one origin fetch per key, and what each participant answers with.
//! A waiter whose Vary values differ from the stored object's tries again (a few times).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{header, HeaderMap, Method, Response};
use hyper::body::Incoming;

use super::context::Ctx;
use super::fetch::{Basis, Fetched, FillJob, Summary};
use super::refresh::PRECONDITIONS;
use super::Proxy;
use crate::body::ProxyBody;
use crate::cache::collapse::Joined;
use crate::cache::{tags, CachedObject};
use crate::error::{OriginCause, ProxyError};
use crate::rfc::cache_status::{CacheStatus, Detail, Fwd};
use crate::rfc::coding;
use crate::rfc::directives::Directives;
use crate::verify::Admission;

/// Rounds a waiter tries when the filled object is another Vary variant.
const VARY_ROUNDS: usize = 3;

impl Proxy {
    /// Fill from the origin (collapsed with concurrent requests for the key) and answer.
    pub(super) async fn fill(
        self: &Arc<Self>,
        ctx: &mut Ctx<'_>,
        body: Incoming,
        mut basis: Basis,
        fwd: Fwd,
        mut flight: String,
    ) -> (Response<ProxyBody>, CacheStatus) {
        if let (true, Basis::Stale(obj)) = (ctx.head.method == Method::HEAD, &basis) {
            // RFC 9111 §4.3.5: a HEAD costs no body either way and updates what is stored. An
            // origin that answers it with anything but a 200 gets the conditional GET instead.
            if let Some(answer) = self.head_through(ctx, obj.clone(), fwd).await {
                return answer;
            }
        }
        let status = CacheStatus::forward(fwd);
        for _ in 0..VARY_ROUNDS {
            let t0 = Instant::now();
            // Only a leader builds the origin request; a waiter just waits.
            let fetch = || {
                let basis = std::mem::take(&mut basis);
                self.clone().fetch(self.fill_job(ctx, false), basis)
            };
            let joined = self.fills.run(&flight, fetch, Fetched::summary).await;
            ctx.origin_ms = Some(t0.elapsed().as_millis());
            let (summary, response, withheld, collapsed) = match joined {
                Joined::Leader(f) => (f.summary, f.response, f.withheld, false),
                Joined::Waiter(s) => (s, None, HeaderMap::new(), true),
                Joined::Lost => (
                    Summary::Failed(ProxyError::Origin(OriginCause::Other)),
                    None,
                    HeaderMap::new(),
                    true,
                ),
            };
            let now = self.clock.now();
            // A waiter's answer is the leader's fetch, whatever it brought: counted as its own
            // result, so one origin fetch is not read as many misses.
            let status = status.collapsed(collapsed);
            match summary {
                Summary::Stored(obj, _) if !obj.vary.matches(&ctx.vary) => {
                    // Now the URL's Vary fields are known: collapse with this variant's requests.
                    flight = ctx.flight(&obj.vary);
                    continue;
                }
                Summary::Stored(obj, revalidated) => {
                    let status = if revalidated {
                        status.revalidated(304).ttl(obj.ttl(now))
                    } else {
                        status.stored()
                    };
                    let mut resp = self.serve(&obj, ctx);
                    resp.headers_mut().extend(withheld);
                    return (resp, status);
                }
                // The leader's stale variant is not this request's: never hand it over.
                Summary::Stale(obj, e) if !obj.vary.matches(&ctx.vary) => {
                    return (e.into_response(), status)
                }
                Summary::Stale(obj, e) => {
                    let status = CacheStatus::forward(Fwd::Stale)
                        .fwd_status(e.fwd_status())
                        .ttl(obj.ttl(now))
                        .collapsed(collapsed)
                        .detail(Detail::StaleIfError);
                    return (self.serve(&obj, ctx), status);
                }
                Summary::Failed(e) => return (e.into_response(), status),
                Summary::Pass(reason) => {
                    let status = status.detail(Detail::NotStored(reason));
                    let Some(resp) = response else {
                        // Waiters were not given the leader's response: they ask the origin
                        // themselves, with their own preconditions.
                        let status =
                            CacheStatus::forward(Fwd::Bypass).detail(Detail::NotStored(reason));
                        return (self.forward(ctx, body).await, status);
                    };
                    // The fill sent none of the client's preconditions: evaluated here instead.
                    let mut resp = self.passed(resp, ctx.headers());
                    if ctx.head.method == Method::HEAD {
                        *resp.body_mut() = ProxyBody::empty();
                    }
                    return (resp, status);
                }
            }
        }
        let status = CacheStatus::forward(Fwd::VaryMiss).detail(Detail::VaryChurn);
        (self.forward(ctx, body).await, status)
    }

    /// Refresh a stale object in the background (stale-while-revalidate), once per key at a time.
    pub(super) fn refresh_in_background(
        self: &Arc<Self>,
        ctx: &Ctx<'_>,
        stale: &Arc<CachedObject>,
    ) {
        let flight = ctx.flight(&stale.vary);
        if ctx.directives.no_store || self.fills.is_running(&flight) {
            return;
        }
        let job = self.fill_job(ctx, true);
        let (me, stale) = (self.clone(), stale.clone());
        let running = Background::start(self.clone());
        tokio::spawn(async move {
            let _running = running;
            let fetch = || me.clone().fetch(job, Basis::Stale(stale));
            let _ = me.fills.run(&flight, fetch, Fetched::summary).await;
        });
    }

    /// The origin request fields of a fill, and of a HEAD asked instead of one: a HEAD must ask
    /// for the representation a fill stores, or an origin with per-coding ETags never matches.
    pub(super) fn fill_headers(&self, ctx: &Ctx<'_>) -> HeaderMap {
        let mut headers = ctx.origin_headers();
        // The cache stores complete identity representations: the client's preconditions are
        // evaluated against the stored object (or the unstorable answer), not forwarded.
        for h in PRECONDITIONS {
            headers.remove(h);
        }
        headers.remove(header::CONTENT_LENGTH);
        // Asking for gzip or zstd lets the origin save bandwidth (the body is decoded before
        // storing), but an unstorable answer goes to this client as is, so only ask for what the
        // client takes.
        let prefer = ctx.set.cfg.compression.preference();
        let accept = coding::fill_accept_encoding(ctx.headers(), &prefer);
        headers.insert(header::ACCEPT_ENCODING, accept);
        headers
    }

    /// The origin request for a fill, detached from the client's.
    pub(super) fn fill_job(&self, ctx: &Ctx<'_>, background: bool) -> FillJob {
        let headers = self.fill_headers(ctx);
        let mut tags = ctx.route.tags.clone();
        tags.push(tags::url_tag(&ctx.norm.path_and_query));
        FillJob {
            key: ctx.key.clone(),
            path_and_query: ctx.norm.path_and_query.clone(),
            headers,
            authorized: ctx.credential.is_some(),
            ordinary: ctx.credential.is_none()
                && !ctx.headers().contains_key(header::COOKIE)
                && ctx.directives == Directives::default(),
            policy: ctx.route.policy,
            route: ctx.route.id,
            asker: ctx.asker,
            unverified: ctx.admission == Some(Admission::Unverified),
            tags,
            vary_source: ctx.vary.clone().into_owned(),
            background,
            public: ctx.client.public(),
            set: ctx.set.clone(),
        }
    }
}

/// Counts a spawned background refresh until it ends, however it ends.
struct Background(Arc<Proxy>);

impl Background {
    fn start(proxy: Arc<Proxy>) -> Self {
        proxy.background.fetch_add(1, Ordering::AcqRel);
        Self(proxy)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.0.background.fetch_sub(1, Ordering::AcqRel);
    }
}
