//! Vary normalization (RFC 9111 §4.1): Accept-Language, Accept and the fields in
//! `cache.vary_normalize` are compared as weighted lists, so spellings with the same meaning
//! select one stored variant; an order that can carry a preference still selects another.

mod support;
use support::*;

/// An origin that varies on `vary` and echoes the request's values for those fields.
async fn echo_origin(vary: &'static str) -> Origin {
    Origin::start(move |s| {
        let echoed: Vec<String> = vary
            .split(',')
            .map(|f| format!("{}={}", f.trim(), s.header(f.trim())))
            .collect();
        Reply::ok(format!("{{\"saw\":{:?}}}", echoed.join(";")))
            .header("cache-control", "max-age=60")
            .header("vary", vary)
    })
    .await
}

// `en-US, fr` then `EN-us ,fr` and `en-US;q=1, fr,`: one origin request, the others are hits on
// the first variant. `fr, en-US` (French preferred) is another variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_language_spellings_select_one_variant() {
    let origin = echo_origin("Accept-Language").await;
    let p = proxy(&origin).await;
    let lang = |v| [("accept-language", v)];
    let (_, h, first) = get_with(&p, "/l", &lang("en-US, fr")).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    for same in ["EN-us ,fr", "en-US;q=1, fr,", "en-us,fr;q=1.000"] {
        let (_, h, body) = get_with(&p, "/l", &lang(same)).await;
        assert_eq!(hdr(&h, "x-cache"), "HIT", "{same}");
        assert_eq!(body, first, "{same}");
    }
    assert_eq!(origin.count(), 1);

    // Weights decide the order: these two say the same.
    let (_, h, _) = get_with(&p, "/l", &lang("fr;q=0.5, en-US")).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    let (_, h, _) = get_with(&p, "/l", &lang("en-us, FR;q=0.50")).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 2);

    // Equal weights in another order may mean another preference: not merged.
    let (_, h, body) = get_with(&p, "/l", &lang("fr,en-us")).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert!(text(&body).contains("fr,en-us"), "{}", text(&body));
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

// Accept: media types fold case and parameters lose whitespace; parameter values keep their case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_spellings_select_one_variant() {
    let origin = echo_origin("Accept").await;
    let p = proxy(&origin).await;
    let accept = |v| [("accept", v)];
    get_with(&p, "/a", &accept("application/vnd.x+json; v=A, */*;q=0.1")).await;
    let (_, h, _) = get_with(&p, "/a", &accept("Application/Vnd.X+JSON;V=A,*/*; q=0.100")).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    let (_, h, _) = get_with(&p, "/a", &accept("application/vnd.x+json;v=a, */*;q=0.1")).await;
    assert_eq!(
        hdr(&h, "x-cache"),
        "MISS",
        "a parameter value's case may matter"
    );
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

// A field named in `cache.vary_normalize` is normalized too; others are compared as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_fields_are_normalized() {
    let origin = echo_origin("X-Features, X-Tenant").await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.vary_normalize = vec!["X-Features".into()])
        .start()
        .await;
    let req = |features, tenant| [("x-features", features), ("x-tenant", tenant)];
    get_with(&p, "/c", &req("Beta, dark;q=0.5", "acme")).await;
    let (_, h, _) = get_with(&p, "/c", &req("dark;q=0.5,beta", "acme")).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    let (_, h, _) = get_with(&p, "/c", &req("Beta, dark;q=0.5", "ACME")).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS", "X-Tenant is not normalized");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

// Concurrent misses with equivalent spellings collapse into one origin request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn equivalent_spellings_collapse_into_one_fill() {
    let origin = Origin::start(|s| {
        Reply::ok(format!("{{\"l\":{:?}}}", s.header("accept-language")))
            .header("cache-control", "max-age=60")
            .header("vary", "Accept-Language")
            .delay(std::time::Duration::from_millis(300))
    })
    .await;
    let p = proxy(&origin).await;
    // The URL's Vary is known once a first variant is stored.
    get_with(&p, "/f", &[("accept-language", "de")]).await;
    let mut set = tokio::task::JoinSet::new();
    for v in ["en-US, fr", "EN-us,fr", "en-us , FR", "en-US;q=1,fr"] {
        let addr = p.addr;
        set.spawn(async move { request(addr, "GET", "/f", &[("accept-language", v)], b"").await });
    }
    let mut bodies = Vec::new();
    while let Some(r) = set.join_next().await {
        let (status, _, body) = r.unwrap();
        assert_eq!(status, 200);
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one variant for all"
    );
    assert_eq!(origin.count(), 2, "one fill for the four spellings");
    p.shutdown().await;
}
