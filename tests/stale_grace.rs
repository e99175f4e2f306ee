//! `cache.stale_grace`: an expired object without validators or stale windows is kept a short
//! while (default 10 s) so that a request's `max-stale` can still be answered from it, unless the
//! response forbids serving it stale (must-revalidate, proxy-revalidate, s-maxage, no-cache).

mod support;
use support::*;

use std::time::Duration;

/// Fresh for one second, no validators, no stale windows: `cc` is appended to `max-age=1`.
async fn one_second_origin() -> Origin {
    Origin::start(|s| {
        let extra = match s.path_and_query.as_str() {
            "/must" => ", must-revalidate",
            "/proxy" => ", proxy-revalidate",
            "/shared" => ", s-maxage=1",
            _ => "",
        };
        Reply::ok("{\"v\":1}").header("cache-control", &format!("max-age=1{extra}"))
    })
    .await
}

const MAX_STALE: &[(&str, &str)] = &[("cache-control", "max-stale")];

// 5 s after expiry a max-stale request is answered from the kept object without the origin;
// must-revalidate, proxy-revalidate and s-maxage forbid it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stale_is_answered_within_the_grace_unless_forbidden() {
    let origin = one_second_origin().await;
    let p = proxy(&origin).await;
    for path in ["/plain", "/must", "/proxy", "/shared"] {
        assert_get(&p, path, "MISS", "{\"v\":1}").await;
    }
    p.clock().advance(Duration::from_secs(6));

    let (status, h, body) = get_with(&p, "/plain", MAX_STALE).await;
    assert_eq!((status, text(&body).as_str()), (200, "{\"v\":1}"));
    assert_eq!(hdr(&h, "x-cache"), "STALE");
    let cs = hdr(&h, "cache-status");
    assert!(
        cs.starts_with("apicache; hit; ttl=-") && cs.ends_with("detail=max-stale"),
        "{cs}"
    );
    assert_eq!(hdr(&h, "age"), "6");
    assert_eq!(origin.count_for("/plain"), 1);

    for path in ["/must", "/proxy", "/shared"] {
        let (_, h, _) = get_with(&p, path, MAX_STALE).await;
        assert_eq!(hdr(&h, "x-cache"), "MISS", "{path}");
        assert_eq!(origin.count_for(path), 2, "{path}: stale use is forbidden");
    }
    p.shutdown().await;
}

// The object is really kept (moka's real-time expiry, not only the proxy's clock): after more
// than its 1 s lifetime of real time it still answers max-stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_keeps_the_object_in_the_store() {
    let origin = one_second_origin().await;
    let p = proxy(&origin).await;
    assert_get(&p, "/g", "MISS", "{\"v\":1}").await;
    // Real time on purpose: the store's memory is reclaimed on real time, which the injected
    // clock does not move.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    p.clock().advance(Duration::from_secs(3));
    let (_, h, _) = get_with(&p, "/g", MAX_STALE).await;
    assert_eq!(hdr(&h, "x-cache"), "STALE", "{h:?}");
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

// Past the grace the object is gone, by the proxy's clock as well: even `max-stale` with no
// limit finds nothing, and the request is a plain miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_grace_the_object_is_gone() {
    let origin = one_second_origin().await;
    let p = proxy(&origin).await;
    assert_get(&p, "/gone", "MISS", "{\"v\":1}").await;
    p.clock().advance(Duration::from_millis(11_100));
    let (_, h, _) = get_with(&p, "/gone", MAX_STALE).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(
        hdr(&h, "cache-status"),
        "apicache; fwd=uri-miss; stored",
        "the kept object has gone"
    );
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

// `stale_grace = "0s"`: such an object goes at expiry, and max-stale cannot use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_grace_keeps_nothing_past_expiry() {
    let origin = one_second_origin().await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.stale_grace = Duration::ZERO)
        .start()
        .await;
    assert_eq!(p.proxy.settings().cfg.cache.stale_grace, Duration::ZERO);
    assert_get(&p, "/z", "MISS", "{\"v\":1}").await;
    p.clock().advance(Duration::from_millis(1_500));
    let (_, h, _) = get_with(&p, "/z", MAX_STALE).await;
    assert_eq!(hdr(&h, "cache-status"), "apicache; fwd=uri-miss; stored");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

// stale-if-error from the origin still works on a kept object, within its own window only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_keeps_its_own_window_within_the_grace() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"v\":1}").header("cache-control", "max-age=1, stale-if-error=3")
    })
    .await;
    let p = proxy(&origin).await;
    assert_get(&p, "/e", "MISS", "{\"v\":1}").await;
    origin.set_handler(|_| Reply::ok("boom").status(503));
    p.clock().advance(Duration::from_millis(3_500));
    assert_get(&p, "/e", "STALE", "{\"v\":1}").await;
    p.clock().advance(Duration::from_millis(1_000));
    let (status, _, _) = get(&p, "/e").await;
    assert_eq!(status, 503, "the grace does not lengthen stale-if-error");
    // The object is still kept for max-stale.
    let (_, h, _) = get_with(&p, "/e", MAX_STALE).await;
    assert_eq!(hdr(&h, "x-cache"), "STALE");
    p.shutdown().await;
}
