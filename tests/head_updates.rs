//! RFC 9111 §4.3.5: a HEAD forwarded while a GET response is stored updates that response's
//! headers and freshness when a validator it carries matches, and otherwise makes it stale.

mod support;
use support::*;

use std::time::Duration;

const BODY: &str = "{\"head\":true}";
/// Another body of the same length as [`BODY`].
const BODY2: &str = "{\"head\":2222}";

/// An origin whose answers carry `etag`, `x-rev` and `cache-control`, whatever the method.
fn reply(etag: &'static str, rev: &'static str, cc: &'static str) -> Reply {
    Reply::ok(BODY)
        .header("etag", etag)
        .header("x-rev", rev)
        .header("cache-control", cc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_on_a_stale_response_is_forwarded_as_head_and_refreshes_it() {
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=1")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(|_| reply("\"h1\"", "2", "max-age=60"));

    let (s, h, b) = head_with(&p, "/h", &[]).await;
    assert_eq!((s, b.len()), (200, 0));
    let seen = origin.last();
    assert_eq!(seen.method, "HEAD", "a HEAD was turned into a GET");
    assert!(!seen.headers.contains_key("if-none-match"));
    assert_eq!(hdr(&h, "x-rev"), "2");
    assert_eq!(hdr(&h, "etag"), "\"h1\"");
    assert!(hdr(&h, "cache-status").contains("stored"), "{h:?}");

    // The stored GET response got the HEAD's headers and freshness; its body stayed.
    let h = assert_get(&p, "/h", "HIT", BODY).await;
    assert_eq!(hdr(&h, "x-rev"), "2");
    assert_eq!(hdr(&h, "cache-control"), "max-age=60");
    assert_eq!(origin.count(), 2);
    assert_eq!(p.proxy.snapshot().await.revalidations, 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_with_other_validators_makes_the_stored_response_stale_not_gone() {
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=1")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(|_| reply("\"h2\"", "2", "max-age=60"));

    let (s, h, _) = head_with(&p, "/h", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(origin.last().method, "HEAD");
    assert_eq!((hdr(&h, "etag"), hdr(&h, "x-rev")), ("\"h2\"", "2"));
    // Still stored, stale: the next GET revalidates it with its own validator.
    let h = assert_get(&p, "/h", "MISS", BODY).await;
    assert_eq!(hdr(&h, "etag"), "\"h2\"");
    let seen = origin.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("if-none-match"), "\"h1\"");
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_without_validators_never_keeps_a_response_fresh() {
    // No ETag, no Last-Modified: only Content-Length, which a new body of the same size shares.
    let origin = Origin::start(|_| Reply::ok(BODY).header("cache-control", "max-age=1")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(|_| {
        Reply::ok(BODY2)
            .header("cache-control", "max-age=60")
            .header("content-length", "13")
    });

    let (s, _, _) = head_with(&p, "/h", &[]).await;
    assert_eq!((s, origin.last().method.as_str()), (200, "HEAD"));
    // The HEAD did not vouch for the stored body: the GET goes to the origin.
    assert_get(&p, "/h", "MISS", BODY2).await;
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_with_another_content_type_makes_the_stored_response_stale() {
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=1")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(|_| {
        let mut r = reply("\"h1\"", "2", "max-age=60");
        r.headers[0].1 = "text/html".into();
        r
    });

    head_with(&p, "/h", &[]).await;
    assert_eq!(origin.last().method, "HEAD");
    let (_, h, _) = get(&p, "/h").await;
    assert_eq!(origin.last().method, "GET", "{h:?}");
    assert_eq!(hdr(&h, "content-type"), "text/html");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_the_origin_does_not_implement_falls_back_to_a_conditional_get() {
    // Like a FastAPI/Starlette route without HEAD: 405 to HEAD, 304 to a matching GET.
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=1")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(|s| match s.method.as_str() {
        "HEAD" => Reply::ok("").status(405).header("allow", "GET"),
        _ if s.header("if-none-match") == "\"h1\"" => Reply::not_modified(&[
            ("etag", "\"h1\""),
            ("cache-control", "max-age=60"),
            ("x-rev", "2"),
        ]),
        _ => reply("\"h1\"", "2", "max-age=60"),
    });

    let (s, h, b) = head_with(&p, "/h", &[]).await;
    assert_eq!((s, b.len()), (200, 0), "{h:?}");
    assert_eq!(hdr(&h, "x-rev"), "2");
    let seen = origin.seen();
    let methods: Vec<&str> = seen.iter().map(|s| s.method.as_str()).collect();
    assert_eq!(methods, ["GET", "HEAD", "GET"]);
    assert_eq!(seen[2].header("if-none-match"), "\"h1\"");
    let h = assert_get(&p, "/h", "HIT", BODY).await;
    assert_eq!(hdr(&h, "x-rev"), "2");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_no_store_head_never_changes_what_is_stored() {
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=60")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;

    // Passed through as HEAD: whatever it answers, the cache neither stores nor acts on it.
    origin.set_handler(|_| reply("\"h2\"", "2", "max-age=60"));
    let (s, _, _) = head_with(&p, "/h", &[("cache-control", "no-cache, no-store")]).await;
    assert_eq!(s, 200);
    assert_eq!(origin.last().method, "HEAD");
    origin.set_handler(|_| reply("\"h1\"", "3", "max-age=600"));
    head_with(&p, "/h", &[("cache-control", "no-cache, no-store")]).await;

    let h = assert_get(&p, "/h", "HIT", BODY).await;
    assert_eq!(hdr(&h, "x-rev"), "1");
    assert_eq!(hdr(&h, "cache-control"), "max-age=60");
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_asks_with_the_fills_accept_encoding() {
    // An origin whose ETag depends on the Accept-Encoding it is sent (per-coding ETags).
    let by_coding = |s: &Seen, rev: &'static str| {
        let etag = match s.header("accept-encoding").as_str() {
            "gzip" => "\"g\"",
            "identity" => "\"i\"",
            _ => "\"other\"",
        };
        reply(etag, rev, "max-age=1")
    };
    let origin = Origin::start(move |s| by_coding(s, "1")).await;
    let p = proxy(&origin).await;
    let (_, h, _) = get_with(&p, "/h", &[("accept-encoding", "gzip")]).await;
    assert_eq!(hdr(&h, "etag"), "\"g\"");
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(move |s| by_coding(s, "2"));

    let (s, h, _) = head_with(&p, "/h", &[("accept-encoding", "gzip, deflate, br")]).await;
    assert_eq!(s, 200);
    let seen = origin.last();
    assert_eq!(seen.method, "HEAD");
    assert_eq!(seen.header("accept-encoding"), "gzip");
    assert_eq!(hdr(&h, "x-rev"), "2");
    // It matched, so it refreshed: the GET is a hit.
    let (_, h, _) = get_with(&p, "/h", &[("accept-encoding", "gzip")]).await;
    assert_eq!((hdr(&h, "x-cache"), hdr(&h, "x-rev")), ("HIT", "2"));
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_head_answer_never_overwrites_a_newer_fill() {
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=1")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    // The HEAD is answered late, about the old representation; a GET meanwhile gets the new one.
    origin.set_handler(|s| match s.method.as_str() {
        "HEAD" => reply("\"h1\"", "1", "max-age=60").delay(Duration::from_millis(500)),
        _ => Reply::ok(BODY2)
            .header("etag", "\"h2\"")
            .header("x-rev", "2")
            .header("cache-control", "max-age=60"),
    });

    let head = tokio::spawn({
        let addr = p.addr;
        async move { request(addr, "HEAD", "/h", &[], b"").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_get(&p, "/h", "MISS", BODY2).await;
    let (s, h, _) = head.await.unwrap();
    assert_eq!(s, 200);
    assert!(!hdr(&h, "cache-status").contains("stored"), "{h:?}");

    let h = assert_get(&p, "/h", "HIT", BODY2).await;
    assert_eq!(hdr(&h, "x-rev"), "2");
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

/// A HEAD that refreshes a response purged (`soft` or hard) while the HEAD was in flight.
async fn head_refresh_purged_meanwhile(soft: bool) {
    let tagged = |rev, cc| reply("\"h1\"", rev, cc).header("surrogate-key", "hk");
    let origin = Origin::start(move |_| tagged("1", "max-age=1")).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(move |_| tagged("2", "max-age=60").delay(Duration::from_millis(500)));

    let head = tokio::spawn({
        let addr = p.addr;
        async move { request(addr, "HEAD", "/h", &[], b"").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    let how: &[(&str, &str)] = if soft { &[("soft-purge", "1")] } else { &[] };
    assert_eq!(purge(&p, "POST", "/purge/hk", how).await, 1);
    let (s, h, _) = head.await.unwrap();
    assert_eq!((s, hdr(&h, "x-rev")), (200, "2"));
    assert!(!hdr(&h, "cache-status").contains("stored"), "{h:?}");
    assert_eq!(p.proxy.snapshot().await.revalidations, 0);
    // The purge wins: the next GET asks the origin.
    origin.set_handler(move |_| tagged("3", "max-age=60"));
    let h = assert_get(&p, "/h", "MISS", BODY).await;
    assert_eq!(hdr(&h, "x-rev"), "3");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_refresh_hard_purged_meanwhile_is_neither_stored_nor_counted() {
    head_refresh_purged_meanwhile(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_refresh_soft_purged_meanwhile_is_not_counted_as_fresh() {
    head_refresh_purged_meanwhile(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_never_serves_a_response_purged_while_the_origin_failed() {
    let failing = |cc| reply("\"h1\"", "1", cc).header("surrogate-key", "hk");
    let origin = Origin::start(move |_| failing("max-age=1, stale-if-error=600")).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    // Slower than the 1 s origin timeout: the HEAD fails, and stale-if-error would allow it.
    origin.set_handler(move |_| failing("max-age=60").delay(Duration::from_millis(1500)));

    let head = tokio::spawn({
        let addr = p.addr;
        async move { request(addr, "HEAD", "/h", &[], b"").await }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(purge(&p, "POST", "/purge/hk", &[]).await, 1);
    let (s, h, _) = head.await.unwrap();
    assert!(s >= 500, "a hard-purged response served: {s} {h:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mismatching_head_reaches_the_encoders_copy() {
    // Big enough to compress: the encoder swaps in an encoded copy of the stored response.
    let big = format!("{{\"items\":\"{}\"}}", "abc".repeat(1000));
    let body = big.clone();
    let origin = Origin::start(move |_| {
        Reply::ok(body.clone())
            .header("etag", "\"h1\"")
            .header("cache-control", "max-age=60")
    })
    .await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", &big).await;
    p.settle().await;
    let (_, h, _) = get_with(&p, "/h", &[("accept-encoding", "gzip")]).await;
    assert_eq!(hdr(&h, "content-encoding"), "gzip", "not encoded yet");

    // A HEAD the request sends through (no-cache) finds another representation.
    origin.set_handler(|_| reply("\"h2\"", "2", "max-age=60"));
    head_with(&p, "/h", &[("cache-control", "no-cache")]).await;
    assert_eq!(origin.last().method, "HEAD");
    let h = assert_get(&p, "/h", "MISS", BODY).await;
    assert_eq!(origin.last().header("if-none-match"), "\"h1\"", "{h:?}");
    p.shutdown().await;
}
