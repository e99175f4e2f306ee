//! What each answer says happened: COLLAPSED for a request that waited on another one's origin
//! fetch, REVALIDATED for a stored response the origin confirmed, in X-Cache, Cache-Status and
//! the metrics, so a hit ratio counts only answers the origin had no part in.

mod support;
use support::*;

use std::time::Duration;

/// `n` clients, each with its own keep-alive connection already open, so a burst reaches
/// apicache at once instead of waiting on `n` handshakes.
async fn warm_clients(p: &apicache::Running, n: usize) -> Vec<reqwest::Client> {
    let mut clients = Vec::new();
    for _ in 0..n {
        let c = client();
        let r = c.get(url(p, "/warm")).send().await.unwrap();
        r.bytes().await.unwrap();
        clients.push(c);
    }
    clients
}

/// Send `GET path` on every client at once; the X-Cache and Cache-Status of each answer.
async fn burst(
    p: &apicache::Running,
    clients: &[reqwest::Client],
    path: &str,
) -> Vec<(String, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in clients {
        let (c, u) = (c.clone(), url(p, path));
        tasks.spawn(async move {
            let r = c.get(u).send().await.unwrap();
            assert_eq!(r.status(), 200);
            let h = r.headers().clone();
            r.bytes().await.unwrap();
            (
                hdr(&h, "x-cache").to_string(),
                hdr(&h, "cache-status").to_string(),
            )
        });
    }
    let mut out = Vec::new();
    while let Some(r) = tasks.join_next().await {
        out.push(r.unwrap());
    }
    out
}

fn count(results: &[(String, String)], x_cache: &str) -> usize {
    results.iter().filter(|(x, _)| x == x_cache).count()
}

