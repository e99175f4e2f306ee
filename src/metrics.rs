//! Counters and latency histograms, per route where users ask for it, rendered as Prometheus text
//! or JSON.
//!
//! Hand-written rather than a registry crate's labelled families: the per-route series are
//! preallocated arrays indexed by route, so the hit path pays one relaxed atomic add and no map
//! lookup, hashing or lock. The `route` label is bounded by the number of configured routes
//! (plus `none`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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

/// Process-wide counters.
pub struct Metrics {
    /// Route labels, `none` last.
    labels: Vec<String>,
    routes: Vec<RouteSeries>,
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
        Self::new(Vec::new())
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
    /// Counters for the given route labels (route patterns, in route order).
    pub fn new(route_labels: Vec<String>) -> Self {
        let mut labels = route_labels;
        labels.push("none".into());
        Self {
            routes: labels.iter().map(|_| RouteSeries::default()).collect(),
            labels,
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

    fn route(&self, route: Option<usize>) -> &RouteSeries {
        let last = self.routes.len() - 1;
        &self.routes[route.map_or(last, |i| i.min(last))]
    }

    /// Count one answered request on `route` (`None`: no route matched).
    pub fn request(&self, route: Option<usize>, r: CacheResult) {
        self.route(route).requests[result_slot(r)].fetch_add(1, Relaxed);
    }

    /// Count one origin round trip on `route`, its time to response headers, and whether it failed.
    pub fn origin(&self, route: Option<usize>, d: Duration, failed: bool) {
        let s = self.route(route);
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
            .labels
            .iter()
            .zip(&self.routes)
            .map(|(label, s)| RouteSnapshot {
                route: label.clone(),
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
        }
    }

    /// Prometheus text exposition format (0.0.4).
    pub fn prometheus(&self, s: &Snapshot) -> String {
        let mut o = String::with_capacity(4096);
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
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
            "apicache_origin_latency_seconds",
            "histogram",
            "Time to origin response headers, by route.",
        );
        for (label, series) in self.labels.iter().zip(&self.routes) {
            let route = escape(label);
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
        o
    }
}

/// A label value as the exposition format requires: backslash, quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_route_series_and_cumulative_histogram() {
        let m = Metrics::new(vec!["/a/{id}".into()]);
        m.origin(Some(0), Duration::from_micros(500), false);
        m.origin(Some(0), Duration::from_millis(30), true);
        m.origin(None, Duration::from_secs(60), false);
        m.request(Some(0), CacheResult::Hit);
        m.request(None, CacheResult::Miss);
        for _ in 0..9 {
            m.request(Some(0), CacheResult::Collapsed);
        }
        m.request(Some(0), CacheResult::Revalidated);
        m.bad_request();
        let s = m.snapshot(Gauges::default());
        assert_eq!(
            (
                s.total.hits,
                s.total.misses,
                s.total.origin_requests,
                s.total.origin_errors
            ),
            (1, 1, 3, 1)
        );
        assert_eq!((s.total.collapsed, s.total.revalidated), (9, 1));
        assert_eq!((s.total.requests, s.routes[0].counts.requests), (12, 11));
        assert_eq!(s.total.hit_ratio, 1.0 / 12.0);
        assert_eq!(s.routes[1].counts.hit_ratio, 0.0);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["collapsed"], 9);
        assert_eq!(json["routes"][0]["revalidated"], 1);
        let text = m.prometheus(&s);
        for line in [
            "apicache_requests_total{result=\"hit\",route=\"/a/{id}\"} 1",
            "apicache_requests_total{result=\"miss\",route=\"none\"} 1",
            "apicache_requests_total{result=\"collapsed\",route=\"/a/{id}\"} 9",
            "apicache_requests_total{result=\"revalidated\",route=\"/a/{id}\"} 1",
            "apicache_requests_total{result=\"revalidated\",route=\"none\"} 0",
            "apicache_origin_requests_total{route=\"/a/{id}\"} 2",
            "apicache_origin_errors_total{route=\"/a/{id}\"} 1",
            "apicache_origin_latency_seconds_bucket{route=\"/a/{id}\",le=\"0.001\"} 1",
            "apicache_origin_latency_seconds_bucket{route=\"/a/{id}\",le=\"0.05\"} 2",
            "apicache_origin_latency_seconds_bucket{route=\"none\",le=\"+Inf\"} 1",
            "apicache_origin_latency_seconds_count{route=\"/a/{id}\"} 2",
            "apicache_bad_requests_total 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}
