//! Every error answer carries Cache-Status: the origin's status (`fwd-status`) when the origin
//! failed, and the cause as `detail` (refused, timeout, reset, closed, …); requests refused before
//! the cache say why too.

mod support;
use support::*;

use std::time::Duration;

use tokio::net::TcpListener;

/// An address where nothing listens (bound, then closed).
fn dead_origin() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A raw origin that reads each request head and then, with `reset`, resets the connection
/// (RST), or else closes it without answering.
async fn rude_origin(reset: bool) -> (String, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if read_request_head(&mut s).await && reset {
                    let _ = s.set_zero_linger();
                }
                drop(s);
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_failures_name_their_status_and_cause() {
    let p = ProxyBuilder::for_url(&dead_origin())
        .route(r#"path = "/live", cache = false"#)
        .start()
        .await;
    // (path, status, X-Cache, Cache-Status)
    let rows = [
        (
            "/down",
            502,
            "MISS",
            "apicache; fwd=uri-miss; fwd-status=502; detail=refused",
        ),
        (
            "/live",
            502,
            "PASS",
            "apicache; fwd=bypass; fwd-status=502; detail=refused",
        ),
    ];
    for (path, status, x_cache, cs) in rows {
        let (s, h, b) = get(&p, path).await;
        assert_eq!(s, status, "{path}");
        assert_eq!(hdr(&h, "x-cache"), x_cache, "{path}");
        assert_eq!(hdr(&h, "cache-status"), cs, "{path}");
        assert_eq!(hdr(&h, "cache-control"), "no-store");
        assert!(b.len() < 100);
    }
    // An unsafe method forwarded to it.
    let (s, h, _) = post(&p, "/orders", b"{}").await;
    assert_eq!(s, 502);
    assert_eq!(
        hdr(&h, "cache-status"),
        "apicache; fwd=method; fwd-status=502; detail=refused"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_is_a_504_with_detail_timeout() {
    let origin = Origin::start(|_| Reply::ok("{}").delay(Duration::from_millis(1500))).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.origin.timeout = Duration::from_millis(200))
        .start()
        .await;
    let (s, h, _) = get(&p, "/slow").await;
    assert_eq!(s, 504);
    assert_eq!(
        hdr(&h, "cache-status"),
        "apicache; fwd=uri-miss; fwd-status=504; detail=timeout"
    );
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_or_closed_connection_is_named() {
    for (reset, cause) in [(true, "reset"), (false, "closed")] {
        let (url, task) = rude_origin(reset).await;
        let p = ProxyBuilder::for_url(&url).start().await;
        let (s, h, _) = get(&p, "/x").await;
        assert_eq!(s, 502);
        assert_eq!(
            hdr(&h, "cache-status"),
            format!("apicache; fwd=uri-miss; fwd-status=502; detail={cause}")
        );
        p.shutdown().await;
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_the_origin_say_why() {
    let origin = cacheable_origin().await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.hosts = vec!["api.example".into()])
        .start()
        .await;
    let host = [("host", "api.example")];
    let long = format!("/{}", "a".repeat(9000));
    type Row<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    // (path, headers, status, Cache-Status)
    let rows: Vec<Row<'_>> = vec![
        (
            "/x",
            vec![("host", "api.example"), ("cache-control", "only-if-cached")],
            504,
            "apicache; detail=only-if-cached",
        ),
        (
            "/bad%zz",
            host.to_vec(),
            400,
            "apicache; detail=bad-request",
        ),
        (&long, host.to_vec(), 414, "apicache; detail=uri-too-long"),
        (
            "/x",
            vec![("host", "evil.example")],
            421,
            "apicache; detail=misdirected",
        ),
    ];
    for (path, headers, status, cs) in rows {
        let (s, h, b) = get_with(&p, path, &headers).await;
        assert_eq!(s, status, "{}", text(&b));
        assert_eq!(hdr(&h, "cache-status"), cs);
        assert_eq!(hdr(&h, "x-request-id").len(), 32, "{h:?}");
    }
    assert_eq!(origin.count(), 0);
    p.shutdown().await;
}
