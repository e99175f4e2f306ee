//! HTTPS origins: a private CA in `origin.ca_file`, rejected certificates as 502s (never
//! retried, logged with rustls' reason), HTTP/2 by ALPN (`origin.http2`), `origin.host`,
//! `insecure_skip_verify`, and HTTP/2 clients in front of HTTP/1.1 and HTTP/2 origins.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;

use http::Version;

/// What every origin here answers: its path, cacheable.
fn answer(s: &Seen) -> Reply {
    Reply::ok(format!("{{\"path\":\"{}\"}}", s.path_and_query)).header("cache-control", CACHEABLE)
}

/// An HTTPS origin with a certificate for `names` from a fresh private CA, offering `alpn`.
async fn tls_origin(names: &[&str], alpn: &[&str]) -> (TestCa, Origin) {
    let ca = TestCa::new("apicache test CA");
    let origin = Origin::start_tls(server_tls(&ca.leaf(names), alpn), answer).await;
    (ca, origin)
}

/// apicache in front of `origin` with these `[origin]` lines. Origin timeouts of 10 s: a TLS
/// handshake on a busy machine must not turn into a 504.
fn builder(origin: &Origin, lines: &[String]) -> ProxyBuilder {
    lines
        .iter()
        .fold(ProxyBuilder::new(origin), |b, l| b.origin_key(l))
        .config(|c| c.origin.timeout = Duration::from_secs(10))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_signed_by_the_ca_in_ca_file_is_cached_and_served() {
    let (ca, origin) = tls_origin(&["localhost"], &[]).await;
    let p = builder(&origin, &[ca_file_line(&ca)]).start().await;
    assert_get(&p, "/items/1", "MISS", "{\"path\":\"/items/1\"}").await;
    assert_get(&p, "/items/1", "HIT", "{\"path\":\"/items/1\"}").await;
    assert_eq!(origin.count(), 1);
    let seen = origin.last();
    // SNI and the certificate's name come from the URL's host; the port is not 443, so the
    // Host names it.
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    assert_eq!(seen.authority, format!("localhost:{}", origin.addr.port()));
    assert_eq!(seen.version, Version::HTTP_11, "no ALPN offered: HTTP/1.1");
    p.shutdown().await;
}

/// A 502 that says the certificate was rejected, for each request (never cached), with no
/// request reaching the origin and one connection per request: a rejected certificate is not
/// retried as if a pooled connection had gone stale.
async fn assert_rejected(p: &apicache::Running, origin: &Origin) {
    for i in 1..=2 {
        let (status, h, body) = get(p, "/items/1").await;
        assert_eq!(status, 502);
        assert_eq!(text(&body), "origin certificate rejected\n");
        assert_eq!(
            hdr(&h, "cache-status"),
            "apicache; fwd=uri-miss; fwd-status=502; detail=certificate"
        );
        assert_eq!(origin.connections(), i, "one handshake per request");
    }
    assert_eq!(
        origin.count(),
        0,
        "no request went over a rejected connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ca_file_the_private_ca_is_unknown_and_the_answer_is_a_502() {
    let (_ca, origin) = tls_origin(&["localhost"], &[]).await;
    // The platform's roots only: the test CA is not among them.
    let p = builder(&origin, &[]).start().await;
    assert_rejected(&p, &origin).await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_rejected() {
    let (ca, origin) = tls_origin(&["api.other.test"], &[]).await;
    let p = builder(&origin, &[ca_file_line(&ca)]).start().await;
    assert_rejected(&p, &origin).await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_is_used_when_the_origin_picks_it_in_alpn() {
    let (ca, origin) = tls_origin(&["localhost"], &["h2", "http/1.1"]).await;
    let p = builder(&origin, &[ca_file_line(&ca)]).start().await;
    assert_get(&p, "/a", "MISS", "{\"path\":\"/a\"}").await;
    assert_get(&p, "/b", "MISS", "{\"path\":\"/b\"}").await;
    assert_get(&p, "/a", "HIT", "{\"path\":\"/a\"}").await;
    let seen = origin.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.version, Version::HTTP_2, "{}", s.path_and_query);
        // `:authority`, and no `Host` beside it.
        assert_eq!(s.authority, format!("localhost:{}", origin.addr.port()));
        assert!(!s.headers.contains_key("host"), "{:?}", s.headers);
        assert!(!s.headers.contains_key("connection"), "{:?}", s.headers);
    }
    assert_eq!(
        origin.connections(),
        1,
        "both requests on one HTTP/2 connection"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_never_speaks_http1_to_an_h2_capable_origin() {
    let (ca, origin) = tls_origin(&["localhost"], &["h2", "http/1.1"]).await;
    let lines = [ca_file_line(&ca), "http2 = \"never\"".into()];
    let p = builder(&origin, &lines).start().await;
    assert_get(&p, "/a", "MISS", "{\"path\":\"/a\"}").await;
    assert_eq!(origin.last().version, Version::HTTP_11);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_always_offers_only_h2_and_speaks_h2c_without_tls() {
    let (ca, origin) = tls_origin(&["localhost"], &["h2"]).await;
    let lines = [ca_file_line(&ca), "http2 = \"always\"".into()];
    let p = builder(&origin, &lines).start().await;
    assert_get(&p, "/a", "MISS", "{\"path\":\"/a\"}").await;
    assert_eq!(origin.last().version, Version::HTTP_2);
    p.shutdown().await;

    // Plain http: HTTP/2 with prior knowledge.
    let plain = Origin::start(answer).await;
    let p = builder(&plain, &["http2 = \"always\"".into()])
        .start()
        .await;
    assert_get(&p, "/a", "MISS", "{\"path\":\"/a\"}").await;
    assert_eq!(plain.last().version, Version::HTTP_2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_host_is_the_authority_the_origin_sees_over_http1_and_http2() {
    for alpn in [&[][..], &["h2"][..]] {
        let (ca, origin) = tls_origin(&["localhost"], alpn).await;
        origin.set_handler(|s| match s.path_and_query.as_str() {
            "/moved" => Reply::ok("{}")
                .status(301)
                .header("location", "https://API.internal/next?x=1"),
            _ => answer(s),
        });
        let lines = [ca_file_line(&ca), "host = \"api.internal\"".into()];
        let p = builder(&origin, &lines).start().await;
        assert_get(&p, "/a", "MISS", "{\"path\":\"/a\"}").await;
        let seen = origin.last();
        assert_eq!(seen.authority, "api.internal", "{alpn:?}");
        assert_eq!(
            seen.header("host"),
            if alpn.is_empty() { "api.internal" } else { "" }
        );
        // The connection still went to the URL's host, by its name.
        assert_eq!(seen.sni.as_deref(), Some("localhost"));
        // URLs naming `origin.host` are the origin's: rewritten to the client's host.
        let (status, h, _) = get(&p, "/moved").await;
        assert_eq!(status, 301);
        assert_eq!(hdr(&h, "location"), format!("http://{}/next?x=1", p.addr));
        p.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preserve_host_keeps_http1_so_host_and_authority_agree() {
    let (ca, origin) = tls_origin(&["localhost"], &["h2", "http/1.1"]).await;
    let lines = [ca_file_line(&ca), "preserve_host = true".into()];
    let p = builder(&origin, &lines).start().await;
    let (status, _, _) = get_with(&p, "/a", &[("host", "api.example.com")]).await;
    assert_eq!(status, 200);
    let seen = origin.last();
    assert_eq!(seen.version, Version::HTTP_11, "auto offers only http/1.1");
    assert_eq!(seen.authority, "api.example.com");
    assert_eq!(seen.sni.as_deref(), Some("localhost"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_serves_an_unverified_origin_and_is_warned_about() {
    let (_ca, origin) = tls_origin(&["api.other.test"], &[]).await;
    let cfg = builder(&origin, &["insecure_skip_verify = true".into()]).build();
    let warnings = cfg.warnings();
    assert!(
        warnings.iter().any(|w| w.starts_with(&format!(
            "origin.insecure_skip_verify = true: the certificate of localhost:{} is NOT verified",
            origin.addr.port()
        ))),
        "{warnings:?}"
    );
    let p = apicache::start(cfg).await.unwrap();
    assert_get(&p, "/a", "MISS", "{\"path\":\"/a\"}").await;
    p.shutdown().await;
}

/// A client that speaks HTTP/2 to apicache (prior knowledge: the public port is plain http).
fn h2_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_in_front_of_http1_and_http2_tls_origins() {
    // (origin's ALPN, the version it must see)
    for (alpn, want) in [
        (&["http/1.1"][..], Version::HTTP_11),
        (&["h2"][..], Version::HTTP_2),
    ] {
        let (ca, origin) = tls_origin(&["localhost"], alpn).await;
        let p = builder(&origin, &[ca_file_line(&ca)]).start().await;
        for x_cache in ["MISS", "HIT"] {
            let resp = h2_client()
                .get(format!("http://{}/items/1", p.addr))
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .header("te", "trailers")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.version(), Version::HTTP_2);
            assert_eq!(resp.status(), 200);
            assert_eq!(hdr(resp.headers(), "x-cache"), x_cache, "{alpn:?}");
            assert_eq!(resp.text().await.unwrap(), "{\"path\":\"/items/1\"}");
        }
        let seen = origin.last();
        assert_eq!((origin.count(), seen.version), (1, want), "{alpn:?}");
        // Each cookie in its own HTTP/2 field; one field for the origin (RFC 9113 §8.2.3).
        let cookies: Vec<_> = seen.headers.get_all("cookie").iter().collect();
        assert_eq!(cookies, ["a=1; b=2"], "{alpn:?}");
        assert_eq!(seen.header("via"), "2 apicache");
        p.shutdown().await;
    }
}

/// Run the binary with `origin_lines` in front of `origin`, GET `/a` once, stop it with
/// SIGTERM: the status it answered and everything it logged.
async fn run_binary(origin: &Origin, origin_lines: &str, name: &str) -> (u16, String) {
    let port = free_port();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"{}\"\ntimeout = \"10s\"\n\
         {origin_lines}\n",
        origin.url()
    );
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let bin = Binary::start(&format!("https-{name}"), &text, addr).await;
    let (status, _, _) = request(addr, "GET", "/a", &[("x-request-id", name)], b"").await;
    (status, bin.stop().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_why_a_certificate_was_rejected_and_warns_when_verification_is_off() {
    let (_ca, origin) = tls_origin(&["localhost"], &[]).await;
    let (status, log) = run_binary(&origin, "", "rejected").await;
    assert_eq!(status, 502);
    let failure = log
        .lines()
        .find(|l| l.contains("origin request failed") && l.contains("request_id=rejected"));
    let failure = failure.unwrap_or_else(|| panic!("no origin failure line:\n{log}"));
    assert!(
        failure.contains("WARN")
            && failure.contains("cause=certificate")
            && failure.contains("invalid peer certificate: UnknownIssuer"),
        "{failure}"
    );

    let (status, log) = run_binary(&origin, "insecure_skip_verify = true", "insecure").await;
    assert_eq!(status, 200);
    let warning = log
        .lines()
        .find(|l| l.contains("origin.insecure_skip_verify = true"));
    let warning = warning.unwrap_or_else(|| panic!("no warning at start:\n{log}"));
    assert!(
        warning.contains("WARN") && warning.contains("NOT verified"),
        "{warning}"
    );
}
