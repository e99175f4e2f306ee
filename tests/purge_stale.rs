//! Purges (tag, URL, all, soft), the admin API, stale-while-revalidate and stale-if-error, over real HTTP.

mod support;
use support::*;

use std::time::Duration;

use apicache::Running;
use bytesize::ByteSize;
use tokio::task::JoinSet;

/// One request in a table: method, path, extra headers.
type Attempt<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

// One tag purge removes a product from every list and page that carried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_purge_removes_product_from_every_page() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    let tagged = ["/products/12345", "/categories/17?page=2", "/search?q=x"];
    for path in tagged.iter().chain(["/products/999"].iter()) {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
        assert_get(&p, path, "HIT", &shop_page(path)).await;
    }
    assert_eq!(origin.count(), 4);

    assert_eq!(purge(&p, "POST", "/purge/prod-12345", &[]).await, 3);
    for path in tagged {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
    }
    assert_eq!(origin.count(), 7, "the three tagged pages refetched");
    for path in tagged {
        assert_eq!(origin.count_for(path), 2, "{path}");
        assert_get(&p, path, "HIT", &shop_page(path)).await;
    }
    assert_get(&p, "/products/999", "HIT", &shop_page("/products/999")).await;
    assert_eq!(origin.count(), 7);

    // Purging the tag again finds only the refetched copies; an unknown tag finds nothing.
    assert_eq!(purge(&p, "POST", "/purge/prod-12345", &[]).await, 3);
    assert_eq!(purge(&p, "POST", "/purge/prod-77", &[]).await, 0);
    p.shutdown().await;
}

// `POST /purge` with a Surrogate-Key header list purges every named tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_key_header_purges_several_tags() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    for path in ["/a", "/b", "/ab", "/c"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
        assert_get(&p, path, "HIT", &shop_page(path)).await;
    }
    // `/ab` carries both tags but is one entry: counted once.
    assert_eq!(
        purge(&p, "POST", "/purge", &[("surrogate-key", "a, b")]).await,
        3
    );
    for path in ["/a", "/b", "/ab"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
    }
    assert_get(&p, "/c", "HIT", &shop_page("/c")).await;
    assert_eq!(origin.count(), 7);

    // Space separated, and several header lines, work the same way.
    let (status, _, body) = admin_send(
        &p,
        "POST",
        "/purge",
        &[
            ("surrogate-key", "a"),
            ("surrogate-key", "c"),
            ("authorization", BEARER),
        ],
    )
    .await;
    assert_eq!((status, text(&body).as_str()), (200, "{\"purged\":3}"));
    for path in ["/a", "/ab", "/c"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
    }
    assert_get(&p, "/b", "HIT", &shop_page("/b")).await;

    // Malformed purge requests are refused and purge nothing.
    let (status, _, _) = admin_send(&p, "POST", "/purge", &[("authorization", BEARER)]).await;
    assert_eq!(status, 400, "no Surrogate-Key header");
    let many: Vec<String> = (0..257).map(|i| format!("k{i}")).collect();
    let many = many.join(" ");
    let (status, _, _) = admin_send(
        &p,
        "POST",
        "/purge",
        &[("surrogate-key", &many), ("authorization", BEARER)],
    )
    .await;
    assert_eq!(status, 400, "257 keys");
    let exactly: Vec<String> = (0..255)
        .map(|i| format!("k{i}"))
        .chain(["b".into()])
        .collect();
    assert_eq!(
        purge(
            &p,
            "POST",
            "/purge",
            &[("surrogate-key", &exactly.join(" "))]
        )
        .await,
        2,
        "256 keys are allowed (`b` is on /b and the refetched /ab)"
    );
    let (status, _, _) = admin_send(&p, "POST", "/purge/", &[("authorization", BEARER)]).await;
    assert_eq!(status, 400, "empty key");
    assert_get(&p, "/c", "HIT", &shop_page("/c")).await;
    p.shutdown().await;
}

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

