//! Serving stale: soft purges, stale-while-revalidate, stale-if-error.

mod support;
use support::*;

use std::time::Duration;

use apicache::Running;
use tokio::task::JoinSet;

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
    let h = assert_get(&p, "/r", "REVALIDATED", &body("/r")).await;
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
    assert_get(&p, "/r", "REVALIDATED", &body("/r")).await;
    assert_get(&p, "/q", "REVALIDATED", &body("/q")).await;
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
    p.clock().advance(Duration::from_millis(2100));
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
    p.clock().advance(Duration::from_millis(2100));
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
    p.clock().advance(Duration::from_millis(2100));

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
    p.clock().advance(Duration::from_millis(3100));

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
