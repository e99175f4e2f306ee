//! The admin API: token checks, the public port never purges, /metrics, ephemeral admin ports.

mod support;
use support::*;

/// One request in a table: method, path, extra headers.
type Attempt<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

// The admin token guards everything but /healthz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requires_token() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/a", "MISS", &shop_page("/a")).await;

    let wrong_token = "0123456789abcdef0124";
    let attempts: [(Attempt, Option<&str>); 9] = [
        (("POST", "/purge/a", vec![]), None),
        (("POST", "/purge/a", vec![]), Some(wrong_token)),
        (("POST", "/purge/a", vec![]), Some("")),
        (("POST", "/purge/a", vec![]), Some("0123456789abcdef012")),
        (("POST", "/purge/a", vec![]), Some("0123456789abcdef01234")),
        (("POST", "/purge", vec![("surrogate-key", "a")]), None),
        (("PURGE", "/a", vec![]), None),
        (("POST", "/purge-all", vec![]), Some(wrong_token)),
        (("GET", "/stats", vec![]), None),
    ];
    for ((method, path, headers), token) in attempts {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = headers.clone();
        if let Some(auth) = &auth {
            headers.push(("authorization", auth));
        }
        let (status, h, _) = admin_send(&p, method, path, &headers).await;
        assert_eq!(status, 401, "{method} {path} token={token:?}");
        assert_eq!(hdr(&h, "www-authenticate"), "Bearer");
    }
    // The token in another scheme is not accepted either.
    let (status, _, _) = admin_send(
        &p,
        "POST",
        "/purge/a",
        &[("authorization", &format!("Basic {TOKEN}"))],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = admin_send(&p, "GET", "/metrics", &[]).await;
    assert_eq!(status, 401);
    assert_get(&p, "/a", "HIT", &shop_page("/a")).await;
    assert_eq!(origin.count(), 1, "nothing was purged");

    // Health needs no token; unknown paths and methods are 404 once authorized.
    let (status, _, body) = admin_send(&p, "GET", "/healthz", &[]).await;
    assert_eq!((status, text(&body).as_str()), (200, "ok\n"));
    let wrong = format!("Bearer {wrong_token}");
    let (status, _, _) = admin_send(&p, "GET", "/healthz", &[("authorization", &wrong)]).await;
    assert_eq!(status, 200);
    let authorized = [("authorization", BEARER)];
    let (status, _, _) = admin_send(&p, "GET", "/nope", &authorized).await;
    assert_eq!(status, 404);
    let (status, _, _) = admin_send(&p, "GET", "/purge/a", &authorized).await;
    assert_eq!(status, 404, "GET is not a purge");
    let (status, _, _) = admin_send(&p, "DELETE", "/purge-all", &authorized).await;
    assert_eq!(status, 404);
    let (status, _, _) = admin_send(&p, "GET", "/stats", &authorized).await;
    assert_eq!(status, 200);
    assert_get(&p, "/a", "HIT", &shop_page("/a")).await;

    // The right token purges.
    assert_eq!(purge(&p, "POST", "/purge/a", &[]).await, 1);
    assert_get(&p, "/a", "MISS", &shop_page("/a")).await;
    p.shutdown().await;
}