/// One line of `/metrics` for `result` on the `none` route.
async fn requests_metric(p: &apicache::Running, result: &str) -> u64 {
    let (_, _, body) = admin_send(p, "GET", "/metrics", &[("authorization", BEARER)]).await;
    let want = format!("apicache_requests_total{{result=\"{result}\",route=\"none\"}} ");
    let text = text(&body);
    let line = text.lines().find(|l| l.starts_with(&want));
    line.unwrap_or_else(|| panic!("no {want}\n{text}"))[want.len()..]
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_requests_one_origin_fetch_are_one_miss_and_nine_collapsed() {
    let origin = Origin::start(|s| {
        if s.path_and_query == "/warm" {
            return Reply::ok("{}").header("cache-control", "no-store");
        }
        // Long enough for every waiter's request (on an open connection) to join the fetch.
        Reply::ok(format!("{{\"path\":\"{}\"}}", s.path_and_query))
            .header("cache-control", CACHEABLE)
            .delay(Duration::from_millis(1000))
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .admin()
        .config(|c| c.origin.timeout = Duration::from_secs(10))
        .start()
        .await;
    let clients = warm_clients(&p, 10).await;
    let before = origin.count();
    let warm = stats(&p).await;
    let results = burst(&p, &clients, "/burst").await;
    assert_eq!(origin.count(), before + 1, "one origin fetch");
    assert_eq!(
        (count(&results, "MISS"), count(&results, "COLLAPSED")),
        (1, 9),
        "{results:?}"
    );
    for (x, cs) in &results {
        let want = match x.as_str() {
            "MISS" => "apicache; fwd=uri-miss; stored",
            _ => "apicache; fwd=uri-miss; stored; collapsed",
        };
        assert_eq!(cs, want);
    }
    assert_get(&p, "/burst", "HIT", "{\"path\":\"/burst\"}").await;

    let st = stats(&p).await;
    let names = [
        "requests",
        "hits",
        "misses",
        "collapsed",
        "revalidated",
        "stale",
    ];
    let counts = names.map(|n| stat(&st, n) - stat(&warm, n));
    assert_eq!(counts, [11, 1, 1, 9, 0, 0], "{st}");
    assert_eq!(stat(&warm, "requests"), 10, "{warm}");
    assert_eq!(st["hit_ratio"].as_f64(), Some(1.0 / 21.0), "{st}");
    assert_eq!(requests_metric(&p, "collapsed").await, 9);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_304_is_revalidated_not_a_hit() {
    // Lifetime 0 with a validator: every use asks the origin, which answers 304.
    let origin = Origin::start(|s| {
        if s.header("if-none-match") == "\"v1\"" {
            Reply::not_modified(&[("etag", "\"v1\""), ("cache-control", "max-age=0")])
        } else {
            Reply::ok("{\"v\":1}")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=0")
        }
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/r", "MISS", "{\"v\":1}").await;
    for i in 1..=3 {
        let h = assert_get(&p, "/r", "REVALIDATED", "{\"v\":1}").await;
        assert_eq!(origin.count(), 1 + i);
        let cs = hdr(&h, "cache-status");
        assert!(
            cs.starts_with("apicache; fwd=stale; fwd-status=304; ttl="),
            "{cs}"
        );
        assert!(cs.ends_with("; stored"), "{cs}");
    }
    let st = stats(&p).await;
    assert_eq!(
        [
            "hits",
            "misses",
            "revalidated",
            "revalidations",
            "origin_requests"
        ]
        .map(|n| stat(&st, n)),
        [0, 1, 3, 3, 4],
        "{st}"
    );
    // Four requests, four origin requests: no hit at all.
    assert_eq!(st["hit_ratio"].as_f64(), Some(0.0), "{st}");
    assert_eq!(requests_metric(&p, "revalidated").await, 3);
    assert_eq!(requests_metric(&p, "hit").await, 0);
    p.shutdown().await;
}

// A client's own no-cache is revalidated the same way; a stale-while-revalidate answer stays
// STALE (the client got the stale copy; the refresh runs behind it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_no_cache_revalidates_and_background_refresh_stays_stale() {
    let origin = Origin::start(|s| {
        // Lifetimes long enough that a slow machine cannot age the refreshed copy out in real time.
        let cc = "max-age=10, stale-while-revalidate=60";
        if s.header("if-none-match") == "\"v1\"" {
            Reply::not_modified(&[("etag", "\"v1\""), ("cache-control", cc)])
        } else {
            Reply::ok("{\"v\":1}")
                .header("etag", "\"v1\"")
                .header("cache-control", cc)
        }
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/n", "MISS", "{\"v\":1}").await;
    let (_, h, _) = get_with(&p, "/n", &[("cache-control", "no-cache")]).await;
    assert_eq!(hdr(&h, "x-cache"), "REVALIDATED");
    assert!(
        hdr(&h, "cache-status").starts_with("apicache; fwd=request; fwd-status=304;"),
        "{h:?}"
    );
    p.clock().advance(Duration::from_millis(10_500));
    let h = assert_get(&p, "/n", "STALE", "{\"v\":1}").await;
    assert!(hdr(&h, "cache-status").contains("detail=stale-while-revalidate"));
    p.settle().await;
    assert_eq!(origin.count(), 3, "the background refresh ran");
    assert_get(&p, "/n", "HIT", "{\"v\":1}").await;
    let st = stats(&p).await;
    assert_eq!(
        ["hits", "misses", "revalidated", "stale", "revalidations"].map(|n| stat(&st, n)),
        [1, 1, 1, 1, 2],
        "{st}"
    );
    p.shutdown().await;
}

// Ten requests on a stale object: the origin's one 304 is one REVALIDATED answer, the rest
// waited for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_on_a_revalidation_are_collapsed() {
    let origin = Origin::start(|s| {
        if s.path_and_query == "/warm" {
            return Reply::ok("{}").header("cache-control", "no-store");
        }
        if s.header("if-none-match") == "\"v1\"" {
            Reply::not_modified(&[("etag", "\"v1\""), ("cache-control", "max-age=60")])
                .delay(Duration::from_millis(1000))
        } else {
            Reply::ok("{\"v\":1}")
                .header("etag", "\"v1\"")
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .admin()
        .config(|c| c.origin.timeout = Duration::from_secs(10))
        .start()
        .await;
    assert_get(&p, "/s", "MISS", "{\"v\":1}").await;
    p.clock().advance(Duration::from_millis(1500));
    let clients = warm_clients(&p, 10).await;
    let before = origin.count();
    let results = burst(&p, &clients, "/s").await;
    assert_eq!(origin.count(), before + 1);
    assert_eq!(
        (count(&results, "REVALIDATED"), count(&results, "COLLAPSED")),
        (1, 9),
        "{results:?}"
    );
    for (x, cs) in &results {
        assert!(
            cs.starts_with("apicache; fwd=stale; fwd-status=304;"),
            "{cs}"
        );
        assert_eq!(
            cs.ends_with("; stored; collapsed"),
            x == "COLLAPSED",
            "{cs}"
        );
    }
    p.shutdown().await;
}

// A HEAD whose 200 confirms the stored GET response (RFC 9111 §4.3.5) refreshed it without a
// body: REVALIDATED too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_refreshes_the_stored_response_is_revalidated() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"v\":1}")
            .header("etag", "\"v1\"")
            .header("cache-control", "max-age=1")
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    assert_get(&p, "/h", "MISS", "{\"v\":1}").await;
    p.clock().advance(Duration::from_millis(1500));
    let (s, h, _) = head_with(&p, "/h", &[]).await;
    assert_eq!(s, 200);
    assert_eq!(origin.last().method, "HEAD");
    assert_eq!(hdr(&h, "x-cache"), "REVALIDATED", "{h:?}");
    let cs = hdr(&h, "cache-status");
    assert!(
        cs.starts_with("apicache; fwd=stale; fwd-status=200; ttl="),
        "{cs}"
    );
    assert!(cs.ends_with("; stored"), "{cs}");
    assert_get(&p, "/h", "HIT", "{\"v\":1}").await;
    p.shutdown().await;
}
