//! Counters and latency histograms, per route where users ask for it, rendered as Prometheus text
//! or JSON.
//!
//! Hand-written rather than a registry crate's labelled families: the per-route series are
//! preallocated arrays indexed by route, so the hit path pays one relaxed atomic add and no map
//! lookup, hashing or lock. The `route` label is bounded by the number of configured routes
//! (plus `none`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::rfc::cache_status::CacheResult;

/// Upper bounds (seconds) of the origin latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Series kept per route.
#[derive(Default)]
struct RouteSeries {
    requests: [AtomicU64; CacheResult::ALL.len()],
    origin_requests: AtomicU64,
    origin_errors: AtomicU64,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

/// The series of one config generation's routes, indexed by route id, `none` last.
///
/// A request counts into the series of the config it was answered under; a reload hands out a
/// new set that reuses the series of every route pattern kept, so counters stay monotonic.
#[derive(Clone)]
pub struct RouteMetrics(Arc<[Arc<RouteSeries>]>);

impl RouteMetrics {
    fn get(&self, route: Option<usize>) -> &RouteSeries {
        let last = self.0.len() - 1;
        &self.0[route.map_or(last, |i| i.min(last))]
    }

    /// Count one answered request on `route` (`None`: no route matched).
    pub fn request(&self, route: Option<usize>, r: CacheResult) {
        self.get(route).requests[result_slot(r)].fetch_add(1, Relaxed);
    }

    /// Count one origin round trip on `route`, its time to response headers, and whether it failed.
    pub fn origin(&self, route: Option<usize>, d: Duration, failed: bool) {
        let s = self.get(route);
        s.origin_requests.fetch_add(1, Relaxed);
        if failed {
            s.origin_errors.fetch_add(1, Relaxed);
        }
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        s.latency[i].fetch_add(1, Relaxed);
        s.latency_sum_us.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

/// Process-wide counters.
pub struct Metrics {
    /// Every route pattern configured since start, in first-seen order, with its series (a
    /// pattern a reload removed keeps its last counts: Prometheus counters never go down).
    series: Mutex<Vec<(String, Arc<RouteSeries>)>>,
    /// Requests no route matched.
    none: Arc<RouteSeries>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    revalidations: AtomicU64,
    not_modified: AtomicU64,
    purges: AtomicU64,
    purged_objects: AtomicU64,
    compression_saved_bytes: AtomicU64,
    bad_requests: AtomicU64,
    verified_hits: AtomicU64,
    verification_fetches: AtomicU64,
    credential_rejections: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            series: Mutex::default(),
            none: Arc::default(),
            reloads_ok: AtomicU64::new(0),
            reloads_failed: AtomicU64::new(0),
            revalidations: AtomicU64::new(0),
            not_modified: AtomicU64::new(0),
            purges: AtomicU64::new(0),
            purged_objects: AtomicU64::new(0),
            compression_saved_bytes: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            verified_hits: AtomicU64::new(0),
            verification_fetches: AtomicU64::new(0),
            credential_rejections: AtomicU64::new(0),
        }
    }
}

/// Request and origin counts, for one route or all.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Counts {
    /// Requests answered (every result; not the ones refused before the cache, `bad_requests`).
    pub requests: u64,
    /// Fresh hits: answered without the origin.
    pub hits: u64,
    /// Misses: this request's own origin fetch.
    pub misses: u64,
    /// Stale served.
    pub stale: u64,
    /// Passes.
    pub passes: u64,
    /// Requests that waited for another one's origin fetch.
    pub collapsed: u64,
    /// Requests answered from a stored response the origin confirmed (304, or 200 to a HEAD).
    pub revalidated: u64,
    /// `hits / requests` (0 before any request): only HIT counts as a hit.
    pub hit_ratio: f64,
    /// Origin requests.
    pub origin_requests: u64,
    /// Origin failures.
    pub origin_errors: u64,
}

