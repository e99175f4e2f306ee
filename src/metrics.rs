//! Counters and a latency histogram, rendered as Prometheus text or JSON. Lock-free: updated on every request.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds (seconds) of the origin latency histogram buckets.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// What the cache did for a request (the X-Cache value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Served fresh from the cache (or revalidated with a 304 from the origin).
    Hit,
    /// Fetched from the origin.
    Miss,
    /// Served stale (stale-while-revalidate, stale-if-error, max-stale).
    Stale,
    /// Not cacheable: forwarded.
    Pass,
}

impl CacheResult {
    /// The X-Cache header value.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "HIT",
            CacheResult::Miss => "MISS",
            CacheResult::Stale => "STALE",
            CacheResult::Pass => "PASS",
        }
    }
}

/// All process-wide counters.
#[derive(Default)]
pub struct Metrics {
    hits: AtomicU64,
    misses: AtomicU64,
    stale: AtomicU64,
    passes: AtomicU64,
    /// Requests sent to the origin.
    pub origin_requests: AtomicU64,
    /// Origin requests that failed (connect, timeout, bad response).
    pub origin_errors: AtomicU64,
    origin_latency: [AtomicU64; BUCKETS.len() + 1],
    origin_latency_sum_us: AtomicU64,
    /// Conditional requests sent upstream that came back 304.
    pub revalidated: AtomicU64,
    /// 304 answers given to clients from the cache.
    pub not_modified: AtomicU64,
    /// Purge calls.
    pub purges: AtomicU64,
    /// Objects removed or marked stale by purges.
    pub purged_objects: AtomicU64,
    /// Times the compressor ran for a stored variant.
    pub compressions: AtomicU64,
    /// Bytes not sent thanks to compression (identity size minus encoded size, per response).
    pub compression_saved_bytes: AtomicU64,
    /// Requests answered 4xx by the proxy itself.
    pub bad_requests: AtomicU64,
}

/// A point-in-time copy of the counters.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Snapshot {
    /// Fresh hits.
    pub hits: u64,
    /// Misses.
    pub misses: u64,
    /// Stale served.
    pub stale: u64,
    /// Passes.
    pub passes: u64,
    /// Origin requests.
    pub origin_requests: u64,
    /// Origin failures.
    pub origin_errors: u64,
    /// Upstream 304s.
    pub revalidated: u64,
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
    /// Entries stored.
    pub objects: u64,
    /// Bytes stored.
    pub bytes: u64,
    /// Distinct tags indexed (URL tags included).
    pub tags: u64,
}

impl Metrics {
    /// Count one answered request.
    pub fn record(&self, r: CacheResult) {
        match r {
            CacheResult::Hit => &self.hits,
            CacheResult::Miss => &self.misses,
            CacheResult::Stale => &self.stale,
            CacheResult::Pass => &self.passes,
        }
        .fetch_add(1, Relaxed);
    }

    /// Count one origin round trip and its time to response headers.
    pub fn origin_latency(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(BUCKETS.len());
        self.origin_latency[i].fetch_add(1, Relaxed);
        self.origin_latency_sum_us
            .fetch_add(d.as_micros() as u64, Relaxed);
    }

    /// Copy the counters, with store gauges.
    pub fn snapshot(&self, objects: u64, bytes: u64, tags: u64) -> Snapshot {
        Snapshot {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            stale: self.stale.load(Relaxed),
            passes: self.passes.load(Relaxed),
            origin_requests: self.origin_requests.load(Relaxed),
            origin_errors: self.origin_errors.load(Relaxed),
            revalidated: self.revalidated.load(Relaxed),
            not_modified: self.not_modified.load(Relaxed),
            purges: self.purges.load(Relaxed),
            purged_objects: self.purged_objects.load(Relaxed),
            compressions: self.compressions.load(Relaxed),
            compression_saved_bytes: self.compression_saved_bytes.load(Relaxed),
            bad_requests: self.bad_requests.load(Relaxed),
            objects,
            bytes,
            tags,
        }
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self, s: &Snapshot) -> String {
        let mut o = String::with_capacity(4096);
        o.push_str("# HELP apicache_requests_total Requests by cache result.\n# TYPE apicache_requests_total counter\n");
        for (label, v) in [
            ("hit", s.hits),
            ("miss", s.misses),
            ("stale", s.stale),
            ("pass", s.passes),
        ] {
            let _ = writeln!(o, "apicache_requests_total{{result=\"{label}\"}} {v}");
        }
        let counters = [
            (
                "apicache_origin_requests_total",
                "Requests sent to the origin.",
                s.origin_requests,
            ),
            (
                "apicache_origin_errors_total",
                "Origin requests that failed.",
                s.origin_errors,
            ),
            (
                "apicache_revalidations_total",
                "Upstream revalidations answered 304.",
                s.revalidated,
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
                s.stale,
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
        ];
        for (name, help, v) in counters {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        for (name, help, v) in [
            ("apicache_objects", "Entries stored.", s.objects),
            (
                "apicache_bytes",
                "Bytes stored, every variant counted.",
                s.bytes,
            ),
            ("apicache_tags", "Tags indexed.", s.tags),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        o.push_str("# HELP apicache_origin_latency_seconds Time to origin response headers.\n# TYPE apicache_origin_latency_seconds histogram\n");
        let mut cum = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cum += self.origin_latency[i].load(Relaxed);
            let _ = writeln!(
                o,
                "apicache_origin_latency_seconds_bucket{{le=\"{b}\"}} {cum}"
            );
        }
        cum += self.origin_latency[BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            o,
            "apicache_origin_latency_seconds_bucket{{le=\"+Inf\"}} {cum}"
        );
        let sum = self.origin_latency_sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(o, "apicache_origin_latency_seconds_sum {sum}\napicache_origin_latency_seconds_count {cum}");
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::default();
        m.origin_latency(Duration::from_micros(500));
        m.origin_latency(Duration::from_millis(30));
        m.origin_latency(Duration::from_secs(60));
        m.record(CacheResult::Hit);
        let text = m.prometheus(&m.snapshot(1, 2, 3));
        assert!(text.contains("apicache_origin_latency_seconds_bucket{le=\"0.001\"} 1"));
        assert!(text.contains("apicache_origin_latency_seconds_bucket{le=\"0.05\"} 2"));
        assert!(text.contains("apicache_origin_latency_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("apicache_requests_total{result=\"hit\"} 1"));
        assert!(text.contains("apicache_bad_requests_total 0"));
    }
}
