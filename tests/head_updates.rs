//! RFC 9111 §4.3.5: a HEAD forwarded while a GET response is stored updates that response's
//! headers and freshness when the validators match, and invalidates it when they differ.

mod support;
use support::*;

use std::time::Duration;

const BODY: &str = "{\"head\":true}";

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

    // The stored GET response got the HEAD's headers and freshness; its body stayed.
    let h = assert_get(&p, "/h", "HIT", BODY).await;
    assert_eq!(hdr(&h, "x-rev"), "2");
    assert_eq!(hdr(&h, "cache-control"), "max-age=60");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_with_other_validators_invalidates_the_stored_response() {
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=1")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    p.clock().advance(Duration::from_secs(2));
    origin.set_handler(|_| reply("\"h2\"", "2", "max-age=60"));

    let (s, h, _) = head_with(&p, "/h", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(origin.last().method, "HEAD");
    assert_eq!((hdr(&h, "etag"), hdr(&h, "x-rev")), ("\"h2\"", "2"));
    // Nothing stored any more: the next GET fetches whole, without a stale validator.
    let h = assert_get(&p, "/h", "MISS", BODY).await;
    assert_eq!(hdr(&h, "etag"), "\"h2\"");
    let seen = origin.last();
    assert_eq!(seen.method, "GET");
    assert!(
        !seen.headers.contains_key("if-none-match"),
        "{:?}",
        seen.headers
    );
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passed_head_invalidates_a_fresh_response_it_contradicts() {
    let origin = Origin::start(|_| reply("\"h1\"", "1", "max-age=60")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/h", "MISS", BODY).await;
    origin.set_handler(|_| reply("\"h2\"", "2", "max-age=60"));

    // Passed through as HEAD (request no-store): nothing of it is stored, but it tells the cache
    // that the stored response is no longer the current one.
    let (s, _, _) = head_with(&p, "/h", &[("cache-control", "no-cache, no-store")]).await;
    assert_eq!(s, 200);
    assert_eq!(origin.last().method, "HEAD");
    let h = assert_get(&p, "/h", "MISS", BODY).await;
    assert_eq!(hdr(&h, "x-rev"), "2");
    assert_eq!(origin.count(), 3);

    // A matching passed HEAD from a request no-store updates nothing.
    origin.set_handler(|_| reply("\"h2\"", "3", "max-age=60"));
    head_with(&p, "/h", &[("cache-control", "no-cache, no-store")]).await;
    let h = assert_get(&p, "/h", "HIT", BODY).await;
    assert_eq!(hdr(&h, "x-rev"), "2");
    p.shutdown().await;
}