/// Per-route figures in a [`Snapshot`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteSnapshot {
    /// The route pattern, or `none`.
    pub route: String,
    /// Its counts.
    #[serde(flatten)]
    pub counts: Counts,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    /// Every route together.
    #[serde(flatten)]
    pub total: Counts,
    /// Stored responses refreshed by the origin without a body (304s, 200s to a HEAD), background
    /// refreshes included.
    pub revalidations: u64,
    /// Client 304s.
    pub not_modified: u64,
    /// Purge calls.
    pub purges: u64,
    /// Purged objects.
    pub purged_objects: u64,
    /// Compressor runs.
    pub compressions: u64,
    /// Bytes saved by compression.
    pub compression_saved_bytes: u64,
    /// Requests rejected with 400 before reaching the cache.
    pub bad_requests: u64,
    /// `shared-verified` hits served to a verified credential.
    pub verified_hits: u64,
    /// Origin answers that verified or rejected a credential without a current verdict.
    pub verification_fetches: u64,
    /// Requests answered with a kept rejection of their credential.
    pub credential_rejections: u64,
    /// Credential verdicts kept.
    pub verdicts: u64,
    /// Bytes the kept verdicts take.
    pub verdict_bytes: u64,
    /// Entries stored.
    pub objects: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Distinct tags indexed (URL tags included).
    pub tags: u64,
    /// The same request and origin figures per route.
    pub routes: Vec<RouteSnapshot>,
    /// The config in effect and the reloads so far.
    pub config: ConfigState,
    /// The cluster as this node sees it, when `[cluster]` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::cluster::ClusterState>,
}

/// The config in effect and the reloads so far (`/stats`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConfigState {
    /// The file it was read from, if any.
    pub file: Option<String>,
    /// First 16 hex digits of the sha256 of its text.
    pub hash: String,
    /// When it took effect, RFC 3339 UTC.
    pub loaded_at: String,
    /// When it took effect, seconds since the Unix epoch.
    #[serde(skip)]
    pub loaded_unix: u64,
    /// Keys of the file that differ from what runs until a restart (the hash is the file's).
    pub restart_pending: Vec<&'static str>,
    /// Reloads applied.
    pub reloads: u64,
    /// Reloads rejected (the config in effect was kept).
    pub reload_errors: u64,
}

/// Gauges and counters owned by other parts (the store, the encoder), read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    /// Entries stored.
    pub objects: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Tags indexed.
    pub tags: u64,
    /// Compressor runs.
    pub compressions: u64,
    /// Credential verdicts kept.
    pub verdicts: u64,
    /// Bytes the kept verdicts take.
    pub verdict_bytes: u64,
}

fn result_slot(r: CacheResult) -> usize {
    match r {
        CacheResult::Hit => 0,
        CacheResult::Miss => 1,
        CacheResult::Stale => 2,
        CacheResult::Pass => 3,
        CacheResult::Collapsed => 4,
        CacheResult::Revalidated => 5,
    }
}

impl Counts {
    /// The count of one result.
    pub fn of(&self, r: CacheResult) -> u64 {
        match r {
            CacheResult::Hit => self.hits,
            CacheResult::Miss => self.misses,
            CacheResult::Stale => self.stale,
            CacheResult::Pass => self.passes,
            CacheResult::Collapsed => self.collapsed,
            CacheResult::Revalidated => self.revalidated,
        }
    }

    /// Fill in `requests` and `hit_ratio` from the per-result counts.
    fn with_totals(mut self) -> Self {
        self.requests = CacheResult::ALL.iter().map(|r| self.of(*r)).sum();
        self.hit_ratio = if self.requests == 0 {
            0.0
        } else {
            self.hits as f64 / self.requests as f64
        };
        self
    }
}

impl Metrics {
    /// The series for a config's routes (patterns in route order), reusing the series of
    /// every pattern seen before.
    pub fn routes<I: IntoIterator<Item = String>>(&self, patterns: I) -> RouteMetrics {
        let mut known = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let mut set: Vec<Arc<RouteSeries>> = Vec::new();
        for pattern in patterns {
            let series = match known.iter().find(|(l, _)| *l == pattern) {
                Some((_, s)) => s.clone(),
                None => {
                    let s = Arc::new(RouteSeries::default());
                    known.push((pattern, s.clone()));
                    s
                }
            };
            set.push(series);
        }
        set.push(self.none.clone());
        RouteMetrics(set.into())
    }

    /// Every series with its label, `none` last.
    fn labelled(&self) -> Vec<(String, Arc<RouteSeries>)> {
        let mut all = self
            .series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        all.push(("none".into(), self.none.clone()));
        all
    }

    /// Count a config reload attempt.
    pub fn reload(&self, ok: bool) {
        let c = if ok {
            &self.reloads_ok
        } else {
            &self.reloads_failed
        };
        c.fetch_add(1, Relaxed);
    }

    /// Count a stored response refreshed by the origin without a body.
    pub fn revalidated(&self) {
        self.revalidations.fetch_add(1, Relaxed);
    }

