//! Request collapsing: one origin request for a cold burst, no queueing behind uncacheable keys, waiters and Vary.

mod support;
use support::*;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_cold_requests_make_one_origin_request() {
    let origin = Origin::start(|_| {
        Reply::ok(json_body(4096, "c"))
            .header("cache-control", CACHEABLE)
            .delay(Duration::from_millis(200))
    })
    .await;
    let p = proxy(&origin).await;
    let mut tasks = Vec::new();
    for _ in 0..100 {
        tasks.push(tokio::spawn(request(p.addr, "GET", "/cold", &[], b"")));
    }
    for t in tasks {
        let (s, _, body) = t.await.unwrap();
        assert_eq!(s, 200);
        assert_eq!(body.len(), json_body(4096, "c").len());
    }
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncacheable_key_does_not_queue_behind_one_request() {
    let origin = Origin::start(|_| {
        Reply::ok("{}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(300))
    })
    .await;
    let p = proxy(&origin).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        tasks.push(tokio::spawn(request(p.addr, "GET", "/private", &[], b"")));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().0, 200);
    }
    // The leader's answer was not storable: each waiter went to the origin itself.
    assert_eq!(origin.count(), 10);
    let (_, h, _) = get(&p, "/private").await;
    assert_eq!(hdr(&h, "x-cache"), "PASS", "remembered as pass");
    assert!(hdr(&h, "cache-status").contains("detail=no-store"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_never_gets_another_variants_stale_copy() {
    let origin = Origin::start(|s| {
        let lang = s.header("accept-language");
        Reply::ok(format!("{{\"lang\":\"{lang}\"}}"))
            .header("cache-control", "public, max-age=1, stale-if-error=300")
            .header("vary", "Accept-Language")
    })
    .await;
    let p = proxy(&origin).await;
    get_with(&p, "/s", &[("accept-language", "en")]).await;
    p.clock().advance(Duration::from_millis(2100));
    origin.set_handler(|_| {
        Reply::ok("down")
            .status(503)
            .delay(Duration::from_millis(400))
    });
    let en = tokio::spawn(request(
        p.addr,
        "GET",
        "/s",
        &[("accept-language", "en")],
        b"",
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, _, body) = get_with(&p, "/s", &[("accept-language", "fr")]).await;
    assert_ne!(
        text(&body),
        "{\"lang\":\"en\"}",
        "fr must not get en's stale copy"
    );
    assert!(status >= 500, "{status}");
    let (_, h, en_body) = en.await.unwrap();
    assert_eq!(
        (hdr(&h, "x-cache"), text(&en_body).as_str()),
        ("STALE", "{\"lang\":\"en\"}")
    );
    p.shutdown().await;
}

// A cold burst over many Vary variants collapses per variant once the URL's Vary is known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_burst_over_vary_variants_collapses_per_variant() {
    let origin = Origin::start(|s| {
        let v = s.header("x-variant");
        Reply::ok(format!("variant {v}"))
            .header("cache-control", CACHEABLE)
            .header("vary", "X-Variant")
            .delay(Duration::from_millis(150))
    })
    .await;
    // Origin timeouts far above the harness's 1 s: a loaded machine must not turn a slow
    // answer into a 504 (this test counts origin requests, not time).
    let p = ProxyBuilder::new(&origin)
        .config(|c| {
            c.origin.timeout = Duration::from_secs(30);
            c.origin.connect_timeout = Duration::from_secs(30);
        })
        .start()
        .await;
    // 1,000 requests at once: ten h2c connections of 100 streams (few sockets, all concurrent).
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..10 {
        let client = reqwest::Client::builder()
            .http2_prior_knowledge()
            .no_proxy()
            .build()
            .unwrap();
        for i in 0..100 {
            let (client, url) = (client.clone(), url(&p, "/v"));
            let v = (c * 100 + i) % 10;
            tasks.spawn(async move {
                let r = client
                    .get(url)
                    .header("x-variant", v.to_string())
                    .send()
                    .await;
                (v, r.unwrap().text().await.unwrap())
            });
        }
    }
    while let Some(r) = tasks.join_next().await {
        let (v, body) = r.unwrap();
        assert_eq!(body, format!("variant {v}"));
    }
    let n = origin.count();
    eprintln!("{n} origin requests for 1000 requests over 10 variants");
    assert!(n <= 20, "{n} origin requests for 10 variants");
    p.shutdown().await;
}
