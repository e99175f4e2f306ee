//! Range requests served from the cache, and a Range on a miss.

mod support;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_served_from_cache() {
    let body = json_body(4096, "ranges");
    let len = body.len();
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    let (_, h, _) = get(&p, "/rg").await;
    let etag = hdr(&h, "etag").to_string();
    assert!(!etag.is_empty(), "no ETag: {h:?}");
    assert_eq!(hdr(&h, "accept-ranges"), "bytes");

    let (s, h, got) = get_with(&p, "/rg", &[("range", "bytes=0-9")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(&got[..], &body[..10]);
    assert_eq!(hdr(&h, "content-length"), "10");
    assert!(!h.contains_key("content-encoding"));

    let (s, h, got) = get_with(&p, "/rg", &[("range", "bytes=-5")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes {}-{}/{len}", len - 5, len - 1).as_str()
    );
    assert_eq!(&got[..], &body[len - 5..]);

    let from_end = format!("bytes={len}-");
    let (s, h, _) = get_with(&p, "/rg", &[("range", from_end.as_str())]).await;
    assert_eq!(s, 416);
    assert_eq!(hdr(&h, "content-range"), format!("bytes */{len}").as_str());

    let (s, h, got) = get_with(
        &p,
        "/rg",
        &[("range", "bytes=0-9"), ("if-range", etag.as_str())],
    )
    .await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(&got[..], &body[..10]);

    let (s, h, got) = get_with(
        &p,
        "/rg",
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(s, 200, "If-Range with another ETag must give the full body");
    assert!(!h.contains_key("content-range"));
    assert_eq!(&got[..], &body[..]);

    // Ranges the proxy may ignore: several at once, or last < first.
    for range in ["bytes=0-1,5-6", "bytes=9-0", "items=0-9"] {
        let (s, h, got) = get_with(&p, "/rg", &[("range", range)]).await;
        assert_eq!(s, 200, "Range: {range}");
        assert!(!h.contains_key("content-range"), "Range: {range}");
        assert_eq!(&got[..], &body[..], "Range: {range}");
    }
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_on_miss_gives_206_and_stores_whole_object() {
    let body = json_body(4096, "range-miss");
    let len = body.len();
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    let (s, h, got) = get_with(&p, "/rm", &[("range", "bytes=0-9")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(&got[..], &body[..10]);
    let seen = origin.last();
    assert!(
        seen.headers.get("range").is_none(),
        "Range forwarded: {:?}",
        seen.headers
    );

    let (s, h, got) = get(&p, "/rm").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
    assert_eq!(&got[..], &body[..]);
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}
