//! The request path. [`Proxy::handle`] reads top to bottom: gather the context, decide (a pure
//! use-time decision over the store's lookup), then one `match` that serves, fills, forwards or
//! rejects, then finish (X-Cache, Cache-Status, Via, surrogate stripping, metrics, access log).
//!
//! - [`context`]: the per-request facts; [`access`]: the access log line
//! - [`lookup`]: the decision, serving nothing itself
//! - [`fill`]: collapsed fills and what each waiter gets; [`fetch`]: the leader's origin fetch
//! - [`refresh`]: stored responses updated by a 304 or a HEAD response
//! - [`forward`]: pass-through and unsafe methods; [`post`]: POST answers stored for later GETs;
//!   [`partial`]: 206 answers kept as parts
//! - [`respond`]: answers built from stored objects, on-the-fly compression of passed responses

mod access;
mod apply;
mod context;
mod fetch;
mod fill;
mod forward;
mod lookup;
mod partial;
mod post;
mod refresh;
pub mod respond;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::cache::budget::FillBudget;
use crate::cache::collapse::Collapser;
use crate::cache::encode::Encoder;
use crate::cache::pass::PassMemory;
use crate::cache::{CachedObject, Store};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::ProxyError;
use crate::metrics::{ConfigState, Gauges, Metrics, Snapshot};
use crate::origin;
use crate::request_id::{self, REQUEST_ID};
use crate::rfc::cache_status::{CacheStatus, Detail};
use crate::rfc::storable::Retention;
use crate::settings::Settings;
use crate::verify::{Admission, Verdicts};
use access::AccessLine;
use context::Ctx;
use fetch::Summary;
use lookup::Decision;

/// `status` for an answer that is this error: the origin's status when the origin failed, and
/// the cause as `detail` (it replaces a detail that said why the request was forwarded).
fn failed(status: CacheStatus, e: &ProxyError) -> CacheStatus {
    let status = if e.is_origin_failure() {
        status.fwd_status(e.fwd_status())
    } else {
        status
    };
    status.detail(Detail::Error(e.detail()))
}

/// The fields every answer carries, refused requests included: Cache-Status and X-Request-Id.
fn stamp(h: &mut HeaderMap, status: &CacheStatus, request_id: HeaderValue) {
    if let Ok(v) = HeaderValue::try_from(status.to_string()) {
        h.insert("cache-status", v);
    }
    h.insert(REQUEST_ID, request_id);
}

/// Bytes the hit-for-pass memory may hold.
const PASS_MEMORY_BYTES: usize = 8 << 20;

/// Bodies that may wait for the background encoder: a sixteenth of the cache, 1–64 MiB.
fn encode_queue_bytes(max_size: u64) -> usize {
    (max_size / 16).clamp(1 << 20, 64 << 20) as usize
}

/// Shared state of one running proxy.
pub struct Proxy {
    /// The settings new requests are answered under; swapped whole by a reload.
    settings: ArcSwap<Settings>,
    store: Store,
    fills: Collapser<Summary>,
    pass: PassMemory,
    fill_budget: FillBudget,
    encoder: Encoder,
    clock: Clock,
    metrics: Metrics,
    /// Credential verdicts of `shared-verified` routes.
    verdicts: Verdicts,
    /// Ids for requests that come without a usable `X-Request-Id`.
    ids: request_id::Generator,
    /// Background refreshes spawned and not yet finished (so `settle` cannot miss one that has
    /// not registered its fill yet).
    background: AtomicUsize,
    /// The cluster's purge log, when `[cluster]` is set (joined after the listeners are bound).
    cluster: std::sync::OnceLock<Arc<crate::cluster::Cluster>>,
}

