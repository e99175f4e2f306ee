//! Content codings of responses that are not stored: streamed compression and the client's Accept-Encoding.

mod support;
use support::*;

use bytesize::ByteSize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_response_is_stream_compressed() {
    let body = json_body(20 * 1024, "pass-stream");
    let origin = Origin::fixed(&body, &[("cache-control", "no-store")]).await;
    let p = proxy(&origin).await;

    // First request goes through the (collapsed) fill, later ones through hit-for-pass.
    for (ae, coding) in [("gzip", "gzip"), ("gzip", "gzip"), ("br", "br")] {
        let (s, h, got) = get_with(&p, "/nostore", &[("accept-encoding", ae)]).await;
        assert_eq!(s, 200);
        assert_eq!(hdr(&h, "content-encoding"), coding, "{h:?}");
        assert!(vary_has(&h, "accept-encoding"), "{h:?}");
        if h.contains_key("content-length") {
            assert_eq!(
                hdr(&h, "content-length"),
                got.len().to_string(),
                "stale Content-Length on a re-encoded body"
            );
        }
        assert!(got.len() < body.len());
        let decoded = if coding == "gzip" {
            gunzip(&got)
        } else {
            unbrotli(&got)
        };
        assert_eq!(decoded, body);
    }
    let (s, h, got) = get(&p, "/nostore").await;
    assert_eq!(s, 200);
    assert!(!h.contains_key("content-encoding"));
    assert_eq!(&got[..], &body[..]);
    assert_eq!(origin.count(), 4);

    p.shutdown().await;
}

/// An origin that gzips only when asked to (as real ones do).
async fn negotiating_origin(body: &[u8], cache_control: &'static str) -> Origin {
    let body = body.to_vec();
    Origin::start(move |seen| {
        let wants_gzip = seen
            .headers
            .get_all("accept-encoding")
            .iter()
            .any(|v| v.to_str().unwrap_or("").contains("gzip"));
        let r = if wants_gzip {
            Reply::ok(gzip(&body)).header("content-encoding", "gzip")
        } else {
            Reply::ok(body.clone())
        };
        r.header("vary", "Accept-Encoding")
            .header("cache-control", cache_control)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_origin_gzip_is_not_compressed_twice() {
    let body = json_body(20 * 1024, "pass-gz");
    let origin = negotiating_origin(&body, "no-store").await;
    let p = proxy(&origin).await;

    for _ in 0..2 {
        let (s, h, got) = get_with(&p, "/pgz", &[("accept-encoding", "gzip")]).await;
        assert_eq!(s, 200);
        assert_eq!(hdr(&h, "content-encoding"), "gzip");
        let once = gunzip(&got);
        assert!(!is_gzip(&once), "body was gzipped twice");
        assert_eq!(once, body);
    }

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncached_response_respects_client_accept_encoding() {
    let body = json_body(20 * 1024, "pass-identity");
    let origin = negotiating_origin(&body, "no-store").await;
    let p = proxy(&origin).await;

    // First request: the fill (which asks the origin for gzip); second: hit-for-pass forward.
    for i in 0..2 {
        let (s, h, got) = get_with(&p, "/pid", &[("accept-encoding", "identity")]).await;
        assert_eq!(s, 200);
        assert!(
            !h.contains_key("content-encoding"),
            "request {i}: client sent Accept-Encoding: identity, got {h:?}"
        );
        assert_eq!(&got[..], &body[..], "request {i}");
    }

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_response_respects_client_accept_encoding() {
    let body = json_body(64 * 1024, "too-big-identity");
    let origin = negotiating_origin(&body, "max-age=60").await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.max_object_size = ByteSize::kib(1))
        .start()
        .await;
    for i in 0..2 {
        let (s, h, got) = get_with(&p, "/big", &[("accept-encoding", "identity")]).await;
        assert_eq!(s, 200);
        assert!(!h.contains_key("content-encoding"), "request {i}: {h:?}");
        assert_eq!(&got[..], &body[..], "request {i}");
    }
    p.shutdown().await;
}
