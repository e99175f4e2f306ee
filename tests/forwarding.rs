//! Forwarding: HEAD from the GET entry, unsafe methods invalidate, POST answers for later GETs,
//! origin errors, hop-by-hop headers.

mod support;
use support::*;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_served_from_the_get_entry() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    let (_, h, _) = head_with(&p, "/h", &[]).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(
        origin.last().method,
        "GET",
        "a HEAD miss fills the cache with a GET"
    );
    let (_, h, body) = get(&p, "/h").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    let (_, h, head_body) = head_with(&p, "/h", &[]).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(hdr(&h, "content-length"), body.len().to_string());
    assert!(head_body.is_empty());
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

/// What the POST origin answers for each target: (Content-Location, Cache-Control).
fn post_reply(path: &str) -> (&'static str, &'static str) {
    match path {
        "/items/9" => ("/items/9", "max-age=60"),
        "/abs" => ("http://{host}/abs", "max-age=60"),
        "/other-host" => ("http://elsewhere.example/other-host", "max-age=60"),
        "/elsewhere" => ("/items/10", "max-age=60"),
        "/no-freshness" => ("/no-freshness", "public"),
        "/no-store" => ("/no-store", "max-age=60, no-store"),
        _ => ("", "max-age=60"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_answer_naming_its_own_target_answers_later_gets() {
    let origin = Origin::start(|s| {
        if s.method != "POST" {
            return Reply::ok(format!("{{\"got\":\"{}\"}}", s.path_and_query))
                .header("cache-control", CACHEABLE);
        }
        let (location, cc) = post_reply(&s.path_and_query);
        // The host the client asked for, as apicache tells the origin.
        let location = location.replace("{host}", &s.header("x-forwarded-host"));
        let mut r = Reply::ok(format!("{{\"posted\":\"{}\"}}", s.path_and_query))
            .header("cache-control", cc);
        if !location.is_empty() {
            r = r.header("content-location", &location);
        }
        r
    })
    .await;
    let p = proxy(&origin).await;
    let paths = [
        "/items/9",
        "/abs",
        "/other-host",
        "/elsewhere",
        "/no-freshness",
        "/no-store",
        "/plain",
    ];
    for path in paths {
        get(&p, path).await;
        let (s, h, b) = post(&p, path, b"{}").await;
        assert_eq!(
            (s, text(&b)),
            (200, format!("{{\"posted\":\"{path}\"}}")),
            "{path}"
        );
        let stored = hdr(&h, "cache-status").contains("stored");
        assert_eq!(
            stored,
            ["/items/9", "/abs"].contains(&path),
            "{path}: {}",
            hdr(&h, "cache-status")
        );
    }
    // Stored under the GET key: the next GET is a hit on the POST's answer.
    for path in ["/items/9", "/abs"] {
        let (_, h, b) = get(&p, path).await;
        assert_eq!(hdr(&h, "x-cache"), "HIT", "{path}");
        assert_eq!(text(&b), format!("{{\"posted\":\"{path}\"}}"));
    }
    // Otherwise the POST only invalidated: the GET goes to the origin.
    for path in [
        "/other-host",
        "/elsewhere",
        "/no-freshness",
        "/no-store",
        "/plain",
    ] {
        let (_, h, b) = get(&p, path).await;
        assert_eq!(hdr(&h, "x-cache"), "MISS", "{path}");
        assert_eq!(text(&b), format!("{{\"got\":\"{path}\"}}"));
    }
    assert_eq!(origin.count_for("/items/9"), 2, "one GET, one POST");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_invalidates_uri_and_location() {
    let origin = Origin::start(|s| {
        if s.method == "POST" {
            Reply::ok("{}")
                .status(201)
                .header("location", "/items/7")
                .header("cache-control", "no-store")
        } else {
            Reply::ok(format!("{{\"p\":\"{}\"}}", s.path_and_query))
                .header("cache-control", CACHEABLE)
        }
    })
    .await;
    let p = proxy(&origin).await;
    get(&p, "/items").await;
    get(&p, "/items/7").await;
    get(&p, "/other").await;
    let (s, h, _) = post(&p, "/items", b"{\"a\":1}").await;
    assert_eq!(s, 201);
    assert_eq!(hdr(&h, "x-cache"), "PASS");
    assert_eq!(origin.last().body, "{\"a\":1}", "request body forwarded");
    let (_, h, _) = get(&p, "/items").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    let (_, h, _) = get(&p, "/items/7").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    let (_, h, _) = get(&p, "/other").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    // A failed write invalidates nothing.
    origin.set_handler(|s| {
        if s.method == "DELETE" {
            Reply::ok("{}").status(500)
        } else {
            Reply::ok("{}").header("cache-control", CACHEABLE)
        }
    });
    send(&p, "DELETE", "/other", &[]).await;
    let (_, h, _) = get(&p, "/other").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_origin_is_502_and_slow_origin_is_504() {
    // Bind then drop a listener to get a port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = ProxyBuilder::for_url(&format!("http://{dead}"))
        .start()
        .await;
    let (s, h, body) = get(&p, "/x").await;
    assert_eq!(s, 502);
    assert!(body.len() < 100 && !body.is_empty());
    assert_eq!(hdr(&h, "content-type"), "text/plain; charset=utf-8");
    p.shutdown().await;

    let origin = Origin::start(|_| Reply::ok("{}").delay(Duration::from_secs(3))).await;
    let p = proxy(&origin).await;
    let (s, _, body) = get(&p, "/slow").await;
    assert_eq!(s, 504);
    assert!(!body.is_empty());
    let (s, _, _) = get_with(&p, "/slow-pass", &[("cache-control", "no-store")]).await;
    assert_eq!(s, 504);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let origin = Origin::start(|_| {
        Reply::ok("{}")
            .header("cache-control", "no-store")
            .header("connection", "x-hop")
            .header("x-hop", "secret")
            .header("keep-alive", "timeout=5")
            .header("surrogate-control", "max-age=5")
    })
    .await;
    let p = proxy(&origin).await;
    let (_, h, _) = get_with(
        &p,
        "/hh",
        &[
            ("connection", "x-client-hop"),
            ("x-client-hop", "1"),
            ("x-end", "2"),
        ],
    )
    .await;
    let seen = origin.last();
    assert!(!seen.headers.contains_key("x-client-hop"));
    assert_eq!(seen.header("x-end"), "2");
    assert!(seen.header("x-forwarded-for").contains("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), "http");
    assert!(seen.headers.contains_key("x-forwarded-host"));
    assert!(seen.header("via").contains("apicache"));
    assert!(!h.contains_key("x-hop"));
    assert!(!h.contains_key("keep-alive"));
    assert!(!h.contains_key("surrogate-control"));
    p.shutdown().await;
}
