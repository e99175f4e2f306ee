//! Cache keys: URL normalization, API keys moved to Authorization, per-credential routes, Vary.

mod support;
use support::*;

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
