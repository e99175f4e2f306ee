//! RFC 9111 §4.3.4: a 304 updates only the stored response it selects. One whose strong ETag
//! differs from the stored one selects nothing: the cache asks again, unconditionally.

mod support;
use support::*;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_with_another_strong_etag_refreshes_nothing_and_the_cache_refetches() {
    let origin = Origin::fixed(
        b"{\"v\":1}",
        &[("etag", "\"v1\""), ("cache-control", "max-age=1")],
    )
    .await;
    let p = proxy(&origin).await;
    let h = assert_get(&p, "/first", "MISS", "{\"v\":1}").await;
    assert_eq!(hdr(&h, "etag"), "\"v1\"");
    origin.set_handler(|seen| {
        if seen.headers.contains_key("if-none-match") {
            Reply::not_modified(&[("etag", "\"v2\""), ("cache-control", "max-age=60")])
        } else {
            Reply::ok("{\"v\":2}")
                .header("etag", "\"v2\"")
                .header("cache-control", "max-age=60")
        }
    });
    p.clock().advance(Duration::from_secs(2));

    let (s, h, b) = get(&p, "/first").await;
    assert_eq!(s, 200);
    assert_eq!(text(&b), "{\"v\":2}", "the 304 revived the old body");
    assert_eq!(hdr(&h, "etag"), "\"v2\"", "clients saw the old ETag");
    let seen = origin.seen();
    assert_eq!(
        seen.len(),
        3,
        "one conditional request, then one unconditional"
    );
    assert_eq!(seen[1].header("if-none-match"), "\"v1\"");
    assert!(
        !seen[2].headers.contains_key("if-none-match"),
        "{:?}",
        seen[2].headers
    );

    // What is stored now is the new representation, under the ETag clients and upstream share.
    let h = assert_get(&p, "/first", "HIT", "{\"v\":2}").await;
    assert_eq!(hdr(&h, "etag"), "\"v2\"");
    assert_eq!(origin.count(), 3);
    p.clock().advance(Duration::from_secs(61));
    let (_, h, b) = get(&p, "/first").await;
    assert_eq!(origin.last().header("if-none-match"), "\"v2\"");
    assert_eq!(
        (hdr(&h, "etag"), text(&b).as_str()),
        ("\"v2\"", "{\"v\":2}")
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_with_another_last_modified_refreshes_nothing() {
    const NEWER: &str = "Thu, 22 Oct 2015 07:28:00 GMT";
    let origin = Origin::fixed(
        b"{\"v\":1}",
        &[
            ("last-modified", LAST_MODIFIED),
            ("cache-control", "max-age=1"),
        ],
    )
    .await;
    let p = proxy(&origin).await;
    assert_get(&p, "/lm", "MISS", "{\"v\":1}").await;
    origin.set_handler(|seen| {
        if seen.headers.contains_key("if-modified-since") {
            Reply::not_modified(&[("last-modified", NEWER), ("cache-control", "max-age=60")])
        } else {
            Reply::ok("{\"v\":2}")
                .header("last-modified", NEWER)
                .header("cache-control", "max-age=60")
        }
    });
    p.clock().advance(Duration::from_secs(2));
    let (s, h, b) = get(&p, "/lm").await;
    assert_eq!((s, text(&b).as_str()), (200, "{\"v\":2}"));
    assert_eq!(hdr(&h, "last-modified"), NEWER);
    assert_eq!(origin.count(), 3);
    assert!(!origin.last().headers.contains_key("if-modified-since"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_with_a_malformed_etag_is_selected_by_last_modified() {
    // An origin whose ETags are not entity-tags: stored without one, revalidated by date.
    let origin = Origin::start(|seen| {
        let headers = [
            ("etag", "abc"),
            ("last-modified", LAST_MODIFIED),
            ("cache-control", "max-age=1"),
        ];
        if seen.header("if-modified-since") == LAST_MODIFIED {
            Reply::not_modified(&headers)
        } else {
            Reply::ok(json_body(2048, "dated")).headers(&headers)
        }
    })
    .await;
    let p = proxy(&origin).await;
    get(&p, "/d").await;
    p.clock().advance(std::time::Duration::from_secs(5));
    let (s, h, b) = get(&p, "/d").await;
    assert_eq!((s, b.len() > 2000), (200, true));
    assert!(hdr(&h, "cache-status").contains("fwd-status=304"), "{h:?}");
    assert_eq!(
        origin.count(),
        2,
        "one conditional request, no unconditional refetch"
    );
    p.shutdown().await;
}
