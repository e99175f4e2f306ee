//! The request path, top to bottom: normalize → key → look up → serve fresh / stale / revalidate / fill
//! (collapsed) → store → respond. Everything a client sees is decided in this file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use futures_util::future::{BoxFuture, FutureExt, Shared};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, BodyStream, StreamBody};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::body::{IdleTimeout, ProxyBody};
use crate::compress::{self, Coding};
use crate::conditional;
use crate::config::{AuthMode, Config};
use crate::error::ProxyError;
use crate::metrics::{CacheResult, Metrics};
use crate::normalize::{self, Normalized, Normalizer};
use crate::origin::{self, Origin, OriginBody};
use crate::policy::{self, CachePolicy, Directives, Freshness, NoStore, RequestFacts, RoutePolicy};
use crate::respond::{self, set_cache_status};
use crate::store::{CachedObject, Lookup, Store};
use crate::tags;

/// How a collapsed fill ended; cloned to every waiter.
#[derive(Clone)]
enum FillOutcome {
    /// A (new or revalidated) object is in the cache.
    Stored(Arc<CachedObject>, bool),
    /// The origin failed and a stale object may stand in (stale-if-error).
    Stale(Arc<CachedObject>, u16),
    /// Not storable: the leader got the response; waiters go to the origin themselves.
    Pass(NoStore),
    /// The origin failed.
    Failed(ProxyError),
}

type Flight = Shared<BoxFuture<'static, FillOutcome>>;

/// What a matched route asks for.
#[derive(Debug, Clone, Copy, Default)]
struct RouteInfo {
    cache: bool,
    policy: RoutePolicy,
}

/// Everything a fill needs, detached from the client's request.
struct FillRequest {
    key: String,
    path_and_query: String,
    headers: HeaderMap,
    authorized: bool,
    route: RouteInfo,
    /// Route tags and the URL tag, added to every object this fill stores.
    tags: Vec<String>,
    vary_source: HeaderMap,
    /// A background refresh (stale-while-revalidate): skipped if another refresh already replaced the object.
    background: bool,
}

/// Shared state of one running proxy.
pub struct Proxy {
    cfg: Config,
    normalizer: Normalizer,
    router: matchit::Router<usize>,
    store: Store,
    origin: Origin,
    inflight: Mutex<HashMap<String, Flight>>,
    pass_keys: moka::sync::Cache<String, NoStore>,
    compress_slots: tokio::sync::Semaphore,
    /// Counters for /metrics.
    pub metrics: Metrics,
}

/// The per-request facts gathered before the cache is consulted.
struct Ctx {
    method: Method,
    version: Version,
    peer: SocketAddr,
    norm: Normalized,
    credential: Option<HeaderValue>,
    origin_ms: Option<u128>,
}

