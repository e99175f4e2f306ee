//! `cache.expose_cache_headers_to_cors`: browser code can read X-Cache, Cache-Status and Age on
//! CORS answers, cached or passed through.

mod support;
use support::*;

async fn cors_origin() -> Origin {
    Origin::start(|s| {
        let r = Reply::ok("{}").header("cache-control", CACHEABLE);
        match s.path_and_query.as_str() {
            "/cors" => r
                .header("access-control-allow-origin", "*")
                .header("access-control-expose-headers", "X-Total-Count"),
            "/live" => r.header("access-control-allow-origin", "https://dash.example"),
            _ => r,
        }
    })
    .await
}

fn exposed(h: &http::HeaderMap) -> Vec<String> {
    h.get_all("access-control-expose-headers")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_fields_are_exposed_on_cors_answers_when_enabled() {
    let origin = cors_origin().await;
    let p = ProxyBuilder::new(&origin)
        .route(r#"path = "/live", cache = false"#)
        .config(|c| c.cache.expose_cache_headers_to_cors = true)
        .start()
        .await;
    let origin_ = [("origin", "https://dash.example")];
    for x_cache in ["MISS", "HIT"] {
        let (_, h, _) = get_with(&p, "/cors", &origin_).await;
        assert_eq!(hdr(&h, "x-cache"), x_cache);
        assert_eq!(exposed(&h), ["X-Total-Count, X-Cache, Cache-Status, Age"]);
    }
    let (_, h, _) = get_with(&p, "/live", &origin_).await;
    assert_eq!(hdr(&h, "x-cache"), "PASS");
    assert_eq!(exposed(&h), ["X-Cache, Cache-Status, Age"]);
    // Not a CORS answer: nothing added.
    let (_, h, _) = get_with(&p, "/plain", &origin_).await;
    assert!(exposed(&h).is_empty(), "{h:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_the_origins_list_is_untouched() {
    let origin = cors_origin().await;
    let p = proxy(&origin).await;
    for _ in 0..2 {
        let (_, h, _) = get_with(&p, "/cors", &[("origin", "https://dash.example")]).await;
        assert_eq!(exposed(&h), ["X-Total-Count"]);
    }
    p.shutdown().await;
}
