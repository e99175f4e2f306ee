//! Upstream revalidation: stale objects and client no-cache refreshed with conditional requests to the origin.

mod support;
use support::*;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_object_revalidated_upstream_with_if_none_match() {
    let body = json_body(4096, "reval-etag");
    let b = body.clone();
    let origin = Origin::start(move |seen| {
        if seen.header("if-none-match") == "\"rev-1\"" {
            Reply::not_modified(&[("etag", "\"rev-1\""), ("cache-control", "max-age=60")])
        } else {
            Reply::ok(b.clone())
                .header("etag", "\"rev-1\"")
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let (s, h, got) = get(&p, "/r").await;
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert!(origin.last().headers.get("if-none-match").is_none());
    let bytes_before = origin.bytes_sent();
    assert_eq!(bytes_before, body.len());

    // The fill's variants land in the background (the real 2 s wait used to cover that); then
    // the object goes stale.
    p.settle().await;
    p.clock().advance(Duration::from_millis(2100));

    let (s, h, got) = get(&p, "/r").await;
    assert_eq!(origin.count(), 2, "stale object was not revalidated");
    let seen = origin.last();
    assert_eq!(
        seen.header("if-none-match"),
        "\"rev-1\"",
        "revalidation did not carry If-None-Match: {:?}",
        seen.headers
    );
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..], "revalidated response lost its body");
    assert_eq!(hdr(&h, "content-type"), "application/json");
    assert_eq!(hdr(&h, "etag"), "\"rev-1\"");
    assert_eq!(hdr(&h, "content-length"), body.len().to_string());
    assert_eq!(hdr(&h, "x-cache"), "REVALIDATED");
    assert!(hdr(&h, "cache-status").contains("fwd-status=304"), "{h:?}");
    assert_eq!(
        origin.bytes_sent(),
        bytes_before,
        "origin sent a body on revalidation"
    );

    // Fresh again (the 304's max-age=60 replaced the stored one): no origin contact.
    let (s, h, got) = get(&p, "/r").await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "cache-control"), "max-age=60");
    // The encoded variants survived the refresh.
    let (s, h, got) = get_with(&p, "/r", &[("accept-encoding", "gzip")]).await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "content-encoding"), "gzip");
    assert_eq!(gunzip(&got), body);
    assert_eq!(origin.count(), 2);

    let st = stats(&p).await;
    assert_eq!(stat(&st, "revalidations"), 1);
    assert_eq!(stat(&st, "revalidated"), 1, "one REVALIDATED answer: {st}");
    assert_eq!(stat(&st, "origin_requests"), 2);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_object_revalidated_upstream_with_if_modified_since() {
    let body = json_body(4096, "reval-lm");
    let b = body.clone();
    let origin = Origin::start(move |seen| {
        if seen.header("if-modified-since") == LAST_MODIFIED {
            Reply::not_modified(&[("cache-control", "max-age=60")])
        } else {
            Reply::ok(b.clone())
                .header("last-modified", LAST_MODIFIED)
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let p = proxy(&origin).await;

    let (s, h, _) = get(&p, "/lm").await;
    assert_eq!(s, 200);
    let etag = hdr(&h, "etag").to_string();
    assert!(!etag.is_empty(), "no ETag: {h:?}");
    let bytes_before = origin.bytes_sent();

    p.clock().advance(Duration::from_millis(2100));

    let (s, h, got) = get(&p, "/lm").await;
    assert_eq!(origin.count(), 2, "stale object was not revalidated");
    let seen = origin.last();
    assert_eq!(
        seen.header("if-modified-since"),
        LAST_MODIFIED,
        "{:?}",
        seen.headers
    );
    // The generated tag is the proxy's, not the origin's: never sent upstream.
    assert!(
        seen.headers.get("if-none-match").is_none(),
        "{:?}",
        seen.headers
    );
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "etag"), etag.as_str());
    assert_eq!(hdr(&h, "last-modified"), LAST_MODIFIED);
    assert_eq!(origin.bytes_sent(), bytes_before);

    let (s, h, got) = get(&p, "/lm").await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(&got[..], &body[..]);
    assert_eq!(origin.count(), 2);

    p.shutdown().await;
}

/// An origin with ETag `"e1"` that answers a matching If-None-Match with a 304 carrying `extra`.
async fn validating_origin(body: &[u8], extra: &'static [(&'static str, &'static str)]) -> Origin {
    let body = body.to_vec();
    Origin::start(move |seen| {
        if seen.header("if-none-match") == "\"e1\"" {
            Reply::not_modified(&[("etag", "\"e1\""), ("cache-control", "max-age=60")])
                .headers(extra)
        } else {
            Reply::ok(body.clone())
                .header("etag", "\"e1\"")
                .header("cache-control", "max-age=60")
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_no_cache_revalidates_upstream() {
    let body = json_body(4096, "client-no-cache");
    let origin = validating_origin(&body, &[]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let (s, _, _) = get(&p, "/nc").await;
    assert_eq!(s, 200);
    // The fill's variants are computed in the background: let them land before the refreshes.
    p.settle().await;
    let bytes_before = origin.bytes_sent();

    // A fresh object, but the client insists: one conditional origin request, answered 304.
    let (s, h, got) = get_with(&p, "/nc", &[("cache-control", "no-cache")]).await;
    assert_eq!(origin.count(), 2);
    assert_eq!(origin.last().header("if-none-match"), "\"e1\"");
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "etag"), "\"e1\"");
    assert_eq!(origin.bytes_sent(), bytes_before);

    // Same, with the client's own validator: the client gets a 304.
    let (s, h, b) = get_with(
        &p,
        "/nc",
        &[("cache-control", "no-cache"), ("if-none-match", "\"e1\"")],
    )
    .await;
    assert_eq!(origin.count(), 3);
    assert_not_modified(s, &h, &b, "\"e1\"");
    assert_eq!(origin.bytes_sent(), bytes_before);

    // Any re-encoding the refreshes started would be counted once it has run.
    p.settle().await;
    let st = stats(&p).await;
    assert_eq!(stat(&st, "revalidations"), 2);
    assert_eq!(stat(&st, "revalidated"), 2, "two REVALIDATED answers: {st}");
    assert_eq!(
        stat(&st, "compressions"),
        3,
        "variants recomputed on refresh: {st}"
    );

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_with_changed_body_replaces_object_and_variants() {
    let old = json_body(4096, "old");
    let new = json_body(4096, "new");
    let origin = validating_origin(&old, &[]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let _ = get(&p, "/chg").await;
    p.settle().await;
    let (_, h, got) = get_with(&p, "/chg", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gunzip(&got), old);
    assert_eq!(hdr(&h, "etag"), "\"e1-gz\"");

    let n = new.clone();
    origin.set_handler(move |_| {
        Reply::ok(n.clone())
            .header("etag", "\"e2\"")
            .header("cache-control", "max-age=60")
    });
    let (s, h, got) = get_with(&p, "/chg", &[("cache-control", "no-cache")]).await;
    assert_eq!(s, 200);
    assert_eq!(&got[..], &new[..]);
    assert_eq!(hdr(&h, "etag"), "\"e2\"");
    assert_eq!(origin.last().header("if-none-match"), "\"e1\"");

    // The old validator no longer matches; the encoded variants are the new body's.
    let (s, _, got) = get_with(&p, "/chg", &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(s, 200);
    assert_eq!(&got[..], &new[..]);
    p.settle().await;
    for (ae, decode) in [("gzip", gunzip as fn(&[u8]) -> Vec<u8>), ("br", unbrotli)] {
        let (s, h, got) = get_with(&p, "/chg", &[("accept-encoding", ae)]).await;
        assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
        assert_eq!(decode(&got), new, "{ae} variant is stale");
    }
    assert_eq!(origin.count(), 2);
    let st = stats(&p).await;
    assert_eq!(stat(&st, "compressions"), 6, "{st}");
    assert_eq!(stat(&st, "revalidations"), 0, "{st}");
    assert_eq!(stat(&st, "revalidated"), 0, "{st}");

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_304_that_makes_object_unstorable_still_serves_body() {
    let body = json_body(4096, "reval-set-cookie");
    let origin = validating_origin(&body, &[("set-cookie", "session=abc")]).await;
    let p = proxy(&origin).await;

    let (s, _, _) = get(&p, "/sc").await;
    assert_eq!(s, 200);
    let (s, h, got) = get_with(&p, "/sc", &[("cache-control", "no-cache")]).await;
    assert_eq!(origin.count(), 2);
    assert_eq!(s, 200, "{h:?}");
    assert_eq!(&got[..], &body[..]);

    p.shutdown().await;
}
