//! What the request-path redesign added: per-route metrics, error answers built in one place,
//! fills that answer before compression, a kept origin gzip, and the zero stale window.

mod support;
use support::*;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_and_origin_metrics_carry_the_route() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin)
        .admin()
        .route(r#"path = "/products/{id}", ttl = "60s""#)
        .start()
        .await;
    assert_get(&p, "/products/1", "MISS", &shop_page("/products/1")).await;
    assert_get(&p, "/products/1", "HIT", &shop_page("/products/1")).await;
    assert_get(&p, "/other", "MISS", &shop_page("/other")).await;

    let (status, _, body) = admin_send(&p, "GET", "/metrics", &[("authorization", BEARER)]).await;
    assert_eq!(status, 200);
    let text = text(&body);
    for line in [
        "apicache_requests_total{result=\"hit\",route=\"/products/{id}\"} 1",
        "apicache_requests_total{result=\"miss\",route=\"/products/{id}\"} 1",
        "apicache_requests_total{result=\"miss\",route=\"none\"} 1",
        "apicache_requests_total{result=\"hit\",route=\"none\"} 0",
        "apicache_origin_requests_total{route=\"/products/{id}\"} 1",
        "apicache_origin_requests_total{route=\"none\"} 1",
        "apicache_origin_latency_seconds_count{route=\"/products/{id}\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
    }
    // Only configured routes and `none` ever appear as label values.
    let routes: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split("route=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .collect();
    assert_eq!(
        routes.into_iter().collect::<Vec<_>>(),
        ["/products/{id}", "none"]
    );

    let s = stats(&p).await;
    assert_eq!((stat(&s, "hits"), stat(&s, "misses")), (1, 2), "{s}");
    let per_route = s["routes"].as_array().expect("routes array");
    assert_eq!(per_route[0]["route"], "/products/{id}");
    assert_eq!(
        (
            per_route[0]["hits"].as_u64(),
            per_route[0]["misses"].as_u64()
        ),
        (Some(1), Some(1))
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer_is_short_uncacheable_text() {
    // Nothing listens at the origin address: fills and passes fail to connect.
    let p = ProxyBuilder::for_url("http://127.0.0.1:9")
        .admin()
        .start()
        .await;
    let plain = |h: &http::HeaderMap| {
        hdr(h, "content-type").starts_with("text/plain") && hdr(h, "cache-control") == "no-store"
    };
    let (s, h, b) = get(&p, "/bad%zzpath").await;
    assert_eq!(s, 400, "{}", text(&b));
    assert!(plain(&h) && b.len() < 100, "{h:?}");
    let (s, h, b) = get(&p, "/down").await;
    assert_eq!(s, 502);
    assert!(plain(&h) && b.len() < 100, "{h:?}");
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(
        hdr(&h, "cache-status"),
        "apicache; fwd=uri-miss; fwd-status=502; detail=refused"
    );
    let (s, h, _) = get_with(&p, "/down", &[("cache-control", "only-if-cached")]).await;
    assert_eq!(s, 504);
    assert!(plain(&h));
    assert_eq!(hdr(&h, "cache-status"), "apicache; detail=only-if-cached");
    for (path, auth, want) in [
        ("/stats", "", 401),
        ("/nope", BEARER, 404),
        ("/purge", BEARER, 400),
    ] {
        let method = if path == "/purge" { "POST" } else { "GET" };
        let headers: Vec<(&str, &str)> = if auth.is_empty() {
            vec![]
        } else {
            vec![("authorization", auth)]
        };
        let (s, h, _) = admin_send(&p, method, path, &headers).await;
        assert_eq!(s, want, "{method} {path}");
        assert!(plain(&h), "{method} {path}: {h:?}");
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_answers_before_its_variants_are_encoded() {
    let body = json_body(16 * 1024, "later");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    // The miss is answered with what is stored at once: identity, already varying on coding.
    let (s, h, got) = get_with(&p, "/l", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "MISS"));
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_eq!(&got[..], &body[..]);
    assert!(vary_has(&h, "accept-encoding"), "{h:?}");
    let etag = hdr(&h, "etag").to_string();
    p.settle().await;
    let (_, h, got) = get_with(&p, "/l", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "content-encoding")),
        ("HIT", "br")
    );
    assert_eq!(unbrotli(&got), body);
    // Swapping the encoded copy in keeps the representation's ETag family and its age.
    assert_eq!(
        hdr(&h, "etag"),
        format!("{}-br\"", etag.trim_end_matches('"'))
    );
    let (_, h, _) = get(&p, "/l").await;
    assert_eq!(hdr(&h, "etag"), etag);
    let s = stats(&p).await;
    assert_eq!(
        (stat(&s, "compressions"), stat(&s, "origin_requests")),
        (3, 1),
        "{s}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_gzip_is_kept_as_the_gzip_variant() {
    let body = json_body(8192, "origin-gz");
    let gz = gzip(&body);
    let sent = gz.clone();
    let origin = Origin::start(move |_| {
        Reply::ok(sent.clone())
            .header("content-encoding", "gzip")
            .header("cache-control", "max-age=60")
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    let (_, h, got) = get_with(&p, "/g", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "content-encoding")),
        ("MISS", "gzip")
    );
    assert_eq!(got, gz, "the origin's own bytes, not re-encoded");
    p.settle().await;
    let (_, h, got) = get_with(&p, "/g", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "content-encoding")),
        ("HIT", "gzip")
    );
    assert_eq!(got, gz);
    let (_, h, got) = get_with(&p, "/g", &[("accept-encoding", "br")]).await;
    assert_eq!(hdr(&h, "content-encoding"), "br");
    assert_eq!(unbrotli(&got), body);
    // Only brotli and zstd had to be computed.
    assert_eq!(stat(&stats(&p).await, "compressions"), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_stale_window_serves_nothing_stale() {
    let origin = Origin::start(|_| {
        Reply::ok("{}").header("cache-control", "max-age=1, stale-while-revalidate=0")
    })
    .await;
    let p = proxy(&origin).await;
    assert_get(&p, "/z", "MISS", "{}").await;
    // Stale by less than a second: a zero window does not cover it.
    p.clock().advance(Duration::from_millis(1000));
    let h = assert_get(&p, "/z", "MISS", "{}").await;
    assert_eq!(hdr(&h, "cache-status"), "apicache; fwd=stale; stored");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}
