//! End-to-end behaviour of the core proxy (issue: config, normalization, RFC 9111 cache, collapsing).

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use support::*;

const CACHEABLE: &str = "public, max-age=60";

async fn cacheable_origin() -> Origin {
    Origin::start(|s| {
        Reply::ok(format!("{{\"path\":\"{}\"}}", s.path_and_query))
            .header("cache-control", CACHEABLE)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_with_cache_status_and_age() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin.url(), "").await;
    let (s, h, b1) = get(&p, "/a").await;
    assert_eq!(s, 200);
    assert_eq!(xcache(&h), "MISS");
    assert_eq!(h["cache-status"], "apicache; fwd=uri-miss; stored");
    let (_, h, b2) = get(&p, "/a").await;
    assert_eq!(xcache(&h), "HIT");
    assert!(h["cache-status"]
        .to_str()
        .unwrap()
        .starts_with("apicache; hit; ttl="));
    assert_eq!(h["age"], "0");
    assert_eq!(
        h["cache-control"], CACHEABLE,
        "clients see the origin's Cache-Control"
    );
    assert!(h["via"].to_str().unwrap().contains("apicache"));
    assert_eq!(b1, b2);
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_page_is_one_object() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin.url(), "").await;
    get(&p, "/x").await;
    let (_, h, _) = get(&p, "/x?page=1").await;
    assert_eq!(xcache(&h), "HIT");
    assert_eq!(origin.count(), 1);
    let (_, h, _) = get(&p, "/x?page=2").await;
    assert_eq!(xcache(&h), "MISS");
    assert_eq!(origin.last().path_and_query, "/x?page=2");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_order_and_encoding_do_not_matter() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin.url(), "[normalize]\nlist_params = [\"fields\"]\n").await;
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
        assert_eq!(xcache(&h), "HIT", "{variant}");
    }
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_moves_to_authorization_on_shared_route() {
    // Cache-Control without public/s-maxage/must-revalidate: RFC 9111 §3.5 forbids sharing credentialed answers.
    let origin = Origin::start(|_| Reply::ok("{}").header("cache-control", "max-age=60")).await;
    let p = proxy(&origin.url(), "").await;
    let (_, h1, _) = get(&p, "/data?apiKey=alpha&x=1").await;
    let seen = origin.last();
    assert_eq!(
        seen.path_and_query, "/data?x=1",
        "the key never reaches the origin URL"
    );
    assert_eq!(seen.headers["authorization"], "api-token alpha");
    let (_, h2, _) = get(&p, "/data?x=1&apiKey=beta").await;
    assert_eq!(origin.last().headers["authorization"], "api-token beta");
    assert_ne!(xcache(&h1), "HIT");
    assert_ne!(xcache(&h2), "HIT");
    assert_eq!(
        origin.count(),
        2,
        "credentialed, not shareable: both go to the origin"
    );
    p.store().run_pending_tasks().await;
    assert_eq!(p.store().entry_count(), 0);
    p.shutdown().await;

    // With `public` the response may be shared: one entry for both keys, no key in the cache key.
    let origin =
        Origin::start(|_| Reply::ok("{}").header("cache-control", "public, max-age=60")).await;
    let p = proxy(&origin.url(), "").await;
    get(&p, "/data?apiKey=alpha").await;
    let (_, h, _) = get(&p, "/data?apiKey=beta").await;
    assert_eq!(xcache(&h), "HIT");
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
    let p = proxy(
        &origin.url(),
        "[[routes]]\npath = \"/me\"\nauth = \"per-credential\"\n",
    )
    .await;
    let (_, h, _) = get(&p, "/me?apiKey=alpha").await;
    assert_eq!(xcache(&h), "MISS");
    let (_, h, _) = get(&p, "/me?apiKey=beta-longer").await;
    assert_eq!(
        xcache(&h),
        "MISS",
        "another credential never sees the first one's entry"
    );
    let (_, h, b) = get(&p, "/me?apiKey=alpha").await;
    assert_eq!(xcache(&h), "HIT");
    assert_eq!(&b[..], br#"{"who":"15"}"#);
    let (_, h, _) = get_with(&p, "/me", &[("authorization", "api-token beta-longer")]).await;
    assert_eq!(
        xcache(&h),
        "HIT",
        "header and query forms of one credential share an entry"
    );
    let (_, h, _) = get(&p, "/me").await;
    assert_ne!(
        xcache(&h),
        "HIT",
        "no credential never gets a credentialed entry"
    );
    assert_eq!(origin.count(), 3);
    p.store().run_pending_tasks().await;
    assert_eq!(p.store().entry_count(), 2);
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
    let p = proxy(&origin.url(), "").await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let c = c.clone();
        let u = url(&p, "/cold");
        tasks.push(tokio::spawn(async move {
            let r = c.get(u).send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.bytes().await.unwrap().len())
        }));
    }
    for t in tasks {
        let (s, len) = t.await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(len, json_body(4096, "c").len());
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
    let p = proxy(&origin.url(), "").await;
    let c = client();
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (c, u) = (c.clone(), url(&p, "/private"));
        tasks.push(tokio::spawn(async move {
            c.get(u).send().await.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    // The leader's answer was not storable: each waiter went to the origin itself.
    assert_eq!(origin.count(), 10);
    let (_, h, _) = get(&p, "/private").await;
    assert_eq!(xcache(&h), "PASS", "remembered as pass");
    assert!(h["cache-status"]
        .to_str()
        .unwrap()
        .contains("detail=no-store"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_store_and_private_are_never_stored() {
    for cc in ["no-store", "private, max-age=60", "no-store, max-age=60"] {
        let origin = Origin::start(move |_| Reply::ok("{}").header("cache-control", cc)).await;
        let p = proxy(&origin.url(), "[cache]\nhit_for_pass = \"1ms\"\n").await;
        for _ in 0..3 {
            let (_, h, _) = get(&p, "/n").await;
            assert_ne!(xcache(&h), "HIT", "{cc}");
        }
        assert_eq!(origin.count(), 3, "{cc}");
        p.store().run_pending_tasks().await;
        assert_eq!(p.store().entry_count(), 0, "{cc}");
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_no_store_and_no_cache_are_honoured() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin.url(), "").await;
    get_with(&p, "/r", &[("cache-control", "no-store")]).await;
    let (_, h, _) = get(&p, "/r").await;
    assert_eq!(xcache(&h), "MISS", "a no-store request stored nothing");
    let (_, h, _) = get_with(&p, "/r", &[("cache-control", "no-cache")]).await;
    assert_ne!(xcache(&h), "STALE");
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
    let p = proxy(&origin.url(), "").await;
    let (_, h, _) = get(&p, "/age").await;
    assert!(h["age"].to_str().unwrap().parse::<u64>().unwrap() >= 10);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, h, _) = get(&p, "/age").await;
    assert_eq!(xcache(&h), "HIT");
    assert!(h["age"].to_str().unwrap().parse::<u64>().unwrap() >= 12);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_object_is_refetched() {
    let origin = Origin::start(|_| Reply::ok("{}").header("cache-control", "max-age=1")).await;
    let p = proxy(&origin.url(), "").await;
    get(&p, "/e").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (_, h, _) = get(&p, "/e").await;
    assert_eq!(xcache(&h), "MISS");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_is_served_from_the_get_entry() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin.url(), "").await;
    let c = client();
    let r = c.head(url(&p, "/h")).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "MISS");
    assert_eq!(
        origin.last().method,
        "GET",
        "a HEAD miss fills the cache with a GET"
    );
    let (_, h, body) = get(&p, "/h").await;
    assert_eq!(xcache(&h), "HIT");
    let r = c.head(url(&p, "/h")).send().await.unwrap();
    assert_eq!(r.headers()["x-cache"], "HIT");
    assert_eq!(
        r.headers()["content-length"].to_str().unwrap(),
        body.len().to_string()
    );
    assert!(r.bytes().await.unwrap().is_empty());
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
    let p = proxy(&origin.url(), "").await;
    get(&p, "/items").await;
    get(&p, "/items/7").await;
    get(&p, "/other").await;
    let r = client()
        .post(url(&p, "/items"))
        .body("{\"a\":1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-cache"], "PASS");
    assert_eq!(origin.last().body, "{\"a\":1}", "request body forwarded");
    let (_, h, _) = get(&p, "/items").await;
    assert_eq!(xcache(&h), "MISS");
    let (_, h, _) = get(&p, "/items/7").await;
    assert_eq!(xcache(&h), "MISS");
    let (_, h, _) = get(&p, "/other").await;
    assert_eq!(xcache(&h), "HIT");
    // A failed write invalidates nothing.
    origin.set_handler(|s| {
        if s.method == "DELETE" {
            Reply::ok("{}").status(500)
        } else {
            Reply::ok("{}").header("cache-control", CACHEABLE)
        }
    });
    client().delete(url(&p, "/other")).send().await.unwrap();
    let (_, h, _) = get(&p, "/other").await;
    assert_eq!(xcache(&h), "HIT");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_origin_is_502_and_slow_origin_is_504() {
    // Bind then drop a listener to get a port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let p = proxy(&format!("http://{dead}"), "").await;
    let (s, h, body) = get(&p, "/x").await;
    assert_eq!(s, 502);
    assert!(body.len() < 100 && !body.is_empty());
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    p.shutdown().await;

    let origin = Origin::start(|_| Reply::ok("{}").delay(Duration::from_secs(3))).await;
    let p = proxy(&origin.url(), "").await;
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
    let p = proxy(&origin.url(), "").await;
    let (s, _, _) = get(&p, "/a%zz").await;
    assert_eq!(s, 400);
    // Oversize headers: hyper answers 431 on its own.
    let big = "x".repeat(70 * 1024);
    let r = client()
        .get(url(&p, "/a"))
        .header("x-big", big)
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status().as_u16(), 431),
        Err(e) => panic!("expected a 431, got {e}"),
    }
    // A malformed request line over a raw socket.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
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
    let p = proxy(&origin.url(), "").await;
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
    assert_eq!(seen.headers["x-end"], "2");
    assert!(seen.headers["x-forwarded-for"]
        .to_str()
        .unwrap()
        .contains("127.0.0.1"));
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert!(seen.headers.contains_key("x-forwarded-host"));
    assert!(seen.headers["via"].to_str().unwrap().contains("apicache"));
    assert!(!h.contains_key("x-hop"));
    assert!(!h.contains_key("keep-alive"));
    assert!(!h.contains_key("surrogate-control"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_ttl_and_cache_false() {
    let origin =
        Origin::start(|_| Reply::ok("{}").header("cache-control", "no-cache, max-age=0")).await;
    let p = proxy(
        &origin.url(),
        "[[routes]]\npath = \"/accounts/{id}\"\nttl = \"5m\"\n[[routes]]\npath = \"/bookings/{*rest}\"\ncache = false\n",
    )
    .await;
    get(&p, "/accounts/A1").await;
    let (_, h, _) = get(&p, "/accounts/A1").await;
    assert_eq!(
        xcache(&h),
        "HIT",
        "route ttl overrides the origin's lifetime for this proxy"
    );
    assert_eq!(
        h["cache-control"], "no-cache, max-age=0",
        "clients still see the origin's Cache-Control"
    );
    get(&p, "/bookings/1").await;
    let (_, h, _) = get(&p, "/bookings/1").await;
    assert_eq!(xcache(&h), "PASS");
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
    let p = proxy(&origin.url(), "").await;
    for path in ["/sc", "/cdn"] {
        get(&p, path).await;
        let (_, h, _) = get(&p, path).await;
        assert_eq!(xcache(&h), "HIT", "{path}");
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
    let p = proxy(&origin.url(), "").await;
    let (_, _, en) = get_with(&p, "/v", &[("accept-language", "en")]).await;
    let (_, h, fr) = get_with(&p, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(xcache(&h), "MISS");
    assert_ne!(en, fr);
    let (_, h, en2) = get_with(&p, "/v", &[("accept-language", "en")]).await;
    assert_eq!(xcache(&h), "HIT");
    assert_eq!(en, en2);
    let (_, h, _) = get_with(&p, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(xcache(&h), "HIT");
    get(&p, "/star").await;
    let (_, h, _) = get(&p, "/star").await;
    assert_ne!(xcache(&h), "HIT");
    assert_eq!(origin.count(), 4);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_through_unstored() {
    let big = json_body(300 * 1024, "big");
    let body = big.clone();
    let origin =
        Origin::start(move |_| Reply::ok(body.clone()).header("cache-control", CACHEABLE)).await;
    let p = proxy(&origin.url(), "[cache]\nmax_object_size = \"64KiB\"\n").await;
    let (s, _, b) = get_with(&p, "/big", &[("accept-encoding", "identity")]).await;
    assert_eq!(s, 200);
    assert_eq!(b.len(), big.len());
    assert_eq!(&b[..], &big[..]);
    let (_, h, b) = get_with(&p, "/big", &[("accept-encoding", "identity")]).await;
    assert_eq!(xcache(&h), "PASS");
    assert_eq!(&b[..], &big[..]);
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin.url(), "").await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    for expected in ["MISS", "HIT"] {
        let r = c.get(url(&p, "/h2")).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(r.headers()["x-cache"], expected);
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
    let p = proxy(&origin.url(), "").await;
    let addr = p.addr;
    let u = url(&p, "/slow");
    let inflight =
        tokio::spawn(async move { client().get(u).send().await.unwrap().text().await.unwrap() });
    // Wait until the request reached the origin, then shut down.
    for _ in 0..100 {
        if origin.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(origin.requests.load(Ordering::SeqCst), 1);
    p.shutdown().await;
    assert_eq!(
        inflight.await.unwrap(),
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
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin = cacheable_origin().await;
    // The harness config keeps the 30s default; start one with a short timeout instead.
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nheader_read_timeout = \"1s\"\n[origin]\nurl = \"{}\"\n",
        origin.url()
    );
    let p = apicache::start(apicache::Config::parse(&text).unwrap())
        .await
        .unwrap();
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
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_body_size = \"1KiB\"\n[origin]\nurl = \"{}\"\n",
        origin.url()
    );
    let p = apicache::start(apicache::Config::parse(&text).unwrap())
        .await
        .unwrap();
    let r = client()
        .post(url(&p, "/upload"))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert_eq!(origin.count(), 0);
    let r = client()
        .post(url(&p, "/upload"))
        .body(vec![b'x'; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
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
    let p = proxy(&origin.url(), "").await;
    let (_, _, a) = get(&p, "/v?apiKey=alpha").await;
    assert_eq!(&a[..], br#"{"who":"api-token alpha","lang":""}"#);
    let (_, h, b) = get(&p, "/v?apiKey=beta").await;
    assert_eq!(xcache(&h), "MISS");
    assert_eq!(
        &b[..],
        br#"{"who":"api-token beta","lang":""}"#,
        "never another key's variant"
    );
    let (_, h, anon) = get(&p, "/v").await;
    assert_eq!(xcache(&h), "MISS");
    assert_eq!(&anon[..], br#"{"who":"","lang":""}"#);
    let (_, h, _) = get(&p, "/v?apiKey=alpha").await;
    assert_eq!(xcache(&h), "HIT");

    // A field the client marks hop-by-hop never reaches the origin, so it cannot name a variant.
    let (_, _, poisoned) = get_with(
        &p,
        "/w",
        &[("accept-language", "fr"), ("connection", "accept-language")],
    )
    .await;
    assert_eq!(&poisoned[..], br#"{"who":"","lang":""}"#);
    let (_, h, fr) = get_with(&p, "/w", &[("accept-language", "fr")]).await;
    assert_eq!(xcache(&h), "MISS");
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
    let p = proxy(&origin.url(), "").await;
    get_with(&p, "/s", &[("accept-language", "en")]).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set_handler(|_| {
        Reply::ok("down")
            .status(503)
            .delay(Duration::from_millis(400))
    });
    let c = client();
    let (c1, u1) = (c.clone(), url(&p, "/s"));
    let en = tokio::spawn(async move {
        let r = c1
            .get(u1)
            .header("accept-language", "en")
            .send()
            .await
            .unwrap();
        (
            r.headers()["x-cache"].to_str().unwrap().to_string(),
            r.text().await.unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let r = c
        .get(url(&p, "/s"))
        .header("accept-language", "fr")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    assert_ne!(body, "{\"lang\":\"en\"}", "fr must not get en's stale copy");
    assert!(status >= 500, "{status}");
    let (xc, en_body) = en.await.unwrap();
    assert_eq!(
        (xc.as_str(), en_body.as_str()),
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
    let p = proxy(&origin.url(), "").await;
    let (_, h, _) = get_with(&p, "/c", &[("authorization", "Bearer junk")]).await;
    assert!(h["cache-status"]
        .to_str()
        .unwrap()
        .contains("detail=authorization"));
    let (_, h, b) = get(&p, "/c").await;
    assert_eq!(
        xcache(&h),
        "MISS",
        "not marked pass by the credentialed request"
    );
    assert_eq!(&b[..], b"{\"public\":true}");
    let (_, h, _) = get(&p, "/c").await;
    assert_eq!(xcache(&h), "HIT");
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
    let _guard = Guard(child.id());
    let u = format!("http://127.0.0.1:{port}/slow");
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
    let inflight =
        tokio::spawn(async move { client().get(u).send().await.unwrap().text().await.unwrap() });
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
    assert_eq!(inflight.await.unwrap(), "{\"drained\":true}");
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