impl Proxy {
    /// Build the shared state from a validated config.
    pub fn new(cfg: Config) -> Self {
        let mut router = matchit::Router::new();
        for (i, r) in cfg.routes.iter().enumerate() {
            // Config validation already proved every pattern inserts.
            let _ = router.insert(r.path.clone(), i);
        }
        Self {
            normalizer: Normalizer::new(&cfg.normalize),
            router,
            store: Store::with_revalidation_window(
                cfg.cache.max_size.as_u64(),
                cfg.cache.max_variants,
                cfg.cache.keep_for_revalidation,
            ),
            origin: Origin::new(&cfg.origin),
            inflight: Mutex::new(HashMap::new()),
            pass_keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(cfg.cache.hit_for_pass.max(Duration::from_millis(1)))
                .build(),
            compress_slots: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            ),
            metrics: Metrics::default(),
            cfg,
        }
    }

    /// The object store (admin purges, tests, benches).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The normalizer (benches).
    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    /// The configuration in effect.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Answer one client request.
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let norm = match self.normalizer.normalize(target) {
            Ok(n) => n,
            Err(e) => {
                self.metrics
                    .bad_requests
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(method = %req.method(), status = 400, error = %e, "rejected request");
                let mut resp = Response::new(ProxyBody::full(format!("{e}\n")));
                *resp.status_mut() = StatusCode::BAD_REQUEST;
                return resp;
            }
        };
        let credential = req
            .headers()
            .get(header::AUTHORIZATION)
            .cloned()
            .or_else(|| norm.credential.clone());
        let mut ctx = Ctx {
            method: req.method().clone(),
            version: req.version(),
            peer,
            norm,
            credential,
            origin_ms: None,
        };
        let route = self.route(ctx.norm.path());
        let (mut resp, result) = if ctx.method == Method::GET || ctx.method == Method::HEAD {
            if route.cache {
                self.cacheable(req, &mut ctx, route).await
            } else {
                let r = self.forward(req, &mut ctx, "bypass", "route").await;
                (r, CacheResult::Pass)
            }
        } else {
            let r = self.unsafe_method(req, &mut ctx).await;
            (r, CacheResult::Pass)
        };
        self.metrics.record(result);
        let h = resp.headers_mut();
        h.insert("x-cache", HeaderValue::from_static(result.as_str()));
        origin::add_via(h, ctx.version, &self.cfg.server.via);
        if !self.cfg.cache.expose_surrogate_keys {
            h.remove("surrogate-key");
            h.remove("surrogate-control");
        }
        tracing::info!(
            target: "apicache::access",
            method = %ctx.method,
            path = %ctx.norm.path_and_query,
            status = resp.status().as_u16(),
            cache = result.as_str(),
            origin_ms = ctx.origin_ms.map(|m| m as i64).unwrap_or(-1),
            total_us = start.elapsed().as_micros() as u64,
        );
        resp
    }

    fn route(&self, path: &str) -> RouteInfo {
        let Ok(m) = self.router.at(path) else {
            return RouteInfo {
                cache: true,
                ..Default::default()
            };
        };
        let r = &self.cfg.routes[*m.value];
        RouteInfo {
            cache: r.cache,
            policy: RoutePolicy {
                ttl: r.ttl,
                stale_while_revalidate: r.stale_while_revalidate,
                stale_if_error: r.stale_if_error,
                per_credential: r.auth == AuthMode::PerCredential,
            },
        }
    }

    /// The route's tag templates filled from the path (only needed when storing).
    fn route_tags(&self, path: &str) -> Vec<String> {
        let Ok(m) = self.router.at(path) else {
            return Vec::new();
        };
        let params: Vec<(&str, &str)> = m.params.iter().collect();
        self.cfg.routes[*m.value]
            .tags
            .iter()
            .map(|t| tags::render_template(t, params.iter().copied()))
            .collect()
    }

    /// GET and HEAD on a cacheable route.
    async fn cacheable(
        self: &Arc<Self>,
        req: Request<Incoming>,
        ctx: &mut Ctx,
        route: RouteInfo,
    ) -> (Response<ProxyBody>, CacheResult) {
        let per_cred = route.policy.per_credential && ctx.credential.is_some();
        let key = normalize::cache_key(
            &ctx.norm.path_and_query,
            if per_cred {
                ctx.credential.as_ref()
            } else {
                None
            },
        );
        let req_cc = request_directives(req.headers());
        let vary_req = vary_headers(req.headers(), &ctx.norm);
        let vary_req: &HeaderMap = &vary_req;

        let (stale, fwd) = match self.store.lookup(&key, vary_req).await {
            Lookup::Hit(obj) => {
                let ttl = obj.ttl();
                let age = obj.age();
                let must_check = req_cc.no_cache || obj.freshness.no_cache;
                let fresh_enough = ttl > 0
                    && req_cc.max_age.is_none_or(|m| age <= m)
                    && req_cc.min_fresh.is_none_or(|m| ttl >= m as i64);
                if !must_check && fresh_enough {
                    let status = format!("apicache; hit; ttl={ttl}");
                    return self.serve(&obj, req.headers(), ctx, status, CacheResult::Hit);
                }
                let staleness = (-ttl).max(0) as u64;
                let may_serve_stale = ttl <= 0 && !must_check && !obj.freshness.must_revalidate;
                if may_serve_stale && req_cc.max_stale.is_some_and(|m| staleness <= m) {
                    let status = format!("apicache; hit; ttl={ttl}; detail=max-stale");
                    return self.serve(&obj, req.headers(), ctx, status, CacheResult::Stale);
                }
                if may_serve_stale && staleness <= obj.freshness.swr {
                    let refreshing = self
                        .inflight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains_key(&key);
                    if !refreshing && !req_cc.no_store {
                        let mut fill = self.fill_request(&key, &req, vary_req, ctx, &route);
                        fill.background = true;
                        let me = self.clone();
                        let stale = obj.clone();
                        tokio::spawn(async move {
                            let _ = me.fill(fill, Some(stale), None).await;
                        });
                    }
                    let status =
                        format!("apicache; fwd=stale; ttl={ttl}; detail=stale-while-revalidate");
                    return self.serve(&obj, req.headers(), ctx, status, CacheResult::Stale);
                }
                let fwd = if req_cc.no_cache { "request" } else { "stale" };
                (Some(obj), fwd)
            }
            Lookup::VaryMiss => (None, "vary-miss"),
            Lookup::Miss => (None, "uri-miss"),
        };
        if req_cc.only_if_cached {
            return (ProxyError::NotCached.into_response(), CacheResult::Miss);
        }
        if req_cc.no_store {
            let r = self.forward(req, ctx, "bypass", "request-no-store").await;
            return (r, CacheResult::Pass);
        }
        // Checked only now: a fresh stored object is served even while the key is marked pass.
        if let Some(reason) = self.pass_keys.get(&key) {
            let r = self.forward(req, ctx, "bypass", reason.as_str()).await;
            return (r, CacheResult::Pass);
        }

        // Collapsed fill; a waiter whose Vary values differ from the stored object's tries again.
        let mut stale = stale;
        for _ in 0..3 {
            let fill = self.fill_request(&key, &req, vary_req, ctx, &route);
            let (tx, rx) = oneshot::channel();
            let t0 = Instant::now();
            let (outcome, leader) = self.fill(fill, stale.take(), Some(tx)).await;
            ctx.origin_ms = Some(t0.elapsed().as_millis());
            let collapsed = if leader { "" } else { "; collapsed" };
            match outcome {
                FillOutcome::Stored(obj, revalidated) => {
                    if !obj.vary.is_empty()
                        && policy::vary_values(&obj.vary, vary_req) != obj.vary_values
                    {
                        continue;
                    }
                    let (status, result) = if revalidated {
                        (
                            format!(
                                "apicache; fwd={fwd}; fwd-status=304; ttl={}{collapsed}",
                                obj.ttl()
                            ),
                            CacheResult::Hit,
                        )
                    } else {
                        (
                            format!("apicache; fwd={fwd}; stored{collapsed}"),
                            CacheResult::Miss,
                        )
                    };
                    return self.serve(&obj, req.headers(), ctx, status, result);
                }
                FillOutcome::Stale(obj, fwd_status) => {
                    if !obj.vary.is_empty()
                        && policy::vary_values(&obj.vary, vary_req) != obj.vary_values
                    {
                        // The leader's stale variant is not this request's: never hand it over.
                        let e = if fwd_status == 504 {
                            ProxyError::Timeout
                        } else {
                            ProxyError::Origin
                        };
                        return (e.into_response(), CacheResult::Miss);
                    }
                    let status = format!(
                        "apicache; fwd=stale; fwd-status={fwd_status}; ttl={}; detail=stale-if-error",
                        obj.ttl()
                    );
                    return self.serve(&obj, req.headers(), ctx, status, CacheResult::Stale);
                }
                FillOutcome::Failed(e) => return (e.into_response(), CacheResult::Miss),
                FillOutcome::Pass(reason) if leader => {
                    let mut resp = match rx.await {
                        Ok(r) => r,
                        Err(_) => ProxyError::Origin.into_response(),
                    };
                    if ctx.method == Method::HEAD {
                        *resp.body_mut() = ProxyBody::empty();
                    }
                    set_cache_status(
                        &mut resp,
                        &format!("apicache; fwd={fwd}; detail={}", reason.as_str()),
                    );
                    return (resp, CacheResult::Miss);
                }
                FillOutcome::Pass(reason) => {
                    let r = self.forward(req, ctx, "bypass", reason.as_str()).await;
                    return (r, CacheResult::Pass);
                }
            }
        }
        let r = self.forward(req, ctx, "vary-miss", "vary-churn").await;
        (r, CacheResult::Pass)
    }

    fn fill_request(
        &self,
        key: &str,
        req: &Request<Incoming>,
        vary_req: &HeaderMap,
        ctx: &Ctx,
        route: &RouteInfo,
    ) -> FillRequest {
        let mut headers = origin::forward_headers(
            req.headers(),
            ctx.version,
            ctx.peer,
            ctx.credential.as_ref(),
            &self.cfg.server.via,
        );
        // The cache stores complete identity representations: the client's preconditions are
        // evaluated against the stored object, not forwarded.
        for h in [
            header::IF_NONE_MATCH,
            header::IF_MODIFIED_SINCE,
            header::IF_MATCH,
            header::IF_UNMODIFIED_SINCE,
            header::RANGE,
            header::IF_RANGE,
            header::CONTENT_LENGTH,
        ] {
            headers.remove(h);
        }
        // Asking for gzip lets the origin save bandwidth (the body is decoded before storing), but
        // an unstorable answer goes to this client as is, so only ask when the client takes gzip.
        let client_gzip = compress::negotiate(
            req.headers().get_all(header::ACCEPT_ENCODING).iter(),
            &[Coding::Gzip],
        ) == Coding::Gzip;
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(if client_gzip { "gzip" } else { "identity" }),
        );
        let mut tags = self.route_tags(ctx.norm.path());
        tags.push(tags::url_tag(&ctx.norm.path_and_query));
        FillRequest {
            key: key.to_string(),
            path_and_query: ctx.norm.path_and_query.clone(),
            headers,
            authorized: ctx.credential.is_some(),
            route: *route,
            tags,
            vary_source: vary_req.clone(),
            background: false,
        }
    }

    /// Join or start the one origin fetch for `key`. Returns the outcome and whether this caller led.
    async fn fill(
        self: &Arc<Self>,
        fr: FillRequest,
        stale: Option<Arc<CachedObject>>,
        pass_tx: Option<oneshot::Sender<Response<ProxyBody>>>,
    ) -> (FillOutcome, bool) {
        let (flight, leader) = {
            let mut map = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(f) = map.get(&fr.key) {
                (f.clone(), false)
            } else {
                let me = self.clone();
                let key = fr.key.clone();
                // Spawned so a client that disconnects does not abort the fill for everyone else.
                let handle = tokio::spawn(async move {
                    let key = fr.key.clone();
                    let out = me.fetch_and_store(fr, stale, pass_tx).await;
                    me.inflight
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .remove(&key);
                    out
                });
                let f: Flight = async move {
                    handle
                        .await
                        .unwrap_or(FillOutcome::Failed(ProxyError::Origin))
                }
                .boxed()
                .shared();
                map.insert(key, f.clone());
                (f, true)
            }
        };
        (flight.await, leader)
    }

    /// The fill itself: one origin request, conditional when a stale object has validators.
    async fn fetch_and_store(
        self: &Arc<Self>,
        fr: FillRequest,
        stale: Option<Arc<CachedObject>>,
        pass_tx: Option<oneshot::Sender<Response<ProxyBody>>>,
    ) -> FillOutcome {
        if let (true, Some(old)) = (fr.background, &stale) {
            // This runs as the flight's leader, and a finished refresh stores before it leaves the
            // in-flight map: a replaced object here means the refresh already happened.
            if let Lookup::Hit(cur) = self.store.lookup(&fr.key, &fr.vary_source).await {
                if !Arc::ptr_eq(&cur, old) {
                    return FillOutcome::Stored(cur, true);
                }
            }
        }
        let mut headers = fr.headers.clone();
        if let Some(s) = &stale {
            if let Some(e) = &s.origin_etag {
                headers.insert(header::IF_NONE_MATCH, e.clone());
            }
            if let Some(lm) = &s.last_modified {
                headers.insert(header::IF_MODIFIED_SINCE, lm.clone());
            }
        }
        let uri = match self.origin.uri(&fr.path_and_query) {
            Ok(u) => u,
            Err(e) => return FillOutcome::Failed(e),
        };
        let mut req = Request::new(origin::empty_body());
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        let request_time = SystemTime::now();
        let result = self.send_origin(req).await;
        let response_time = SystemTime::now();
        let stale_for_error = |s: &Option<Arc<CachedObject>>| {
            s.as_ref()
                .filter(|o| {
                    !o.freshness.must_revalidate && (-o.ttl()).max(0) as u64 <= o.freshness.sie
                })
                .cloned()
        };
        let resp = match result {
            Err(e) => {
                return match stale_for_error(&stale) {
                    Some(o) => FillOutcome::Stale(o, e.status().as_u16()),
                    None => FillOutcome::Failed(e),
                }
            }
            Ok(r) => r,
        };
        if resp.status().is_server_error() {
            if let Some(o) = stale_for_error(&stale) {
                return FillOutcome::Stale(o, resp.status().as_u16());
            }
        }
        let facts = RequestFacts {
            authorized: fr.authorized,
            no_store: false,
            request_time,
            response_time,
        };
        let cache_policy = CachePolicy {
            heuristic_max: self.cfg.cache.heuristic_max,
            store_set_cookie: self.cfg.cache.store_set_cookie,
        };

        if resp.status() == StatusCode::NOT_MODIFIED {
            if let Some(old) = stale {
                self.metrics
                    .revalidated
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return match self
                    .refresh(&fr, &old, resp.headers(), facts, cache_policy)
                    .await
                {
                    Ok(obj) => FillOutcome::Stored(obj, true),
                    Err((reason, headers)) => {
                        // The body is still valid but may no longer be kept: hand it to the leader once.
                        self.store.remove(&fr.key).await;
                        let mut resp = Response::from_parts(
                            parts_with(old.status, headers),
                            ProxyBody::full(old.body.clone()),
                        );
                        if let Some(e) = old.etag_value(Coding::Identity) {
                            resp.headers_mut().insert(header::ETAG, e.clone());
                        }
                        self.hand_to_leader(pass_tx, resp, &fr);
                        FillOutcome::Pass(reason)
                    }
                };
            }
        }

        let (parts, body) = resp.into_parts();
        let mut resp_headers = parts.headers;
        origin::strip_hop_by_hop(&mut resp_headers);
        let decision = policy::evaluate(
            parts.status,
            &resp_headers,
            facts,
            fr.route.policy,
            cache_policy,
        );
        let encoding = resp_headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.as_bytes().to_ascii_lowercase());
        let decision = decision.and_then(|f| match encoding.as_deref() {
            None | Some(b"identity") | Some(b"gzip") | Some(b"x-gzip") => Ok(f),
            Some(_) => Err(NoStore::Encoding),
        });
        let freshness = match decision {
            Ok(f) => f,
            Err(reason) => {
                self.remember_pass(&fr, parts.status, reason);
                let body = IdleTimeout::new(body, self.origin.body_timeout());
                let resp = Response::from_parts(
                    parts_with(parts.status, resp_headers),
                    ProxyBody::stream(body),
                );
                self.hand_to_leader(pass_tx, resp, &fr);
                return FillOutcome::Pass(reason);
            }
        };

        // Buffer the body up to max_object_size; beyond it, hand what was read plus the rest to the leader.
        let limit = self.cfg.cache.max_object_size.as_u64() as usize;
        let mut body = Box::pin(IdleTimeout::new(body, self.origin.body_timeout()));
        let declared = resp_headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<usize>().ok());
        let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(limit));
        let mut chunks: Vec<Bytes> = Vec::new();
        // A declared length over the limit streams through at once instead of after `limit` bytes.
        let mut too_big = declared.is_some_and(|n| n > limit);
        while !too_big {
            let Some(frame) = body.frame().await else {
                break;
            };
            let Ok(frame) = frame else {
                return FillOutcome::Failed(ProxyError::Origin);
            };
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    chunks.push(buf.split().freeze());
                    chunks.push(data);
                    too_big = true;
                    break;
                }
                buf.extend_from_slice(&data);
            }
        }
        if too_big {
            self.remember_pass(&fr, parts.status, NoStore::TooLarge);
            let head = futures_util::stream::iter(
                chunks.into_iter().map(|c| Ok(http_body::Frame::data(c))),
            );
            let rest = BodyStream::new(body);
            let stream = StreamBody::new(futures_util::StreamExt::chain(head, rest));
            let resp = Response::from_parts(
                parts_with(parts.status, resp_headers),
                ProxyBody::stream(stream),
            );
            self.hand_to_leader(pass_tx, resp, &fr);
            return FillOutcome::Pass(NoStore::TooLarge);
        }
        // Exactly sized: a grown buffer's slack would stay resident for the object's lifetime,
        // unseen by the byte budget.
        let mut body = if buf.capacity() == buf.len() {
            buf.freeze()
        } else {
            Bytes::copy_from_slice(&buf)
        };
        let origin_etag = resp_headers.get(header::ETAG).cloned();
        let mut etag = origin_etag
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if encoding.as_deref().is_some_and(|e| e != b"identity") {
            match compress::gunzip_limited(&body, limit) {
                Ok(mut plain) => {
                    plain.shrink_to_fit();
                    body = Bytes::from(plain)
                }
                Err(compress::DecodeError::TooLarge) => {
                    self.remember_pass(&fr, parts.status, NoStore::TooLarge);
                    let resp = Response::from_parts(
                        parts_with(parts.status, resp_headers),
                        ProxyBody::full(body),
                    );
                    self.hand_to_leader(pass_tx, resp, &fr);
                    return FillOutcome::Pass(NoStore::TooLarge);
                }
                Err(compress::DecodeError::Corrupt) => {
                    return FillOutcome::Failed(ProxyError::Origin)
                }
            }
            // The origin's tag named its gzip bytes; what is stored now is a different representation.
            etag = etag.map(|e| {
                if e.starts_with("W/") {
                    e
                } else {
                    format!("W/{e}")
                }
            });
            resp_headers.remove(header::CONTENT_ENCODING);
        }
        let etag = etag.unwrap_or_else(|| conditional::generate_etag(&body));
        let obj = self
            .build_object(
                parts.status,
                resp_headers,
                body,
                etag,
                origin_etag,
                freshness,
                &fr,
            )
            .await;
        self.store.insert(fr.key.clone(), obj.clone()).await;
        FillOutcome::Stored(obj, false)
    }

    /// Give the fill's unstorable response to the leader (its waiters go to the origin themselves).
    fn hand_to_leader(
        &self,
        tx: Option<oneshot::Sender<Response<ProxyBody>>>,
        resp: Response<ProxyBody>,
        fr: &FillRequest,
    ) {
        if let Some(tx) = tx {
            let _ = tx.send(self.compress_passed(resp, &fr.vary_source));
        }
    }

    /// Remember the key as pass, but only for what the response says about itself: a credentialed
    /// request or a failing origin must not switch caching off for everyone else.
    fn remember_pass(&self, fr: &FillRequest, status: StatusCode, reason: NoStore) {
        if !fr.authorized && !status.is_server_error() {
            self.pass_keys.insert(fr.key.clone(), reason);
        }
    }

    /// Build a stored object, computing its encoded variants once.
    #[allow(clippy::too_many_arguments)]
    async fn build_object(
        &self,
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        etag: String,
        origin_etag: Option<HeaderValue>,
        freshness: Freshness,
        fr: &FillRequest,
    ) -> Arc<CachedObject> {
        let headers = detach(&headers);
        let origin_etag = origin_etag.map(|v| copy_value(&v));
        let no_transform = Directives::from_headers(&headers, &header::CACHE_CONTROL).no_transform;
        let mut tags = tags::parse_surrogate_keys(&headers);
        for t in &fr.tags {
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let vary = policy::vary_fields(&headers);
        let vary_values = policy::vary_values(&vary, &fr.vary_source);
        let mut obj = CachedObject::new(
            status,
            headers,
            body,
            etag,
            origin_etag,
            freshness,
            vary,
            vary_values,
            tags,
            no_transform,
        );
        let c = &self.cfg.compression;
        if c.enabled
            && !no_transform
            && obj.body.len() as u64 >= c.min_size.as_u64()
            && compress::is_compressible(obj.headers.get(header::CONTENT_TYPE), &c.types)
        {
            let body = obj.body.clone();
            let (gz_level, br_level) = (c.gzip_level, c.brotli_level);
            // Compression is CPU work: keep it off the reactor threads, and bound how many
            // encoders run at once so a burst of misses cannot multiply their memory.
            let _slot = self.compress_slots.acquire().await;
            let encoded = tokio::task::spawn_blocking(move || {
                (
                    compress::gzip(&body, gz_level),
                    compress::brotli(&body, br_level),
                )
            })
            .await;
            if let Ok((gz, br)) = encoded {
                self.metrics
                    .compressions
                    .fetch_add(2, std::sync::atomic::Ordering::Relaxed);
                if gz.len() < obj.body.len() {
                    obj.gzip = Some(Bytes::from(gz));
                }
                if br.len() < obj.body.len() {
                    obj.br = Some(Bytes::from(br));
                }
            }
        }
        Arc::new(obj)
    }

    /// RFC 9111 §4.3.4: a 304 updates the stored headers and freshness; the body stays.
    async fn refresh(
        &self,
        fr: &FillRequest,
        old: &CachedObject,
        new_headers: &HeaderMap,
        facts: RequestFacts,
        cache_policy: CachePolicy,
    ) -> Result<Arc<CachedObject>, (NoStore, HeaderMap)> {
        // RFC 9111 §4.3.4: the 304's end-to-end fields replace the stored ones of the same name.
        let mut update = new_headers.clone();
        origin::strip_hop_by_hop(&mut update);
        update.remove(header::CONTENT_LENGTH);
        update.remove(header::CONTENT_ENCODING);
        let mut headers = old.headers.clone();
        for name in update.keys() {
            headers.remove(name);
        }
        for (name, value) in update.iter() {
            headers.append(name, value.clone());
        }
        let headers = detach(&headers);
        let freshness =
            match policy::evaluate(old.status, &headers, facts, fr.route.policy, cache_policy) {
                Ok(f) => f,
                Err(reason) => return Err((reason, headers)),
            };
        let origin_etag = headers
            .get(header::ETAG)
            .cloned()
            .or_else(|| old.origin_etag.clone());
        let mut obj = CachedObject::new(
            old.status,
            headers,
            old.body.clone(),
            old.etag.clone(),
            origin_etag,
            freshness,
            old.vary.clone(),
            old.vary_values.clone(),
            old.tags.clone(),
            old.no_transform,
        );
        obj.gzip = old.gzip.clone();
        obj.br = old.br.clone();
        let obj = Arc::new(obj);
        self.store.insert(fr.key.clone(), obj.clone()).await;
        Ok(obj)
    }

    async fn send_origin(
        &self,
        req: Request<OriginBody>,
    ) -> Result<Response<Incoming>, ProxyError> {
        self.metrics
            .origin_requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t0 = Instant::now();
        let r = self.origin.send(req).await;
        self.metrics.origin_latency(t0.elapsed());
        if r.is_err() {
            self.metrics
                .origin_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    /// Answer from a stored object with the given Cache-Status, counted as `result`.
    fn serve(
        &self,
        obj: &CachedObject,
        req: &HeaderMap,
        ctx: &Ctx,
        cache_status: String,
        result: CacheResult,
    ) -> (Response<ProxyBody>, CacheResult) {
        let head = ctx.method == Method::HEAD;
        (self.respond_cached(obj, req, head, cache_status), result)
    }

    /// Build the client's answer from a stored object: 304, 206/416, or the negotiated coding.
    pub fn respond_cached(
        &self,
        obj: &CachedObject,
        req: &HeaderMap,
        head: bool,
        cache_status: String,
    ) -> Response<ProxyBody> {
        respond::from_object(obj, req, head, cache_status, &self.metrics)
    }

    /// Pass a request through unchanged but for normalization (streamed both ways).
    async fn forward(
        &self,
        req: Request<Incoming>,
        ctx: &mut Ctx,
        fwd: &str,
        detail: &str,
    ) -> Response<ProxyBody> {
        let t0 = Instant::now();
        let resp = self.forward_raw(req, ctx).await;
        ctx.origin_ms = Some(t0.elapsed().as_millis());
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
        set_cache_status(&mut resp, &format!("apicache; fwd={fwd}; detail={detail}"));
        resp
    }

    async fn forward_raw(
        &self,
        req: Request<Incoming>,
        ctx: &Ctx,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let (parts, body) = req.into_parts();
        let limit = self.cfg.server.max_body_size.as_u64();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(ProxyError::PayloadTooLarge);
        }
        // A chunked body over the limit is cut off mid-stream: the origin sees an aborted request.
        let body = http_body_util::Limited::new(body, limit as usize);
        let headers = origin::forward_headers(
            &parts.headers,
            ctx.version,
            ctx.peer,
            ctx.credential.as_ref(),
            &self.cfg.server.via,
        );
        let mut oreq = Request::new(body.boxed());
        *oreq.method_mut() = parts.method;
        *oreq.uri_mut() = self.origin.uri(&ctx.norm.path_and_query)?;
        *oreq.headers_mut() = headers;
        let resp = self.send_origin(oreq).await?;
        let (rparts, rbody) = resp.into_parts();
        let mut h = rparts.headers;
        origin::strip_hop_by_hop(&mut h);
        let body = IdleTimeout::new(rbody, self.origin.body_timeout());
        let resp = Response::from_parts(parts_with(rparts.status, h), ProxyBody::stream(body));
        Ok(self.compress_passed(resp, &parts.headers))
    }

    /// Compress an uncached response on the fly when the client wants it and it is worth it.
    fn compress_passed(&self, resp: Response<ProxyBody>, req: &HeaderMap) -> Response<ProxyBody> {
        respond::compress_passed(resp, req, &self.cfg.compression)
    }

    /// Unsafe methods pass through; a non-error answer invalidates the URI and same-origin Location/Content-Location.
    async fn unsafe_method(&self, req: Request<Incoming>, ctx: &mut Ctx) -> Response<ProxyBody> {
        let host = req.headers().get(header::HOST).cloned();
        let safe = matches!(ctx.method, Method::OPTIONS | Method::TRACE);
        let resp = self.forward(req, ctx, "method", "unsafe").await;
        if safe || resp.status().is_client_error() || resp.status().is_server_error() {
            return resp;
        }
        let mut urls = vec![ctx.norm.path_and_query.clone()];
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            if let Some(target) = resp
                .headers()
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| same_origin_path(v, host.as_ref()))
            {
                if let Ok(n) = self.normalizer.normalize(&target) {
                    urls.push(n.path_and_query);
                }
            }
        }
        for url in urls {
            self.store.purge_tag(&tags::url_tag(&url), false).await;
        }
        resp
    }
}

