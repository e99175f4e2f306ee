//! Cache keys: URL normalization, API keys moved to Authorization, per-credential routes, Vary.

mod support;
use support::*;

/// json-server's `_page`: no parameter means every item, `_page=1` the first ten.
fn paged_origin_reply(s: &Seen) -> Reply {
    let body = if s.path_and_query.contains("_page=") {
        format!("{{\"items\":10,\"asked\":\"{}\"}}", s.path_and_query)
    } else {
        format!("{{\"items\":500,\"asked\":\"{}\"}}", s.path_and_query)
    };
    Reply::ok(body).header("cache-control", CACHEABLE)
}

/// With `page_param` set, `/x` and `/x?page=1` are one object, and the origin is asked the
/// unambiguous form, `?page=1`, whichever spelling came first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_page_is_forwarded_in_canonical_form() {
    let origin = Origin::start(paged_origin_reply).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.normalize.page_param = "_page".into())
        .start()
        .await;
    let ten = "{\"items\":10,\"asked\":\"/posts?_page=1\"}";
    assert_get(&p, "/posts", "MISS", ten).await;
    assert_eq!(origin.last().path_and_query, "/posts?_page=1");
    assert_get(&p, "/posts?_page=1", "HIT", ten).await;
    assert_eq!(origin.count(), 1);

    // The other order: the explicit form first.
    let ten = "{\"items\":10,\"asked\":\"/users?_page=1\"}";
    assert_get(&p, "/users?_page=1", "MISS", ten).await;
    assert_get(&p, "/users", "HIT", ten).await;
    assert_eq!(origin.count(), 2);

    // Sorted in like any other parameter; another page is another object.
    let (_, h, _) = get(&p, "/posts?_sort=id&_limit=5").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(
        origin.last().path_and_query,
        "/posts?_limit=5&_page=1&_sort=id"
    );
    let (_, h, _) = get(&p, "/posts?_page=2").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(origin.last().path_and_query, "/posts?_page=2");
    assert_eq!(origin.count(), 4);
    p.shutdown().await;
}

/// By default no page parameter is assumed: `/posts` and `/posts?_page=1` are two questions,
/// forwarded as asked (on json-server: all 500 items, and the first 10).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_dedupe_is_off_by_default() {
    let origin = Origin::start(paged_origin_reply).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/posts", "MISS", "{\"items\":500,\"asked\":\"/posts\"}").await;
    assert_eq!(origin.last().path_and_query, "/posts");
    let (_, h, body) = get(&p, "/posts?page=1").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(text(&body), "{\"items\":500,\"asked\":\"/posts?page=1\"}");
    assert_eq!(origin.last().path_and_query, "/posts?page=1");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

/// URL purges and the invalidation after an unsafe method use the canonical form too, so either
/// spelling removes the one object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_canonical_form_is_what_purges_hit() {
    let origin = cacheable_origin().await;
    let p = ProxyBuilder::new(&origin)
        .admin()
        .config(|c| c.normalize.page_param = "page".into())
        .start()
        .await;
    let body = "{\"path\":\"/x?page=1\"}";
    assert_get(&p, "/x?page=1", "MISS", body).await;
    assert_eq!(purge(&p, "PURGE", "/x", &[]).await, 1);
    assert_get(&p, "/x", "MISS", body).await;
    assert_eq!(purge(&p, "PURGE", "/x?page=1", &[]).await, 1);
    assert_get(&p, "/x?page=1", "MISS", body).await;
    assert_eq!(origin.count(), 3);

    let (status, _, _) = post(&p, "/x", b"{}").await;
    assert_eq!(status, 200);
    let seen = origin.last();
    assert_eq!(
        (seen.method.as_str(), seen.path_and_query.as_str()),
        ("POST", "/x?page=1")
    );
    assert_get(&p, "/x", "MISS", body).await;
    assert_eq!(origin.count(), 5);
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
