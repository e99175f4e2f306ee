//! End-to-end behaviour of the core proxy (issue: config, normalization, RFC 9111 cache, collapsing).

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;

use bytesize::ByteSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
async fn default_page_is_one_object() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    get(&p, "/x").await;
    let (_, h, _) = get(&p, "/x?page=1").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 1);
    let (_, h, _) = get(&p, "/x?page=2").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(origin.last().path_and_query, "/x?page=2");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_order_and_encoding_do_not_matter() {
    let origin = cacheable_origin().await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.normalize.list_params = vec!["fields".into()])
        .start()
        .await;
    get(&p, "/q?b=2&a=1&fields=y,x&utm_source=mail").await;
    assert_eq!(
        origin.last().path_and_query,
        "/q?a=1&b=2&fields=x,y",
        "origin receives the normalized request"
    );
    for variant in [
        "/q?a=1&b=2&fields=x,y",
        "/q?fields=x,y&b=2&a=1",
        "/%71?a=%31&b=2&fields=y,x",
        "/./q?a=1&b=2&fields=x,y",
    ] {
        let (_, h, _) = get(&p, variant).await;
        assert_eq!(hdr(&h, "x-cache"), "HIT", "{variant}");
    }
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_moves_to_authorization_on_shared_route() {
    // Cache-Control without public/s-maxage/must-revalidate: RFC 9111 §3.5 forbids sharing credentialed answers.
    let origin = Origin::start(|_| Reply::ok("{}").header("cache-control", "max-age=60")).await;
    let p = proxy(&origin).await;
    let (_, h1, _) = get(&p, "/data?apiKey=alpha&x=1").await;
    let seen = origin.last();
    assert_eq!(
        seen.path_and_query, "/data?x=1",
        "the key never reaches the origin URL"
    );
    assert_eq!(seen.header("authorization"), "api-token alpha");
    let (_, h2, _) = get(&p, "/data?x=1&apiKey=beta").await;
    assert_eq!(origin.last().header("authorization"), "api-token beta");
    assert_ne!(hdr(&h1, "x-cache"), "HIT");
    assert_ne!(hdr(&h2, "x-cache"), "HIT");
    assert_eq!(
        origin.count(),
        2,
        "credentialed, not shareable: both go to the origin"
    );
    assert_eq!(store_view(&p).await.entries, 0);
    p.shutdown().await;

    // With `public` the response may be shared: one entry for both keys, no key in the cache key.
    let origin =
        Origin::start(|_| Reply::ok("{}").header("cache-control", "public, max-age=60")).await;
    let p = proxy(&origin).await;
    get(&p, "/data?apiKey=alpha").await;
    let (_, h, _) = get(&p, "/data?apiKey=beta").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_credential_route_keeps_credentials_apart() {
    let origin = Origin::start(|s| {
        let who = s.header("authorization");
        Reply::ok(format!("{{\"who\":\"{}\"}}", who.len()))
            .header("cache-control", "private, max-age=60")
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .route(r#"path = "/me", auth = "per-credential""#)
        .start()
        .await;
    let (_, h, _) = get(&p, "/me?apiKey=alpha").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    let (_, h, _) = get(&p, "/me?apiKey=beta-longer").await;
    assert_eq!(
        hdr(&h, "x-cache"),
        "MISS",
        "another credential never sees the first one's entry"
    );
    let (_, h, b) = get(&p, "/me?apiKey=alpha").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(&b[..], br#"{"who":"15"}"#);
    let (_, h, _) = get_with(&p, "/me", &[("authorization", "api-token beta-longer")]).await;
    assert_eq!(
        hdr(&h, "x-cache"),
        "HIT",
        "header and query forms of one credential share an entry"
    );
    let (_, h, _) = get(&p, "/me").await;
    assert_ne!(
        hdr(&h, "x-cache"),
        "HIT",
        "no credential never gets a credentialed entry"
    );
    assert_eq!(origin.count(), 3);
    assert_eq!(store_view(&p).await.entries, 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_cold_requests_make_one_origin_request() {
    let origin = Origin::start(|_| {
        Reply::ok(json_body(4096, "c"))
            .header("cache-control", CACHEABLE)
            .delay(Duration::from_millis(200))
    })
    .await;
    let p = proxy(&origin).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(request(p.addr, "GET", "/cold", &[], b"")));
    }
    for t in tasks {
        let (s, _, body) = t.await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(body.len(), json_body(4096, "c").len());
    }
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_key_does_not_queue_behind_one_request() {
    let origin = Origin::start(|_| {
        Reply::ok("{}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(300))
    })
    .await;
    let p = proxy(&origin).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(tokio::spawn(request(p.addr, "GET", "/private", &[], b"")));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    // The leader's answer was not storable: each waiter went to the origin itself.
    assert_eq!(origin.count(), 10);
    let (_, h, _) = get(&p, "/private").await;
    assert_eq!(hdr(&h, "x-cache"), "PASS", "remembered as pass");
    assert!(hdr(&h, "cache-status").contains("detail=no-store"));
    p.shutdown().await;
}

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
    tokio::time::sleep(Duration::from_millis(2100)).await;
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
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, h, _) = get(&p, "/e").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

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
async fn bad_requests_get_4xx() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    let (s, _, _) = get(&p, "/a%zz").await;
    assert_eq!(s, 400);
    // Oversize headers: hyper answers 431 on its own.
    let big = "x".repeat(70 * 1024);
    let (s, _, _) = get_with(&p, "/a", &[("x-big", &big)]).await;
    assert_eq!(s, 431);
    // A malformed request line over a raw socket.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(origin.count(), 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_keys_on_request_headers_and_star_is_never_served() {
    let origin = Origin::start(|s| {
        let lang = s.header("accept-language");
        let r = Reply::ok(format!("{{\"lang\":\"{lang}\"}}")).header("cache-control", CACHEABLE);
        if s.path_and_query == "/star" {
            r.header("vary", "*")
        } else {
            r.header("vary", "Accept-Language")
        }
    })
    .await;
    let p = proxy(&origin).await;
    let (_, _, en) = get_with(&p, "/v", &[("accept-language", "en")]).await;
    let (_, h, fr) = get_with(&p, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_ne!(en, fr);
    let (_, h, en2) = get_with(&p, "/v", &[("accept-language", "en")]).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(en, en2);
    let (_, h, _) = get_with(&p, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    get(&p, "/star").await;
    let (_, h, _) = get(&p, "/star").await;
    assert_ne!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 4);
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
async fn h2c_clients_are_served() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    for expected in ["MISS", "HIT"] {
        let r = c.get(url(&p, "/h2")).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(hdr(r.headers(), "x-cache"), expected);
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_requests() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"slow\":true}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(500))
    })
    .await;
    let p = proxy(&origin).await;
    let addr = p.addr;
    let inflight = tokio::spawn(request(addr, "GET", "/slow", &[], b""));
    // Wait until the request reached the origin, then shut down.
    for _ in 0..100 {
        if origin.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
    assert_eq!(
        text(&inflight.await.unwrap().2),
        "{\"slow\":true}",
        "the in-flight request completed"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[test]
fn check_config_cli() {
    let exe = env!("CARGO_BIN_EXE_apicache");
    let dir = std::env::temp_dir().join(format!("apicache-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[origin]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_size"));
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[origin]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"forever\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("origin.timeout"),
        "{err}"
    );
    let out = std::process::Command::new(exe)
        .args(["--config"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_closed() {
    let origin = cacheable_origin().await;
    // The default is 30s; a short timeout instead.
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.header_read_timeout = Duration::from_secs(1))
        .start()
        .await;
    // A client that sends half a request head and stalls is cut off.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed in time");
    let got = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).to_string();
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    // An idle keep-alive connection after a complete request is closed too.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut total = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            total.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection was not closed");
    assert!(String::from_utf8_lossy(&total).starts_with("HTTP/1.1 200"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_request_body_is_413_and_not_forwarded() {
    let origin = Origin::start(|_| Reply::ok("{}").status(201)).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.max_body_size = ByteSize::kib(1))
        .start()
        .await;
    let (s, _, _) = post(&p, "/upload", &[b'x'; 2048]).await;
    assert_eq!(s, 413);
    assert_eq!(origin.count(), 0);
    let (s, _, _) = post(&p, "/upload", &[b'x'; 512]).await;
    assert_eq!(s, 201);
    assert_eq!(origin.last().body.len(), 512);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vary_sees_the_headers_the_origin_saw() {
    // Vary: Authorization with a moved API key: each key is its own variant, anonymous is another.
    let origin = Origin::start(|s| {
        let who = s.header("authorization");
        let lang = s.header("accept-language");
        Reply::ok(format!("{{\"who\":\"{who}\",\"lang\":\"{lang}\"}}"))
            .header("cache-control", "public, max-age=60")
            .header("vary", "Authorization, Accept-Language")
    })
    .await;
    let p = proxy(&origin).await;
    let (_, _, a) = get(&p, "/v?apiKey=alpha").await;
    assert_eq!(&a[..], br#"{"who":"api-token alpha","lang":""}"#);
    let (_, h, b) = get(&p, "/v?apiKey=beta").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(
        &b[..],
        br#"{"who":"api-token beta","lang":""}"#,
        "never another key's variant"
    );
    let (_, h, anon) = get(&p, "/v").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(&anon[..], br#"{"who":"","lang":""}"#);
    let (_, h, _) = get(&p, "/v?apiKey=alpha").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");

    // A field the client marks hop-by-hop never reaches the origin, so it cannot name a variant.
    let (_, _, poisoned) = get_with(
        &p,
        "/w",
        &[("accept-language", "fr"), ("connection", "accept-language")],
    )
    .await;
    assert_eq!(&poisoned[..], br#"{"who":"","lang":""}"#);
    let (_, h, fr) = get_with(&p, "/w", &[("accept-language", "fr")]).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(&fr[..], br#"{"who":"","lang":"fr"}"#);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_never_gets_another_variants_stale_copy() {
    let origin = Origin::start(|s| {
        let lang = s.header("accept-language");
        Reply::ok(format!("{{\"lang\":\"{lang}\"}}"))
            .header("cache-control", "public, max-age=1, stale-if-error=300")
            .header("vary", "Accept-Language")
    })
    .await;
    let p = proxy(&origin).await;
    get_with(&p, "/s", &[("accept-language", "en")]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set_handler(|_| {
        Reply::ok("down")
            .status(503)
            .delay(Duration::from_millis(400))
    });
    let en = tokio::spawn(request(
        p.addr,
        "GET",
        "/s",
        &[("accept-language", "en")],
        b"",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = get_with(&p, "/s", &[("accept-language", "fr")]).await;
    assert_ne!(
        text(&body),
        "{\"lang\":\"en\"}",
        "fr must not get en's stale copy"
    );
    assert!(status >= 500, "{status}");
    let (_, h, en_body) = en.await.unwrap();
    assert_eq!(
        (hdr(&h, "x-cache"), text(&en_body).as_str()),
        ("STALE", "{\"lang\":\"en\"}")
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_drains_and_exits_zero_on_sigterm() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"drained\":true}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(700))
    })
    .await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = std::env::temp_dir().join(format!("apicache-sig-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"{}\"\n",
            origin.url()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_apicache"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    // Kill the child whatever happens below.
    struct Guard(u32);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(self.0.to_string())
                .status();
        }
    }
    let guard = Guard(child.id());
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "apicache did not start");
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let inflight = tokio::spawn(request(addr, "GET", "/slow", &[], b""));
    for _ in 0..100 {
        if origin.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let killed = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    assert_eq!(text(&inflight.await.unwrap().2), "{\"drained\":true}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    // Reaped: its pid may be reused, so the guard must not kill it any more.
    std::mem::forget(guard);
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