    /// Count a 304 served from the cache.
    pub fn not_modified(&self) {
        self.not_modified.fetch_add(1, Relaxed);
    }

    /// Count a purge call and the objects it affected.
    pub fn purge(&self, objects: u64) {
        self.purges.fetch_add(1, Relaxed);
        self.purged_objects.fetch_add(objects, Relaxed);
    }

    /// Count bytes not sent thanks to a stored encoding.
    pub fn compression_saved(&self, bytes: u64) {
        self.compression_saved_bytes.fetch_add(bytes, Relaxed);
    }

    /// Count a request rejected before reaching the cache.
    pub fn bad_request(&self) {
        self.bad_requests.fetch_add(1, Relaxed);
    }

    /// Count a hit served to a verified credential.
    pub fn verified_hit(&self) {
        self.verified_hits.fetch_add(1, Relaxed);
    }

    /// Count an origin answer that verified or rejected a credential.
    pub fn verification_fetch(&self) {
        self.verification_fetches.fetch_add(1, Relaxed);
    }

    /// Count a request answered with a kept rejection.
    pub fn credential_rejected(&self) {
        self.credential_rejections.fetch_add(1, Relaxed);
    }

    /// Copy the counters, with the gauges of the store and encoder.
    pub fn snapshot(&self, g: Gauges) -> Snapshot {
        let routes: Vec<RouteSnapshot> = self
            .labelled()
            .into_iter()
            .map(|(label, s)| RouteSnapshot {
                route: label,
                counts: Counts {
                    hits: s.requests[0].load(Relaxed),
                    misses: s.requests[1].load(Relaxed),
                    stale: s.requests[2].load(Relaxed),
                    passes: s.requests[3].load(Relaxed),
                    collapsed: s.requests[4].load(Relaxed),
                    revalidated: s.requests[5].load(Relaxed),
                    origin_requests: s.origin_requests.load(Relaxed),
                    origin_errors: s.origin_errors.load(Relaxed),
                    ..Counts::default()
                }
                .with_totals(),
            })
            .collect();
        let mut total = Counts::default();
        for r in &routes {
            let c = r.counts;
            total.hits += c.hits;
            total.misses += c.misses;
            total.stale += c.stale;
            total.passes += c.passes;
            total.collapsed += c.collapsed;
            total.revalidated += c.revalidated;
            total.origin_requests += c.origin_requests;
            total.origin_errors += c.origin_errors;
        }
        Snapshot {
            total: total.with_totals(),
            revalidations: self.revalidations.load(Relaxed),
            not_modified: self.not_modified.load(Relaxed),
            purges: self.purges.load(Relaxed),
            purged_objects: self.purged_objects.load(Relaxed),
            compressions: g.compressions,
            compression_saved_bytes: self.compression_saved_bytes.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            verified_hits: self.verified_hits.load(Relaxed),
            verification_fetches: self.verification_fetches.load(Relaxed),
            credential_rejections: self.credential_rejections.load(Relaxed),
            verdicts: g.verdicts,
            verdict_bytes: g.verdict_bytes,
            objects: g.objects,
            bytes: g.bytes,
            tags: g.tags,
            routes,
            config: ConfigState {
                reloads: self.reloads_ok.load(Relaxed),
                reload_errors: self.reloads_failed.load(Relaxed),
                ..ConfigState::default()
            },
            cluster: None,
        }
    }