// URL purge: unnormalized target, every Vary variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_purge_normalizes_and_removes_all_vary_variants() {
    let origin = Origin::start(|s| {
        let lang = s.header("accept-language");
        Reply::ok(format!("{{\"lang\":\"{lang}\"}}"))
            .header("cache-control", "max-age=300")
            .header("vary", "Accept-Language")
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    let fetch = |lang: &'static str| {
        let p = &p;
        async move {
            let (status, h, b) = get_with(p, "/x?a=1&b=2", &[("accept-language", lang)]).await;
            assert_eq!(status, 200);
            assert_eq!(text(&b), format!("{{\"lang\":\"{lang}\"}}"));
            hdr(&h, "x-cache").to_string()
        }
    };
    assert_eq!(fetch("en").await, "MISS");
    assert_eq!(fetch("fr").await, "MISS");
    assert_eq!(fetch("en").await, "HIT");
    assert_eq!(fetch("fr").await, "HIT");
    // An unrelated URL survives.
    let (_, h, _) = get(&p, "/y").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(origin.count(), 3);

    // Both variants live in one entry: one entry purged.
    assert_eq!(purge(&p, "PURGE", "/x?b=2&a=1", &[]).await, 1);
    assert_eq!(fetch("en").await, "MISS");
    assert_eq!(fetch("fr").await, "MISS");
    assert_eq!(origin.count(), 5, "both variants refetched");
    assert_eq!(fetch("en").await, "HIT");
    assert_eq!(fetch("fr").await, "HIT");
    let (_, h, _) = get(&p, "/y").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    // A URL nothing is stored under purges nothing.
    assert_eq!(purge(&p, "PURGE", "/x?a=1", &[]).await, 0);
    assert_eq!(fetch("en").await, "HIT");
    p.shutdown().await;
}

// `POST /purge-all` empties the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_empties_the_cache() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    for path in ["/a", "/b", "/c"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
        assert_get(&p, path, "HIT", &shop_page(path)).await;
    }
    purge(&p, "POST", "/purge-all", &[]).await;
    let st = stats(&p).await;
    assert_eq!(st["objects"], 0, "{st}");
    assert_eq!(st["tags"], 0, "{st}");
    for path in ["/a", "/b", "/c"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
    }
    assert_eq!(origin.count(), 6);
    p.shutdown().await;
}

// The `{"purged":N}` of a purge-all counts what it removed, even right after the fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_reports_entries_removed() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    for path in ["/a", "/b", "/c"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
    }
    assert_eq!(purge(&p, "POST", "/purge-all", &[]).await, 3);
    p.shutdown().await;
}

// After a /stats (which syncs the store), purge-all counts right and empties the tag index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_then_stats_show_nothing_stored() {
    let origin = Origin::start(shop_reply).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    for path in ["/a", "/b", "/c"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
    }
    let st = stats(&p).await;
    assert_eq!(st["objects"], 3, "{st}");
    assert_eq!(purge(&p, "POST", "/purge-all", &[]).await, 3);
    let st = stats(&p).await;
    assert_eq!(st["objects"], 0, "{st}");
    assert_eq!(st["tags"], 0, "{st}");
    assert_eq!(store_view(&p).await.tag_links, 0);
    for path in ["/a", "/b", "/c"] {
        assert_get(&p, path, "MISS", &shop_page(path)).await;
        assert_get(&p, path, "HIT", &shop_page(path)).await;
    }
    assert_eq!(origin.count(), 6);
    // Tag purges work again after a purge-all.
    assert_eq!(purge(&p, "POST", "/purge/a", &[]).await, 1);
    assert_get(&p, "/a", "MISS", &shop_page("/a")).await;
    p.shutdown().await;
}