/// The request's Cache-Control, with `Pragma: no-cache` honoured when there is no Cache-Control (RFC 9111 §5.4).
fn request_directives(h: &HeaderMap) -> Directives {
    let mut d = Directives::from_headers(h, &header::CACHE_CONTROL);
    if !h.contains_key(header::CACHE_CONTROL)
        && h.get_all(header::PRAGMA).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("no-cache"))
        })
    {
        d.no_cache = true;
    }
    d
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

/// The request headers as the origin sees them, for Vary matching: hop-by-hop fields removed and a
/// moved API key present as `Authorization`. Borrowed when nothing changes (the common case).
fn vary_headers<'a>(h: &'a HeaderMap, norm: &Normalized) -> std::borrow::Cow<'a, HeaderMap> {
    let moved = norm.credential.is_some() && !h.contains_key(header::AUTHORIZATION);
    if !moved && !h.contains_key(header::CONNECTION) && !h.contains_key(header::TE) {
        return std::borrow::Cow::Borrowed(h);
    }
    let mut eff = h.clone();
    origin::strip_hop_by_hop(&mut eff);
    if let (true, Some(c)) = (moved, &norm.credential) {
        eff.insert(header::AUTHORIZATION, c.clone());
    }
    std::borrow::Cow::Owned(eff)
}

/// A copy of a header value in its own allocation.
fn copy_value(v: &HeaderValue) -> HeaderValue {
    let mut c = HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| v.clone());
    c.set_sensitive(v.is_sensitive());
    c
}

/// Copy every value: hyper's parsed values are slices of the connection's read buffer, which often
/// holds the whole body too, so a stored header would otherwise pin that buffer for the object's life.
fn detach(h: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(h.len());
    for (k, v) in h {
        out.append(k.clone(), copy_value(v));
    }
    out
}

fn parts_with(status: StatusCode, headers: HeaderMap) -> http::response::Parts {
    let (mut parts, ()) = Response::new(()).into_parts();
    parts.status = status;
    parts.headers = headers;
    parts
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

    #[test]
    fn pragma_no_cache() {
        let mut h = HeaderMap::new();
        h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        assert!(request_directives(&h).no_cache);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=5"));
        assert!(!request_directives(&h).no_cache);
    }
}
