use super::*;

#[test]
fn per_route_series_and_cumulative_histogram() {
    let m = Metrics::default();
    let r = m.routes(["/a/{id}".to_string()]);
    r.origin(Some(0), Duration::from_micros(500), false);
    r.origin(Some(0), Duration::from_millis(30), true);
    r.origin(None, Duration::from_secs(60), false);
    r.request(Some(0), CacheResult::Hit);
    r.request(None, CacheResult::Miss);
    for _ in 0..9 {
        r.request(Some(0), CacheResult::Collapsed);
    }
    r.request(Some(0), CacheResult::Revalidated);
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

#[test]
fn a_reload_keeps_the_series_of_kept_routes_and_the_counts_of_removed_ones() {
    let m = Metrics::default();
    let old = m.routes(["/a".to_string(), "/b".to_string()]);
    old.request(Some(0), CacheResult::Hit);
    old.request(Some(1), CacheResult::Miss);
    // `/a` moved to index 1, `/b` removed, `/c` added.
    let new = m.routes(["/c".to_string(), "/a".to_string()]);
    new.request(Some(1), CacheResult::Hit);
    new.request(Some(0), CacheResult::Miss);
    m.reload(true);
    m.reload(false);
    let s = m.snapshot(Gauges::default());
    let count = |label: &str| {
        let r = s.routes.iter().find(|r| r.route == label).unwrap();
        (r.counts.hits, r.counts.misses)
    };
    assert_eq!(
        [count("/a"), count("/b"), count("/c")],
        [(2, 0), (0, 1), (0, 1)]
    );
    assert_eq!(s.routes.last().unwrap().route, "none");
    assert_eq!((s.total.hits, s.total.misses), (2, 2));
    let text = m.prometheus(&s);
    assert!(
        text.contains("apicache_config_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("apicache_config_reloads_total{result=\"error\"} 1"),
        "{text}"
    );
}