// Soft purge, then the origin fails: the old object is served stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_serves_stale_when_origin_fails() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"v\":1}")
            .header("cache-control", "max-age=60, stale-if-error=300")
            .header("surrogate-key", "k")
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/s", "MISS", "{\"v\":1}").await;
    assert_get(&p, "/s", "HIT", "{\"v\":1}").await;
    assert_eq!(
        purge(&p, "POST", "/purge/k", &[("soft-purge", "1")]).await,
        1
    );

    origin.set_handler(|_| Reply::ok("down").status(503));
    let before = origin.count();
    let h = assert_get(&p, "/s", "STALE", "{\"v\":1}").await;
    let cs = hdr(&h, "cache-status");
    assert!(cs.contains("fwd=stale"), "{cs}");
    assert!(cs.contains("fwd-status=503"), "{cs}");
    assert_eq!(
        origin.count(),
        before + 1,
        "a soft-purged object is refreshed first"
    );
    // Still soft-purged: the next request tries the origin again and gets stale again.
    assert_get(&p, "/s", "STALE", "{\"v\":1}").await;
    assert_eq!(origin.count(), before + 2);

    // Origin back: the next request refreshes and later ones are plain hits.
    origin.set_handler(|_| {
        Reply::ok("{\"v\":2}")
            .header("cache-control", "max-age=60, stale-if-error=300")
            .header("surrogate-key", "k")
    });
    assert_get(&p, "/s", "MISS", "{\"v\":2}").await;
    assert_get(&p, "/s", "HIT", "{\"v\":2}").await;
    assert_eq!(origin.count(), before + 3);
    p.shutdown().await;
}

// Soft purge with the origin up: the next request revalidates with If-None-Match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_revalidates_when_origin_is_up() {
    let origin = Origin::start(|s| {
        let etag = format!("\"{}-v1\"", s.path_and_query.trim_start_matches('/'));
        let base = |r: Reply| {
            r.header("cache-control", "max-age=60, stale-if-error=300")
                .header("etag", &etag)
        };
        if s.header("if-none-match") == etag {
            base(Reply::ok("").status(304))
        } else {
            base(Reply::ok(format!("{{\"p\":\"{}\"}}", s.path_and_query)))
        }
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    let body = |path: &str| format!("{{\"p\":\"{path}\"}}");
    assert_get(&p, "/r", "MISS", &body("/r")).await;
    assert_get(&p, "/r", "HIT", &body("/r")).await;
    assert_eq!(origin.count(), 1);

    // URL purge with the Fastly spelling of soft purge.
    assert_eq!(
        purge(&p, "PURGE", "/r", &[("fastly-soft-purge", "1")]).await,
        1
    );
    let h = assert_get(&p, "/r", "HIT", &body("/r")).await;
    assert_eq!(origin.count(), 2, "one revalidation");
    let seen = origin.last();
    assert_eq!(seen.path_and_query, "/r");
    assert_eq!(
        seen.header("if-none-match"),
        "\"r-v1\"",
        "the revalidation carried the stored validator"
    );
    let cs = hdr(&h, "cache-status");
    assert!(cs.contains("fwd-status=304"), "{cs}");
    // Fresh again after the 304.
    assert_get(&p, "/r", "HIT", &body("/r")).await;
    assert_eq!(origin.count(), 2);

    // Soft purge-all marks everything stale; each object revalidates once.
    assert_get(&p, "/q", "MISS", &body("/q")).await;
    assert_eq!(
        purge(&p, "POST", "/purge-all", &[("soft-purge", "1")]).await,
        2
    );
    assert_get(&p, "/r", "HIT", &body("/r")).await;
    assert_get(&p, "/q", "HIT", &body("/q")).await;
    assert_eq!(origin.count(), 5);
    assert!(origin.last().headers.contains_key("if-none-match"));
    assert_get(&p, "/r", "HIT", &body("/r")).await;
    assert_get(&p, "/q", "HIT", &body("/q")).await;
    assert_eq!(origin.count(), 5);
    // Soft purge only with the value 1.
    assert_eq!(purge(&p, "PURGE", "/r", &[("soft-purge", "0")]).await, 1);
    assert_get(&p, "/r", "MISS", &body("/r")).await;
    p.shutdown().await;
}

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

/// The "old" version goes stale after 1 s; the "new" one stays fresh, so after the refresh a STALE
/// answer can only be the old body and a HIT only the new one, however slow the machine.
fn swr_reply(version: &'static str) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let cc = if version == "old" {
        "max-age=1, stale-while-revalidate=30"
    } else {
        "max-age=300, stale-while-revalidate=30"
    };
    move |s| {
        Reply::ok(format!(
            "{{\"v\":\"{version}\",\"p\":\"{}\"}}",
            s.path_and_query
        ))
        .header("cache-control", cc)
        .header("etag", &format!("\"{version}\""))
    }
}

