//! Cache poisoning: nothing a client sends changes what another client receives unless it is
//! part of the cache key (host, scheme from trusted proxies, credentials on per-credential paths).

mod support;
use support::*;

use apicache::config::{Credentialed, TrailingSlash};

/// An origin that builds its answer from what a framework behind a proxy would use.
async fn echo_origin() -> Origin {
    Origin::start(|s: &Seen| {
        let body = format!(
            "host={} proto={} for={} override={} original={} auth={}",
            s.header("x-forwarded-host"),
            s.header("x-forwarded-proto"),
            s.header("x-forwarded-for"),
            s.header("x-http-method-override"),
            s.header("x-original-url"),
            s.header("authorization"),
        );
        Reply::ok(body).header("cache-control", "public, max-age=60")
    })
    .await
}

fn field<'a>(body: &'a str, name: &str) -> &'a str {
    body.split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_is_part_of_the_key() {
    let origin = echo_origin().await;
    let p = proxy(&origin).await;
    let (s, h, b) = get_with(&p, "/p", &[("host", "evil.example")]).await;
    assert_eq!((s, field(&text(&b), "host")), (200, "evil.example"));
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    // Another client, another host: never the attacker's answer.
    let (_, h, b) = get_with(&p, "/p", &[("host", "api.example")]).await;
    assert_eq!(field(&text(&b), "host"), "api.example");
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    // The host is normalized: case and the default port do not split the cache.
    let (_, h, b) = get_with(&p, "/p", &[("host", "API.Example:80")]).await;
    assert_eq!(field(&text(&b), "host"), "api.example");
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    // `Connection: host` cannot hide the host from the key or the origin.
    let (_, _, b) = get_with(
        &p,
        "/q",
        &[("host", "evil.example"), ("connection", "host")],
    )
    .await;
    assert_eq!(field(&text(&b), "host"), "evil.example");
    let (_, _, b) = get_with(&p, "/q", &[("host", "api.example")]).await;
    assert_eq!(field(&text(&b), "host"), "api.example");
    // HTTP/1.0 without Host gets its own entry, and is told no host.
    let got = raw(p.addr, "GET /p HTTP/1.0\r\n\r\n").await;
    assert!(
        got.starts_with("HTTP/1.0 200") || got.starts_with("HTTP/1.1 200"),
        "{got}"
    );
    assert!(got.contains("host= "), "{got}");
    assert_eq!(origin.count_for("/p"), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_or_with_two_hosts_are_400() {
    let origin = echo_origin().await;
    let p = proxy(&origin).await;
    let got = raw(p.addr, "GET /p HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    let two = "GET /p HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n";
    let got = raw(p.addr, two).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert_eq!(origin.count(), 0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_hosts_are_misdirected() {
    let origin = echo_origin().await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.hosts = vec!["api.example".into()])
        .start()
        .await;
    let (s, _, b) = get_with(&p, "/p", &[("host", "evil.example")]).await;
    assert_eq!(s, 421, "{}", text(&b));
    let got = raw(p.addr, "GET /p HTTP/1.0\r\n\r\n").await;
    assert!(got.contains(" 421 "), "{got}");
    assert_eq!(origin.count(), 0);
    let (s, _, b) = get_with(&p, "/p", &[("host", "api.example:80")]).await;
    assert_eq!((s, field(&text(&b), "host")), (200, "api.example"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_fields_are_believed_only_from_trusted_proxies() {
    let origin = echo_origin().await;
    let lb_says = [
        ("host", "api.example"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "203.0.113.9"),
    ];
    // Not trusted: replaced.
    let p = proxy(&origin).await;
    let (_, _, b) = get_with(&p, "/p", &lb_says).await;
    let b = text(&b);
    assert_eq!(
        (field(&b, "proto"), field(&b, "for")),
        ("http", "127.0.0.1")
    );
    p.shutdown().await;
    // Trusted: kept and appended to; the scheme is part of the key.
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.trusted_proxies = vec!["127.0.0.0/8".into()])
        .start()
        .await;
    let (_, _, b) = get_with(&p, "/p", &lb_says).await;
    let b = text(&b);
    assert_eq!(field(&b, "proto"), "https");
    assert!(b.contains("for=203.0.113.9, 127.0.0.1"), "{b}");
    let (_, h, b) = get_with(&p, "/p", &[("host", "api.example")]).await;
    assert_eq!(field(&text(&b), "proto"), "http");
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    // A value that is not a host would make a key that collides with another URL's.
    for bad in [
        ("x-forwarded-host", "api.example/foo"),
        ("x-forwarded-proto", "gopher"),
    ] {
        let (s, _, _) = get_with(&p, "/bar", &[("host", "api.example"), bad]).await;
        assert_eq!(s, 400, "{bad:?}");
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cannot_hide_a_field_the_origin_varies_on() {
    let origin = Origin::start(|s: &Seen| {
        Reply::ok(format!("for {}", s.header("authorization")))
            .header("cache-control", "public, max-age=60")
            .header("vary", "Authorization")
    })
    .await;
    let p = proxy(&origin).await;
    let (_, _, b) = get_with(
        &p,
        "/v",
        &[
            ("authorization", "Bearer mallory"),
            ("connection", "authorization"),
        ],
    )
    .await;
    assert_eq!(text(&b), "for Bearer mallory");
    let (_, _, b) = get(&p, "/v").await;
    assert_eq!(text(&b), "for ", "an anonymous client got mallory's answer");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_spellings_never_reach_the_origin() {
    let origin = echo_origin().await;
    let p = proxy(&origin).await;
    get_with(
        &p,
        "/u",
        &[
            ("x_http_method_override", "DELETE"),
            ("x_forwarded_host", "evil"),
        ],
    )
    .await;
    let seen = origin.last();
    assert!(
        seen.headers.keys().all(|k| !k.as_str().contains('_')),
        "{:?}",
        seen.headers
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_override_and_rewrite_fields_never_reach_the_origin() {
    let origin = echo_origin().await;
    let p = proxy(&origin).await;
    for (name, value) in [
        ("x-http-method-override", "DELETE"),
        ("x-http-method", "DELETE"),
        ("x-method-override", "DELETE"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
    ] {
        get_with(&p, "/p", &[(name, value)]).await;
        let seen = origin.last();
        assert_eq!(seen.header(name), "", "{name} was forwarded");
    }
    let (_, _, b) = get(&p, "/p").await;
    let b = text(&b);
    assert_eq!((field(&b, "override"), field(&b, "original")), ("", ""));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_bad_request_does_not_switch_caching_off() {
    // The origin refuses a bad header with an uncacheable 400, and personalizes for cookies.
    let origin = Origin::start(|s: &Seen| {
        if !s.header("x-bad").is_empty() {
            return Reply::ok("bad")
                .status(400)
                .header("cache-control", "no-store");
        }
        if !s.header("cookie").is_empty() {
            return Reply::ok("yours").header("cache-control", "private");
        }
        Reply::ok("shared").header("cache-control", "public, max-age=60")
    })
    .await;
    let p = proxy(&origin).await;
    for (name, value) in [("x-bad", "1"), ("cookie", "s=1")] {
        let path = format!("/p-{name}");
        for _ in 0..3 {
            get_with(&p, &path, &[(name, value)]).await;
        }
        assert_get(&p, &path, "MISS", "shared").await;
        assert_get(&p, &path, "HIT", "shared").await;
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cacheable_answer_clears_hit_for_pass_at_once() {
    let origin = Origin::fixed(b"v1", &[("cache-control", "no-store")]).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/p", "MISS", "v1").await;
    let (_, h, _) = get(&p, "/p").await;
    assert!(hdr(&h, "cache-status").contains("detail=no-store"), "{h:?}");
    origin.set_handler(|_| Reply::ok("v2").header("cache-control", "public, max-age=60"));
    // Still marked: forwarded, and the cacheable answer unmarks the key.
    get(&p, "/p").await;
    assert_get(&p, "/p", "MISS", "v2").await;
    assert_get(&p, "/p", "HIT", "v2").await;
    p.shutdown().await;
}

/// An origin that answers `/me` for whoever asks, marked public (the mistake being guarded).
async fn me_origin() -> Origin {
    Origin::start(|s: &Seen| {
        Reply::ok(format!("me={}", s.header("authorization")))
            .header("cache-control", "public, max-age=60")
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_credential_routes_hold_under_path_variants() {
    let origin = me_origin().await;
    let p = ProxyBuilder::new(&origin)
        .route(r#"path = "/me", auth = "per-credential""#)
        .route(r#"path = "/public/{*rest}""#)
        .config(|c| {
            c.normalize.case_insensitive_paths = true;
            c.normalize.trailing_slash = TrailingSlash::Strip;
        })
        .start()
        .await;
    for path in [
        "/me",
        "//me",
        "/ME",
        "/Me",
        "/me/",
        "/me;x=1",
        "/public/..;/me",
        "/x%2F..%2Fme",
    ] {
        let (_, _, b) = get_with(&p, path, &[("authorization", "Bearer alice")]).await;
        assert_eq!(text(&b), "me=Bearer alice", "{path}");
        let (_, _, b) = get_with(&p, path, &[("authorization", "Bearer bob")]).await;
        assert_eq!(
            text(&b),
            "me=Bearer bob",
            "{path}: alice's answer served to bob"
        );
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentialed_requests_off_route_follow_cache_credentialed() {
    let origin = me_origin().await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.credentialed = Credentialed::PerCredential)
        .start()
        .await;
    for who in ["Bearer alice", "Bearer bob"] {
        let (_, _, b) = get_with(&p, "/ME/", &[("authorization", who)]).await;
        assert_eq!(text(&b), format!("me={who}"));
    }
    let (_, h, _) = get_with(&p, "/ME/", &[("authorization", "Bearer bob")]).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    p.shutdown().await;

    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.credentialed = Credentialed::Pass)
        .start()
        .await;
    for _ in 0..2 {
        let (_, h, _) = get_with(&p, "/x", &[("authorization", "Bearer alice")]).await;
        assert!(
            hdr(&h, "cache-status").contains("detail=credentialed"),
            "{h:?}"
        );
    }
    // Anonymous requests still cache.
    get(&p, "/x").await;
    let (_, h, _) = get(&p, "/x").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_credentials_are_400() {
    let origin = me_origin().await;
    let p = ProxyBuilder::new(&origin)
        .route(r#"path = "/me", auth = "per-credential""#)
        .start()
        .await;
    let (s, _, _) = get_with(
        &p,
        "/me",
        &[
            ("authorization", "Bearer alice"),
            ("authorization", "Bearer bob"),
        ],
    )
    .await;
    assert_eq!(s, 400);
    for target in ["/me?apiKey=a&apiKey=b", "/me?api_key=a&apiKey=b"] {
        let (s, _, _) = get(&p, target).await;
        assert_eq!(s, 400, "{target}");
    }
    assert_eq!(origin.count(), 0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_targets_are_414() {
    let origin = me_origin().await;
    let p = proxy(&origin).await;
    let long = format!("/p?q={}", "a".repeat(9 * 1024));
    let (s, _, _) = get(&p, &long).await;
    assert_eq!(s, 414);
    assert_eq!(origin.count(), 0);
    p.shutdown().await;
}