    /// Prometheus text exposition format (0.0.4).
    pub fn prometheus(&self, s: &Snapshot) -> String {
        let mut o = String::with_capacity(4096);
        family(
            &mut o,
            "apicache_requests_total",
            "counter",
            "Requests by cache result and route.",
        );
        for r in &s.routes {
            let route = escape(&r.route);
            for result in CacheResult::ALL {
                let (result, v) = (result.label(), r.counts.of(result));
                let _ = writeln!(
                    o,
                    "apicache_requests_total{{result=\"{result}\",route=\"{route}\"}} {v}"
                );
            }
        }
        family(
            &mut o,
            "apicache_origin_requests_total",
            "counter",
            "Requests sent to the origin, by route.",
        );
        for r in &s.routes {
            let _ = writeln!(
                o,
                "apicache_origin_requests_total{{route=\"{}\"}} {}",
                escape(&r.route),
                r.counts.origin_requests
            );
        }
        family(
            &mut o,
            "apicache_origin_errors_total",
            "counter",
            "Origin requests that failed, by route.",
        );
        for r in &s.routes {
            let _ = writeln!(
                o,
                "apicache_origin_errors_total{{route=\"{}\"}} {}",
                escape(&r.route),
                r.counts.origin_errors
            );
        }
        let counters = [
            (
                "apicache_revalidations_total",
                "Stored responses refreshed by the origin without a body (304, 200 to a HEAD), background refreshes included.",
                s.revalidations,
            ),
            (
                "apicache_not_modified_total",
                "304 answers served from the cache.",
                s.not_modified,
            ),
            ("apicache_purges_total", "Purge calls.", s.purges),
            (
                "apicache_purged_objects_total",
                "Objects purged.",
                s.purged_objects,
            ),
            (
                "apicache_stale_served_total",
                "Stale responses served.",
                s.total.stale,
            ),
            (
                "apicache_compressions_total",
                "Compressor runs for stored variants.",
                s.compressions,
            ),
            (
                "apicache_compression_saved_bytes_total",
                "Bytes saved by compression.",
                s.compression_saved_bytes,
            ),
            (
                "apicache_bad_requests_total",
                "Requests rejected with 400 before reaching the cache.",
                s.bad_requests,
            ),
            (
                "apicache_verified_hits_total",
                "Hits served to a credential the origin accepted (shared-verified routes).",
                s.verified_hits,
            ),
            (
                "apicache_verification_fetches_total",
                "Origin answers that verified or rejected a credential (shared-verified routes).",
                s.verification_fetches,
            ),
            (
                "apicache_credential_rejections_total",
                "Requests answered with a kept rejection of their credential.",
                s.credential_rejections,
            ),
        ];
        for (name, help, v) in counters {
            family(&mut o, name, "counter", help);
            let _ = writeln!(o, "{name} {v}");
        }
        for (name, help, v) in [
            ("apicache_objects", "Entries stored.", s.objects),
            (
                "apicache_bytes",
                "Bytes stored, every variant counted.",
                s.bytes,
            ),
            ("apicache_tags", "Tags indexed.", s.tags),
            ("apicache_verdicts", "Credential verdicts kept.", s.verdicts),
            (
                "apicache_verdict_bytes",
                "Bytes the credential verdicts take.",
                s.verdict_bytes,
            ),
        ] {
            family(&mut o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v}");
        }
        family(
            &mut o,
            "apicache_config_reloads_total",
            "counter",
            "Config reloads (SIGHUP, POST /reload) by result.",
        );
        let c = &s.config;
        let _ = writeln!(
            o,
            "apicache_config_reloads_total{{result=\"ok\"}} {}",
            c.reloads
        );
        let _ = writeln!(
            o,
            "apicache_config_reloads_total{{result=\"error\"}} {}",
            c.reload_errors
        );
        family(
            &mut o,
            "apicache_config_info",
            "gauge",
            "The config in effect: the sha256 prefix of its text.",
        );
        let _ = writeln!(o, "apicache_config_info{{hash=\"{}\"}} 1", escape(&c.hash));
        family(
            &mut o,
            "apicache_config_loaded_timestamp_seconds",
            "gauge",
            "When the config in effect was loaded.",
        );
        let _ = writeln!(
            o,
            "apicache_config_loaded_timestamp_seconds {}",
            c.loaded_unix
        );
        family(
            &mut o,
            "apicache_origin_latency_seconds",
            "histogram",
            "Time to origin response headers, by route.",
        );
        for (label, series) in self.labelled() {
            let route = escape(&label);
            let mut cum = 0;
            for (i, b) in BUCKETS.iter().enumerate() {
                cum += series.latency[i].load(Relaxed);
                let _ = writeln!(
                    o,
                    "apicache_origin_latency_seconds_bucket{{route=\"{route}\",le=\"{b}\"}} {cum}"
                );
            }
            cum += series.latency[BUCKETS.len()].load(Relaxed);
            let _ = writeln!(
                o,
                "apicache_origin_latency_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {cum}"
            );
            let sum = series.latency_sum_us.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(
                o,
                "apicache_origin_latency_seconds_sum{{route=\"{route}\"}} {sum}"
            );
            let _ = writeln!(
                o,
                "apicache_origin_latency_seconds_count{{route=\"{route}\"}} {cum}"
            );
        }
        if let Some(c) = &s.cluster {
            c.prometheus(&mut o);
        }
        o
    }
}

/// The `# HELP` and `# TYPE` lines of a metric family.
pub(crate) fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value as the exposition format requires: backslash, quote and newline escaped.
pub(crate) fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests;