// Purge-looking requests on the public port go to the origin and purge nothing by tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_port_never_purges() {
    let origin = Origin::start(|s| {
        if s.path_and_query == "/items/1" {
            Reply::ok("{\"item\":1}")
                .header("cache-control", "max-age=300")
                .header("surrogate-key", "x all")
        } else {
            Reply::ok(format!("origin saw {} {}", s.method, s.path_and_query))
        }
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/items/1", "MISS", "{\"item\":1}").await;
    assert_get(&p, "/items/1", "HIT", "{\"item\":1}").await;

    let attempts: [Attempt; 5] = [
        ("POST", "/purge/x", vec![]),
        ("PURGE", "/x", vec![]),
        ("POST", "/purge", vec![("surrogate-key", "x all")]),
        ("POST", "/purge-all", vec![]),
        ("POST", "/purge/x", vec![("authorization", BEARER)]),
    ];
    for (method, path, headers) in attempts {
        let before = origin.count();
        let (status, h, body) = send(&p, method, path, &headers).await;
        assert_eq!(status, 200, "{method} {path}");
        assert_eq!(text(&body), format!("origin saw {method} {path}"));
        assert_eq!(hdr(&h, "x-cache"), "PASS");
        assert_eq!(origin.count(), before + 1);
        let seen = origin.last();
        assert_eq!(
            (seen.method.as_str(), seen.path_and_query.as_str()),
            (method, path)
        );
        assert_get(&p, "/items/1", "HIT", "{\"item\":1}").await;
    }
    assert_eq!(origin.count_for("/items/1"), 1);
    // The admin API still sees the object under its tag.
    assert_eq!(purge(&p, "POST", "/purge/x", &[]).await, 1);
    p.shutdown().await;
}

// /metrics is Prometheus text with the request, purge and latency series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/a", "MISS", &shop_page("/a")).await;
    assert_get(&p, "/a", "HIT", &shop_page("/a")).await;
    assert_eq!(purge(&p, "POST", "/purge/a", &[]).await, 1);

    let (status, h, body) = admin_send(&p, "GET", "/metrics", &[("authorization", BEARER)]).await;
    let metrics = text(&body);
    assert_eq!(status, 200);
    assert!(hdr(&h, "content-type").starts_with("text/plain"), "{h:?}");
    for line in metrics.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            series.starts_with("apicache_") && !series.contains(' '),
            "bad series: {line}"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let value = |series: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("apicache_requests_total{result=\"hit\",route=\"none\"}"),
        1.0
    );
    assert_eq!(
        value("apicache_requests_total{result=\"miss\",route=\"none\"}"),
        1.0
    );
    assert_eq!(value("apicache_purges_total"), 1.0);
    assert_eq!(value("apicache_purged_objects_total"), 1.0);
    assert!(metrics.contains("# TYPE apicache_origin_latency_seconds histogram"));
    assert!(metrics.contains("apicache_origin_latency_seconds_bucket{route=\"none\",le=\"0.001\"}"));
    assert_eq!(
        value("apicache_origin_latency_seconds_bucket{route=\"none\",le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(
        value("apicache_origin_latency_seconds_count{route=\"none\"}"),
        1.0
    );
    assert_eq!(value("apicache_origin_requests_total{route=\"none\"}"), 1.0);
    p.shutdown().await;
}

// The auth scheme is case-insensitive (RFC 9110 §11.1): `bearer <token>` is the right token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_scheme_is_case_insensitive() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/a", "MISS", &shop_page("/a")).await;
    let lower = format!("bearer {TOKEN}");
    let (status, _, body) = admin_send(&p, "POST", "/purge/a", &[("authorization", &lower)]).await;
    assert_eq!((status, text(&body).as_str()), (200, "{\"purged\":1}"));
    p.shutdown().await;
}

// Config: an admin listener on an ephemeral port next to an ephemeral public port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_on_port_zero_is_accepted() {
    let origin = Origin::start(shop_reply).await;
    // The builder's admin listener is `127.0.0.1:0` with a token, next to a public `127.0.0.1:0`.
    let p = ProxyBuilder::new(&origin).admin().start().await;
    let admin = p.admin_addr.expect("admin listener");
    assert_ne!(admin, p.addr);
    let (status, _, _) = admin_send(&p, "GET", "/healthz", &[]).await;
    assert_eq!(status, 200);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_port_zero_is_accepted() {
    let origin = Origin::fixed(b"{}", &[("cache-control", "max-age=60")]).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[origin]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        origin.url()
    );
    let cfg = apicache::Config::parse(&text).expect("two ephemeral ports never collide");
    let p = apicache::start(cfg).await.unwrap();
    let admin = p.admin_addr.expect("admin listener");
    assert_ne!(admin, p.addr);
    let st = stats(&p).await;
    assert_eq!(stat(&st, "origin_requests"), 0);
    p.shutdown().await;
}