impl Proxy {
    /// Build the shared state from a validated config.
    pub fn new(cfg: Config) -> Self {
        let store = Store::with_retention(
            cfg.cache.max_size.as_u64(),
            cfg.cache.max_variants,
            Retention {
                revalidate: cfg.cache.keep_for_revalidation,
                grace: cfg.cache.stale_grace,
            },
        );
        let clock = store.clock().clone();
        let c = &cfg.compression;
        let metrics = Metrics::default();
        Self {
            fills: Collapser::default(),
            pass: PassMemory::new(PASS_MEMORY_BYTES, clock.clone()),
            fill_budget: FillBudget::new(cfg.cache.fill_memory()),
            encoder: Encoder::new(
                store.clone(),
                c.stored_levels(),
                encode_queue_bytes(cfg.cache.max_size.as_u64()),
            ),
            verdicts: Verdicts::new(
                cfg.cache.max_verdict_memory.as_u64() as usize,
                clock.clone(),
            ),
            settings: ArcSwap::from_pointee(Settings::new(cfg, &metrics)),
            metrics,
            ids: request_id::Generator::default(),
            background: AtomicUsize::new(0),
            cluster: std::sync::OnceLock::new(),
            store,
            clock,
        }
    }

    /// Answer one client request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let (head, body) = req.into_parts();
        let request_id = self.ids.for_request(&head.headers);
        let set = self.settings();
        let mut ctx = match Ctx::new(&self, set.clone(), &head, peer, request_id.clone()) {
            Ok(ctx) => ctx,
            Err(e) => return self.reject(&set, &head, peer, request_id, e, start),
        };
        let (resp, status) = match self.decide(&ctx).await {
            Decision::Serve(obj, status) => (self.serve(&obj, &ctx), status),
            Decision::ServeAndRefresh(obj, status) => {
                self.refresh_in_background(&ctx, &obj);
                (self.serve(&obj, &ctx), status)
            }
            Decision::Fill { basis, fwd, flight } => {
                self.fill(&mut ctx, body, basis, fwd, flight).await
            }
            Decision::Part(obj, part, range, status) => {
                let resp = respond::from_part(&obj, part, range, self.clock.now());
                (resp, status)
            }
            Decision::Forward(status) => (self.forward(&mut ctx, body).await, status),
            Decision::Unsafe => self.unsafe_method(&mut ctx, body).await,
            Decision::Reject(e, status) => (e.into_response(), status),
        };
        self.finish(resp, status, &ctx, start)
    }

    /// Stamp the answer and account for it: X-Cache, Cache-Status (naming the error of an error
    /// answer), X-Request-Id, Via, surrogate stripping, CORS exposure, metrics and the access log.
    fn finish(
        &self,
        mut resp: Response<ProxyBody>,
        status: CacheStatus,
        ctx: &Ctx<'_>,
        start: Instant,
    ) -> Response<ProxyBody> {
        let mut status = self.credential_detail(status, ctx);
        // Classified before an error's cause replaces the detail: a forward is a PASS whether
        // or not the origin then failed.
        let result = status.result();
        if let Some(e) = resp.extensions().get::<ProxyError>() {
            status = failed(status, e);
        }
        let cfg = &ctx.set.cfg;
        ctx.set.routes.request(ctx.route.id, result);
        let h = resp.headers_mut();
        h.insert("x-cache", HeaderValue::from_static(result.as_str()));
        stamp(h, &status, ctx.request_id.clone());
        origin::add_via(h, ctx.head.version, &cfg.server.via);
        if !cfg.cache.expose_surrogate_keys {
            h.remove("surrogate-key");
            h.remove("surrogate-control");
        }
        if cfg.cache.expose_cache_headers_to_cors {
            crate::cors::expose_cache_fields(h);
        }
        if !AccessLine::enabled() {
            return resp;
        }
        let line = AccessLine {
            method: ctx.head.method.clone(),
            path: ctx.norm.path_and_query.clone(),
            status: resp.status().as_u16(),
            cache: result.as_str(),
            detail: status.detail.map_or("-", Detail::as_str),
            client: cfg.forwarding.client_addr(ctx.headers(), ctx.peer),
            request_id: ctx.request_id.clone(),
            origin_ms: ctx.origin_ms.map_or(-1, |m| m as i64),
            start,
        };
        line.attach(resp)
    }

    /// On a `shared-verified` route, what the credential's verdict did: why an unverified or
    /// rejected request was not served from the cache, or, when nothing more specific is said,
    /// that a verified one was. Counted.
    fn credential_detail(&self, status: CacheStatus, ctx: &Ctx<'_>) -> CacheStatus {
        let Some(admission) = &ctx.admission else {
            return status;
        };
        let detail = match admission {
            Admission::Verified => {
                if status.hit {
                    self.metrics.verified_hit();
                }
                Detail::CredentialVerified
            }
            Admission::Unverified => Detail::CredentialUnverified,
            Admission::Rejected(_) => {
                self.metrics.credential_rejected();
                Detail::CredentialRejected
            }
        };
        match (admission, status.detail) {
            (Admission::Verified, Some(_)) => status,
            _ => status.detail(detail),
        }
    }

    /// A request refused before the cache is consulted (its target cannot be normalized, is too
    /// long, or names a host this proxy does not answer for): Cache-Status names why.
    fn reject(
        &self,
        set: &Settings,
        head: &http::request::Parts,
        peer: SocketAddr,
        request_id: HeaderValue,
        e: ProxyError,
        start: Instant,
    ) -> Response<ProxyBody> {
        self.metrics.bad_request();
        let status = failed(CacheStatus::default(), &e);
        let mut resp = e.into_response();
        stamp(resp.headers_mut(), &status, request_id.clone());
        if !AccessLine::enabled() {
            return resp;
        }
        let line = AccessLine {
            method: head.method.clone(),
            // The target is what could not be read safely (it may hold an API key): not logged.
            path: "-".into(),
            status: resp.status().as_u16(),
            cache: "-",
            detail: status.detail.map_or("-", Detail::as_str),
            client: set.cfg.forwarding.client_addr(&head.headers, peer),
            request_id,
            origin_ms: -1,
            start,
        };
        line.attach(resp)
    }

    /// Answer from a stored object.
    fn serve(&self, obj: &CachedObject, ctx: &Ctx<'_>) -> Response<ProxyBody> {
        let head = ctx.head.method == Method::HEAD;
        let prefer = ctx.set.cfg.compression.preference();
        respond::from_object(
            obj,
            self.clock.now(),
            ctx.headers(),
            head,
            &prefer,
            &self.metrics,
        )
    }

    /// Build the client's answer from a stored object (benches).
    pub fn respond_cached(
        &self,
        obj: &CachedObject,
        req: &HeaderMap,
        head: bool,
    ) -> Response<ProxyBody> {
        let prefer = self.settings().cfg.compression.preference();
        respond::from_object(obj, self.clock.now(), req, head, &prefer, &self.metrics)
    }

    /// The object store (admin purges, tests, benches).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The settings in effect for new requests (admin purges and token, `/stats`, tests).
    pub fn settings(&self) -> Arc<Settings> {
        self.settings.load_full()
    }

    /// The clock stored objects are aged by.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The credential verdicts of `shared-verified` routes (admin `POST /verify/purge`).
    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
    }

    /// The cluster this node belongs to, if any.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get()
    }

    /// Join a cluster (once, at start).
    pub fn set_cluster(&self, c: Arc<crate::cluster::Cluster>) {
        let _ = self.cluster.set(c);
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The counters with the store's and encoder's figures, after pending maintenance.
    pub async fn snapshot(&self) -> Snapshot {
        self.store.run_pending_tasks().await;
        let set = self.settings();
        let mut s = self.metrics.snapshot(Gauges {
            objects: self.store.entry_count(),
            bytes: self.store.weighted_size(),
            tags: self.store.tag_index().len() as u64,
            compressions: self.encoder.runs(),
            verdicts: self.verdicts.len() as u64,
            verdict_bytes: self.verdicts.bytes() as u64,
        });
        s.config = ConfigState {
            reloads: s.config.reloads,
            reload_errors: s.config.reload_errors,
            ..set.state()
        };
        s.cluster = self.cluster().map(|c| c.state());
        s
    }

    /// Wait (bounded) for background work: encodings, fills, purge removals. Tests and benches.
    pub async fn settle(&self) {
        for _ in 0..5000 {
            if self.fills.is_empty() && self.background.load(Ordering::Acquire) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.encoder.settle().await;
        self.store.run_pending_tasks().await;
    }
}
