//! Surrogate keys: route tag templates, the tag index under eviction, Surrogate-* headers to clients.

mod support;
use support::*;

use bytesize::ByteSize;

// Route tag templates (`account-{id}`) are purgeable like origin surrogate keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_tag_template_purges_account() {
    let origin = Origin::start(|s| {
        Reply::ok(format!("{{\"account\":\"{}\"}}", s.path_and_query))
            .header("cache-control", "max-age=300")
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .admin()
        .route(r#"path = "/accounts/{id}", tags = ["account-{id}"]"#)
        .start()
        .await;
    let body = |id: &str| format!("{{\"account\":\"/accounts/{id}\"}}");
    for id in ["A1", "B2"] {
        assert_get(&p, &format!("/accounts/{id}"), "MISS", &body(id)).await;
        assert_get(&p, &format!("/accounts/{id}"), "HIT", &body(id)).await;
    }
    assert_eq!(purge(&p, "POST", "/purge/account-A1", &[]).await, 1);
    assert_get(&p, "/accounts/A1", "MISS", &body("A1")).await;
    assert_get(&p, "/accounts/B2", "HIT", &body("B2")).await;
    assert_eq!(origin.count(), 3);
    assert_eq!(
        purge(&p, "POST", "/purge", &[("surrogate-key", "account-B2")]).await,
        1
    );
    assert_get(&p, "/accounts/B2", "MISS", &body("B2")).await;
    p.shutdown().await;
}

// Under eviction pressure the tag index holds exactly the live entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_index_stays_exact_under_eviction() {
    let origin = Origin::start(|s| {
        let i = s.path_and_query.trim_start_matches("/obj/").to_string();
        Reply::ok(json_body(4096, &i))
            .header("cache-control", "max-age=300")
            .header("surrogate-key", &format!("t-{i} all"))
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .admin()
        .config(|c| {
            c.cache.max_size = ByteSize::kib(256);
            c.cache.max_object_size = ByteSize::kib(64);
        })
        .start()
        .await;
    for i in 0..400 {
        let (s, _, _) = get(&p, &format!("/obj/{i}")).await;
        assert_eq!(s, 200);
    }
    assert_eq!(origin.count(), 400);
    let view = store_view(&p).await;
    let entries = view.entries;
    assert!(entries > 0 && entries < 400, "{entries} entries");
    assert!(
        view.weighted_size <= 256 * 1024,
        "weighted size {}",
        view.weighted_size
    );
    let all = tagged_keys(&p, "all");
    assert_eq!(all.len() as u64, entries, "every key under `all` is live");
    // Each live entry carries exactly three links: t-<i>, all and its URL tag.
    assert_eq!(view.tag_links as u64, 3 * entries, "no dangling links");
    for key in &all {
        let i = key.rsplit("/obj/").next().unwrap();
        assert_eq!(tagged_keys(&p, &format!("t-{i}")).len(), 1, "{key}");
    }

    assert_eq!(purge(&p, "POST", "/purge/all", &[]).await, entries);
    let view = store_view(&p).await;
    assert_eq!(view.entries, 0);
    assert!(tagged_keys(&p, "all").is_empty());
    assert_eq!(view.tag_links, 0);
    p.shutdown().await;
}

fn surrogate_reply(s: &Seen) -> Reply {
    let r = Reply::ok("{\"k\":1}")
        .header("surrogate-key", "k1 k2")
        .header("surrogate-control", "max-age=60");
    if s.method == "GET" {
        r.header("cache-control", "max-age=5")
    } else {
        r
    }
}

// Surrogate-Key and Surrogate-Control never reach clients by default (but still act).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_headers_stripped_by_default() {
    let origin = Origin::start(surrogate_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    for xc in ["MISS", "HIT"] {
        let h = assert_get(&p, "/sk", xc, "{\"k\":1}").await;
        assert!(!h.contains_key("surrogate-key"), "{xc}: {h:?}");
        assert!(!h.contains_key("surrogate-control"), "{xc}: {h:?}");
    }
    let (_, h, _) = post(&p, "/sk-post", b"").await;
    assert_eq!(hdr(&h, "x-cache"), "PASS");
    assert!(!h.contains_key("surrogate-key"), "{h:?}");
    assert!(!h.contains_key("surrogate-control"), "{h:?}");
    // The stripped keys were still indexed.
    assert_eq!(purge(&p, "POST", "/purge/k2", &[]).await, 1);
    assert_get(&p, "/sk", "MISS", "{\"k\":1}").await;
    p.shutdown().await;
}

// `expose_surrogate_keys = true` passes Surrogate-Key and Surrogate-Control on (for debugging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_keys_exposed_when_configured() {
    let origin = Origin::start(surrogate_reply).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.expose_surrogate_keys = true)
        .start()
        .await;
    for xc in ["MISS", "HIT"] {
        let h = assert_get(&p, "/sk", xc, "{\"k\":1}").await;
        assert_eq!(hdr(&h, "surrogate-key"), "k1 k2", "{xc}");
        assert_eq!(hdr(&h, "surrogate-control"), "max-age=60", "{xc}");
    }
    let (_, h, _) = post(&p, "/sk-post", b"").await;
    assert_eq!(hdr(&h, "surrogate-key"), "k1 k2");
    p.shutdown().await;
}