fn swr_body(version: &str, path: &str) -> String {
    format!("{{\"v\":\"{version}\",\"p\":\"{path}\"}}")
}

/// Fire 50 concurrent GETs at a stale-while-revalidate object whose origin now has a new version;
/// check what each client got, wait (bounded) for the refresh to land, and return
/// (stale answers, origin requests for `path` caused by the burst).
async fn swr_burst(p: &Running, origin: &Origin, path: &str) -> (usize, usize) {
    let before = origin.count_for(path);
    let (old, new) = (swr_body("old", path), swr_body("new", path));
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let (addr, path) = (p.addr, path.to_string());
        set.spawn(async move { request(addr, "GET", &path, &[], b"").await });
    }
    let mut stale = 0;
    while let Some(r) = set.join_next().await {
        let (status, h, body) = r.unwrap();
        let (cs, body) = (hdr(&h, "cache-status"), text(&body));
        assert_eq!(status, 200, "{path}");
        match hdr(&h, "x-cache") {
            "STALE" => {
                assert_eq!(body, old, "a STALE answer has the old body");
                assert!(cs.contains("fwd=stale"), "{cs}");
                assert!(cs.contains("stale-while-revalidate"), "{cs}");
                stale += 1;
            }
            "HIT" => assert_eq!(body, new, "a HIT after the refresh has the new body"),
            other => panic!("{path}: X-Cache {other} ({cs}) during stale-while-revalidate"),
        }
    }
    assert!(
        stale >= 1,
        "{path}: the refresh is triggered by a stale answer"
    );

    // Let the background refresh land (bounded: ~2 s).
    let mut refreshed = false;
    for _ in 0..100 {
        if stored_body(p, path)
            .await
            .is_some_and(|b| b == new.as_bytes())
        {
            refreshed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refreshed,
        "{path}: the background refresh stored the new body"
    );
    assert_get(p, path, "HIT", &new).await;
    // Give any further (unwanted) refresh a moment to reach the origin.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (stale, origin.count_for(path) - before)
}

// stale-while-revalidate: a burst of requests on a stale object is answered at once with the old
// body, one background refresh (collapsed) brings the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_burst_then_refreshes() {
    let origin = Origin::start(swr_reply("old")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/swr", "MISS", &swr_body("old", "/swr")).await;
    assert_get(&p, "/swr", "HIT", &swr_body("old", "/swr")).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set_handler(swr_reply("new"));
    let (stale, refreshes) = swr_burst(&p, &origin, "/swr").await;
    // Exactly one is asserted by `stale_while_revalidate_refreshes_exactly_once`.
    assert!(
        refreshes >= 1 && refreshes <= stale && refreshes < 50,
        "{refreshes} refreshes for {stale} stale answers"
    );
    p.shutdown().await;
}

// The refresh for a burst of stale requests happens exactly once (several objects, to catch the race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_refreshes_exactly_once() {
    let origin = Origin::start(swr_reply("old")).await;
    let p = proxy(&origin).await;
    let paths: Vec<String> = (0..8).map(|i| format!("/swr/{i}")).collect();
    for path in &paths {
        assert_get(&p, path, "MISS", &swr_body("old", path)).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set_handler(swr_reply("new"));
    let mut extra = Vec::new();
    for path in &paths {
        let (stale, refreshes) = swr_burst(&p, &origin, path).await;
        if refreshes != 1 {
            // Which stored object each origin request started from (its If-None-Match).
            let validators: Vec<String> = origin
                .seen()
                .iter()
                .filter(|s| &s.path_and_query == path)
                .map(|s| {
                    let inm = s.headers.get("if-none-match");
                    inm.map_or("-", |v| v.to_str().unwrap()).to_string()
                })
                .collect();
            extra.push(format!(
                "{path}: {refreshes} refreshes ({stale} stale answers), If-None-Match: {validators:?}"
            ));
        }
    }
    assert!(extra.is_empty(), "{extra:?}");
    p.shutdown().await;
}

