//! Use-time staleness to the millisecond: a response is stale from the instant its lifetime ends,
//! and a stale window (stale-while-revalidate, stale-if-error, max-stale) grants exactly its
//! seconds, never the fraction of a second a whole-second age would add (RFC 9111 §4.2.4).

mod support;
use support::*;

use std::time::{Duration, SystemTime};

/// The origin for the lifetime-0 rows: each path's headers, and a 304 to a matching
/// `If-None-Match`.
fn lifetime_zero(s: &Seen) -> Reply {
    let now = httpdate::fmt_http_date(SystemTime::now());
    let headers: Vec<(&str, String)> = match s.path_and_query.as_str() {
        "/max-age-0" => vec![("cache-control", "max-age=0".into())],
        "/expires-0" => vec![("expires", "0".into())],
        "/expires-is-date" => vec![("date", now.clone()), ("expires", now)],
        "/expires-past" => vec![("expires", "Thu, 01 Jan 2015 00:00:00 GMT".into())],
        _ => vec![],
    };
    let etag = format!("\"{}\"", s.path_and_query.trim_start_matches('/'));
    let reply = if s.header("if-none-match") == etag {
        Reply::not_modified(&[])
    } else {
        Reply::ok("{\"v\":1}")
    };
    headers
        .iter()
        .fold(reply.header("etag", &etag), |r, (k, v)| r.header(k, v))
}

// Every lifetime-0 response is stored stale and revalidated on the very next request, however
// soon it comes: max-age=0, Expires: 0, Expires equal to or before Date, and ETag only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifetime_zero_responses_are_revalidated_on_the_next_request() {
    let origin = Origin::start(lifetime_zero).await;
    let p = proxy(&origin).await;
    for path in [
        "/max-age-0",
        "/expires-0",
        "/expires-is-date",
        "/expires-past",
        "/etag-only",
    ] {
        assert_get(&p, path, "MISS", "{\"v\":1}").await;
        for _ in 0..3 {
            let before = origin.count_for(path);
            let h = assert_get(&p, path, "REVALIDATED", "{\"v\":1}").await;
            assert_eq!(
                origin.count_for(path),
                before + 1,
                "{path}: not revalidated"
            );
            let etag = format!("\"{}\"", path.trim_start_matches('/'));
            assert_eq!(origin.last().header("if-none-match"), etag, "{path}");
            let cs = hdr(&h, "cache-status");
            assert!(
                cs.contains("fwd=stale") && cs.contains("fwd-status=304"),
                "{path}: {cs}"
            );
        }
    }
    p.shutdown().await;
}

/// An origin whose answers never change, stale 1 s after they are stored, with `cc` added.
async fn one_second_origin(cc: &'static str) -> Origin {
    Origin::start(move |_| {
        Reply::ok("{\"v\":1}").header("cache-control", &format!("max-age=1, {cc}"))
    })
    .await
}

// stale-while-revalidate=30 covers 30 s of staleness, not 30.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_is_not_over_granted_by_a_fraction_of_a_second() {
    let origin = one_second_origin("stale-while-revalidate=30").await;
    let p = proxy(&origin).await;
    assert_get(&p, "/w", "MISS", "{\"v\":1}").await;
    // 1 s of freshness, then 30.5 s stale.
    p.clock().advance(Duration::from_millis(31_500));
    let h = assert_get(&p, "/w", "MISS", "{\"v\":1}").await;
    let cs = hdr(&h, "cache-status");
    assert!(!cs.contains("stale-while-revalidate"), "{cs}");
    assert_eq!(origin.count(), 2, "asked the origin before answering");

    // Within the window the same object is served stale, so the window itself works.
    p.clock().advance(Duration::from_millis(1_000 + 29_900));
    let h = assert_get(&p, "/w", "STALE", "{\"v\":1}").await;
    assert!(hdr(&h, "cache-status").contains("detail=stale-while-revalidate"));
    p.shutdown().await;
}

// A request's max-stale=30 accepts 30 s of staleness, not 30.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stale_is_not_over_granted_by_a_fraction_of_a_second() {
    let origin = one_second_origin("stale-if-error=600").await;
    let p = proxy(&origin).await;
    assert_get(&p, "/m", "MISS", "{\"v\":1}").await;
    p.clock().advance(Duration::from_millis(30_900));
    let h = get_with(&p, "/m", &[("cache-control", "max-stale=30")])
        .await
        .1;
    assert_eq!(hdr(&h, "x-cache"), "STALE", "{h:?}");
    assert!(hdr(&h, "cache-status").contains("detail=max-stale"));
    assert_eq!(origin.count(), 1);

    p.clock().advance(Duration::from_millis(600));
    let h = get_with(&p, "/m", &[("cache-control", "max-stale=30")])
        .await
        .1;
    assert_eq!(
        hdr(&h, "x-cache"),
        "MISS",
        "30.5 s stale is past max-stale=30"
    );
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

// A lifetime-0 object is stale at once: max-stale=0 does not make it servable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_stale_zero_serves_nothing_stale() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"v\":1}")
            .header("cache-control", "max-age=0")
            .header("etag", "\"z\"")
    })
    .await;
    let p = proxy(&origin).await;
    assert_get(&p, "/z", "MISS", "{\"v\":1}").await;
    p.clock().advance(Duration::from_millis(300));
    get_with(&p, "/z", &[("cache-control", "max-stale=0")]).await;
    assert_eq!(
        origin.count(),
        2,
        "stale by 300 ms is not within max-stale=0"
    );
    p.shutdown().await;
}

// stale-if-error=30 stands in for a failing origin for 30 s of staleness, not 30.5 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_is_not_over_granted_by_a_fraction_of_a_second() {
    let origin = one_second_origin("stale-if-error=30").await;
    let p = proxy(&origin).await;
    assert_get(&p, "/e", "MISS", "{\"v\":1}").await;
    origin.set_handler(|_| Reply::ok("boom").status(503));
    p.clock().advance(Duration::from_millis(30_900));
    let h = assert_get(&p, "/e", "STALE", "{\"v\":1}").await;
    assert!(hdr(&h, "cache-status").contains("detail=stale-if-error"));

    p.clock().advance(Duration::from_millis(600));
    let (status, h, body) = get(&p, "/e").await;
    assert_eq!((status, text(&body).as_str()), (503, "boom"), "{h:?}");
    p.shutdown().await;
}
