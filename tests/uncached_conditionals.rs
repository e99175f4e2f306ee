//! A client's If-None-Match / If-Modified-Since on answers apicache does not store: evaluated
//! against the origin's answer when a fill sent none, forwarded unchanged when the request passes.

mod support;
use support::*;

const PRIVATE: &[(&str, &str)] = &[("etag", "\"p1\""), ("cache-control", "private")];

/// An origin that honours If-None-Match itself, answering `headers` either way.
async fn validating(headers: &'static [(&'static str, &'static str)]) -> Origin {
    Origin::start(move |seen| {
        if seen.header("if-none-match") == "\"p1\"" {
            Reply::not_modified(headers)
        } else {
            Reply::ok(json_body(4096, "private")).headers(headers)
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_answer_to_a_conditional_fill_becomes_a_304() {
    let origin = validating(PRIVATE).await;
    let p = proxy(&origin).await;
    // Credentialed: never remembered as pass, so every such request is a fill.
    let auth = ("authorization", "Bearer user-1");
    for _ in 0..2 {
        let (s, h, b) = get_with(&p, "/me", &[auth, ("if-none-match", "\"p1\"")]).await;
        assert_eq!(s, 304, "{h:?}");
        assert!(b.is_empty());
        assert_eq!(hdr(&h, "etag"), "\"p1\"");
        assert_eq!(hdr(&h, "cache-control"), "private");
    }
    let (s, _, b) = get_with(&p, "/me", &[auth, ("if-none-match", "\"other\"")]).await;
    assert_eq!((s, b.len() > 4000), (200, true));
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_on_a_too_large_answer_becomes_a_304() {
    let origin = Origin::fixed(
        &json_body(64 * 1024, "big"),
        &[
            ("last-modified", LAST_MODIFIED),
            ("cache-control", "max-age=60"),
        ],
    )
    .await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.max_object_size = bytesize::ByteSize::kib(8))
        .start()
        .await;
    let (s, h, b) = get_with(&p, "/big", &[("if-modified-since", LAST_MODIFIED)]).await;
    assert_eq!((s, b.len()), (304, 0), "{h:?}");
    let (s, _, b) = get(&p, "/big").await;
    assert_eq!((s, b.len() > 60_000), (200, true));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_known_to_be_pass_forwards_the_clients_conditionals() {
    let origin = validating(PRIVATE).await;
    let p = proxy(&origin).await;
    // An ordinary request: the private answer marks the key pass.
    let (s, _, _) = get(&p, "/shared").await;
    assert_eq!(s, 200);
    let (s, h, b) = get_with(&p, "/shared", &[("if-none-match", "\"p1\"")]).await;
    assert_eq!((s, b.len()), (304, 0));
    assert_eq!(hdr(&h, "x-cache"), "PASS");
    assert_eq!(
        origin.last().header("if-none-match"),
        "\"p1\"",
        "the origin answered the 304"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypassed_and_per_credential_routes_forward_the_clients_conditionals() {
    let origin = validating(&[("etag", "\"p1\""), ("cache-control", "max-age=60")]).await;
    let p = ProxyBuilder::new(&origin)
        .route(r#"path = "/live", cache = false"#)
        .config(|c| c.cache.credentialed = apicache::config::Credentialed::Pass)
        .start()
        .await;
    let (s, h, _) = get_with(&p, "/live", &[("if-none-match", "\"p1\"")]).await;
    assert_eq!(s, 304, "{h:?}");
    assert_eq!(origin.last().header("if-none-match"), "\"p1\"");
    let auth = ("authorization", "Bearer user-1");
    let (s, _, _) = get_with(&p, "/other", &[auth, ("if-none-match", "\"p1\"")]).await;
    assert_eq!(s, 304);
    assert_eq!(origin.last().header("if-none-match"), "\"p1\"");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_made_from_an_unstored_answer_keeps_the_origins_own_fields() {
    const ROLLING: &[(&str, &str)] = &[
        ("etag", "\"p1\""),
        ("cache-control", "private"),
        ("set-cookie", "session=renewed"),
        ("link", "</next>; rel=next"),
    ];
    let origin = Origin::start(|_| Reply::ok(json_body(4096, "private")).headers(ROLLING)).await;
    let p = proxy(&origin).await;
    let auth = ("authorization", "Bearer user-1");
    let (s, h, b) = get_with(&p, "/me", &[auth, ("if-none-match", "\"p1\"")]).await;
    assert_eq!((s, b.is_empty()), (304, true));
    assert_eq!(hdr(&h, "set-cookie"), "session=renewed");
    assert_eq!(hdr(&h, "link"), "</next>; rel=next");
    assert!(!h.contains_key("content-type"));
    p.shutdown().await;
}
