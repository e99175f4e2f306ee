//! What is never stored: no-store/private responses and requests, only-if-cached, oversized bodies, credentialed passes.

mod support;
use support::*;

use std::time::Duration;

use bytesize::ByteSize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_and_private_are_never_stored() {
    for cc in ["no-store", "private, max-age=60", "no-store, max-age=60"] {
        let origin = Origin::start(move |_| Reply::ok("{}").header("cache-control", cc)).await;
        let p = ProxyBuilder::new(&origin)
            .config(|c| c.cache.hit_for_pass = Duration::from_millis(1))
            .start()
            .await;
        for _ in 0..3 {
            let (_, h, _) = get(&p, "/n").await;
            assert_ne!(hdr(&h, "x-cache"), "HIT", "{cc}");
        }
        assert_eq!(origin.count(), 3, "{cc}");
        assert_eq!(store_view(&p).await.entries, 0, "{cc}");
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_no_store_and_no_cache_are_honoured() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    get_with(&p, "/r", &[("cache-control", "no-store")]).await;
    let (_, h, _) = get(&p, "/r").await;
    assert_eq!(
        hdr(&h, "x-cache"),
        "MISS",
        "a no-store request stored nothing"
    );
    let (_, h, _) = get_with(&p, "/r", &[("cache-control", "no-cache")]).await;
    assert_ne!(hdr(&h, "x-cache"), "STALE");
    assert_eq!(origin.count(), 3, "no-cache goes to the origin");
    let (s, _, _) = get_with(&p, "/never", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(s, 504);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_unstored() {
    let big = json_body(300 * 1024, "big");
    let body = big.clone();
    let origin =
        Origin::start(move |_| Reply::ok(body.clone()).header("cache-control", CACHEABLE)).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.max_object_size = ByteSize::kib(64))
        .start()
        .await;
    let (s, _, b) = get_with(&p, "/big", &[("accept-encoding", "identity")]).await;
    assert_eq!(s, 200);
    assert_eq!(b.len(), big.len());
    assert_eq!(&b[..], &big[..]);
    let (_, h, b) = get_with(&p, "/big", &[("accept-encoding", "identity")]).await;
    assert_eq!(hdr(&h, "x-cache"), "PASS");
    assert_eq!(&b[..], &big[..]);
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credentialed_pass_does_not_switch_caching_off_for_others() {
    let origin = Origin::start(|s| {
        if s.headers.contains_key("authorization") {
            Reply::ok("{\"private\":true}").header("cache-control", "max-age=60")
        } else {
            Reply::ok("{\"public\":true}").header("cache-control", "max-age=60")
        }
    })
    .await;
    let p = proxy(&origin).await;
    let (_, h, _) = get_with(&p, "/c", &[("authorization", "Bearer junk")]).await;
    assert!(hdr(&h, "cache-status").contains("detail=authorization"));
    let (_, h, b) = get(&p, "/c").await;
    assert_eq!(
        hdr(&h, "x-cache"),
        "MISS",
        "not marked pass by the credentialed request"
    );
    assert_eq!(&b[..], b"{\"public\":true}");
    let (_, h, _) = get(&p, "/c").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    // only-if-cached never reaches the origin, whatever else the request says.
    let before = origin.count();
    let (s, _, _) = get_with(
        &p,
        "/nothing",
        &[("cache-control", "only-if-cached, no-store")],
    )
    .await;
    assert_eq!(s, 504);
    assert_eq!(origin.count(), before);
    p.shutdown().await;
}
