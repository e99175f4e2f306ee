//! Freshness: miss then hit, Age, expiry, route TTLs, Surrogate-Control/CDN-Cache-Control.

mod support;
use support::*;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_with_cache_status_and_age() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    let (s, h, b1) = get(&p, "/a").await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(hdr(&h, "cache-status"), "apicache; fwd=uri-miss; stored");
    let (_, h, b2) = get(&p, "/a").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert!(hdr(&h, "cache-status").starts_with("apicache; hit; ttl="));
    assert_eq!(hdr(&h, "age"), "0");
    assert_eq!(
        hdr(&h, "cache-control"),
        CACHEABLE,
        "clients see the origin's Cache-Control"
    );
    assert!(hdr(&h, "via").contains("apicache"));
    assert_eq!(b1, b2);
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn age_grows_and_origin_age_counts() {
    let origin = Origin::start(|_| {
        Reply::ok("{}")
            .header("cache-control", "max-age=100")
            .header("age", "10")
    })
    .await;
    let p = proxy(&origin).await;
    let (_, h, _) = get(&p, "/age").await;
    assert!(hdr(&h, "age").parse::<u64>().unwrap() >= 10);
    p.clock().advance(Duration::from_millis(2100));
    let (_, h, _) = get(&p, "/age").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert!(hdr(&h, "age").parse::<u64>().unwrap() >= 12);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_object_is_refetched() {
    let origin = Origin::start(|_| Reply::ok("{}").header("cache-control", "max-age=1")).await;
    let p = proxy(&origin).await;
    get(&p, "/e").await;
    // Past max-age by the proxy's clock. moka still holds the object (its expiry runs on real
    // time), so it is refetched as `fwd=stale` rather than `uri-miss`; either way a MISS.
    p.clock().advance(Duration::from_millis(2100));
    let (_, h, _) = get(&p, "/e").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_ttl_and_cache_false() {
    let origin =
        Origin::start(|_| Reply::ok("{}").header("cache-control", "no-cache, max-age=0")).await;
    let p = ProxyBuilder::new(&origin)
        .route(r#"path = "/accounts/{id}", ttl = "5m""#)
        .route(r#"path = "/bookings/{*rest}", cache = false"#)
        .start()
        .await;
    get(&p, "/accounts/A1").await;
    let (_, h, _) = get(&p, "/accounts/A1").await;
    assert_eq!(
        hdr(&h, "x-cache"),
        "HIT",
        "route ttl overrides the origin's lifetime for this proxy"
    );
    assert_eq!(
        hdr(&h, "cache-control"),
        "no-cache, max-age=0",
        "clients still see the origin's Cache-Control"
    );
    get(&p, "/bookings/1").await;
    let (_, h, _) = get(&p, "/bookings/1").await;
    assert_eq!(hdr(&h, "x-cache"), "PASS");
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_and_cdn_cache_control_outrank_cache_control() {
    let origin = Origin::start(|s| {
        let r = Reply::ok("{}").header("cache-control", "no-cache, max-age=0");
        if s.path_and_query == "/sc" {
            r.header("surrogate-control", "max-age=60")
        } else {
            r.header("cdn-cache-control", "max-age=60")
        }
    })
    .await;
    let p = proxy(&origin).await;
    for path in ["/sc", "/cdn"] {
        get(&p, path).await;
        let (_, h, _) = get(&p, path).await;
        assert_eq!(hdr(&h, "x-cache"), "HIT", "{path}");
        assert!(!h.contains_key("surrogate-control"));
    }
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}
