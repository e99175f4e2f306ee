//! Hard purges on the admin port: by surrogate key, by URL, everything.

mod support;
use support::*;

use std::time::Duration;

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

// A purge that arrives while a fill is in flight wins: what the fill brings is not stored fresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_fill_wins() {
    let origin = Origin::start(|s| {
        Reply::ok(format!("v{}", s.header("x-n")))
            .header("cache-control", CACHEABLE)
            .header("surrogate-key", "product-1")
            .delay(Duration::from_millis(300))
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    // (how the purge names the object, soft)
    type Purge<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
    let purges: [Purge<'_>; 3] = [
        ("PURGE", "/x0", &[]),
        ("POST", "/purge", &[("surrogate-key", "product-1")]),
        ("POST", "/purge-all", &[]),
    ];
    for (i, (method, path, headers)) in purges.iter().enumerate() {
        let target = format!("/x{i}");
        let (addr, t) = (p.addr, target.clone());
        let fill = tokio::spawn(async move { request(addr, "GET", &t, &[], b"").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        purge(&p, method, path, headers).await;
        let (status, h, _) = fill.await.unwrap();
        assert_eq!((status, hdr(&h, "x-cache")), (200, "MISS"), "purge {i}");
        // The next request goes to the origin, not to the pre-purge copy.
        let before = origin.count();
        let (_, h, _) = get(&p, &target).await;
        assert_eq!(
            hdr(&h, "x-cache"),
            "MISS",
            "purge {i}: pre-purge data served"
        );
        assert_eq!(origin.count(), before + 1);
    }
    // A soft purge stores the fill's answer stale: the next request revalidates.
    let fill = tokio::spawn(request(p.addr, "GET", "/s", &[], b""));
    tokio::time::sleep(Duration::from_millis(100)).await;
    purge(&p, "PURGE", "/s", &[("soft-purge", "1")]).await;
    fill.await.unwrap();
    let (_, h, _) = get(&p, "/s").await;
    assert_ne!(hdr(&h, "x-cache"), "HIT", "{h:?}");
    p.shutdown().await;
}