fn sie_reply(body: &'static str) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |_| {
        Reply::ok(body)
            .header("cache-control", "max-age=1, stale-if-error=300")
            // No pooled connection may outlive stop(): every exchange uses its own connection.
            .header("connection", "close")
    }
}

// stale-if-error covers an origin 5xx, a timeout and a refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_covers_5xx_timeout_and_refused() {
    let origin = Origin::start(sie_reply("{\"v\":1}")).await;
    let p = proxy(&origin).await;
    assert_get(&p, "/sie", "MISS", "{\"v\":1}").await;
    assert_get(&p, "/sie", "HIT", "{\"v\":1}").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // 5xx from the origin.
    origin.set_handler(|_| Reply::ok("boom").status(503).header("connection", "close"));
    let before = origin.count();
    let h = assert_get(&p, "/sie", "STALE", "{\"v\":1}").await;
    let cs = hdr(&h, "cache-status");
    assert!(
        cs.contains("fwd=stale") && cs.contains("fwd-status=503"),
        "{cs}"
    );
    assert!(cs.contains("stale-if-error"), "{cs}");
    assert_eq!(origin.count(), before + 1);
    origin.set_handler(|_| Reply::ok("boom").status(500).header("connection", "close"));
    let h = assert_get(&p, "/sie", "STALE", "{\"v\":1}").await;
    assert!(hdr(&h, "cache-status").contains("fwd-status=500"));

    // The origin answers after the proxy's 1s timeout.
    origin.set_handler(|_| {
        Reply::ok("{\"v\":\"late\"}")
            .header("cache-control", "max-age=300")
            .header("connection", "close")
            .delay(Duration::from_millis(1600))
    });
    let h = assert_get(&p, "/sie", "STALE", "{\"v\":1}").await;
    let cs = hdr(&h, "cache-status");
    assert!(cs.contains("fwd-status=504"), "{cs}");

    // The origin is gone: connection refused.
    origin.stop().await;
    let before = origin.count();
    let h = assert_get(&p, "/sie", "STALE", "{\"v\":1}").await;
    let cs = hdr(&h, "cache-status");
    assert!(cs.contains("fwd-status=502"), "{cs}");
    assert_get(&p, "/sie", "STALE", "{\"v\":1}").await;
    assert_eq!(origin.count(), before);
    p.shutdown().await;
}

// Once the stale-if-error window has passed, the client gets the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_window_expires() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"v\":1}")
            .header("cache-control", "max-age=1, stale-if-error=1")
            // A validator keeps the stale object in the store, so the window itself is what is tested.
            .header("etag", "\"v1\"")
            .header("connection", "close")
    })
    .await;
    let p = proxy(&origin).await;
    assert_get(&p, "/gone", "MISS", "{\"v\":1}").await;
    // Whole seconds: age 3 > max-age 1 + stale-if-error 1.
    tokio::time::sleep(Duration::from_millis(3100)).await;

    origin.set_handler(|_| Reply::ok("boom").status(503).header("connection", "close"));
    let (status, h, body) = get(&p, "/gone").await;
    assert_eq!(status, 503, "{}", text(&body));
    assert_ne!(hdr(&h, "x-cache"), "STALE");
    assert_eq!(text(&body), "boom");

    origin.stop().await;
    let (status, h, _) = get(&p, "/gone").await;
    assert!((502..=504).contains(&status), "got {status}");
    assert_ne!(hdr(&h, "x-cache"), "STALE");
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
        let i = key.trim_start_matches("GET /obj/");
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
