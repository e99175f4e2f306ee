//! ETags are bytes end to end (RFC 9110 §8.8.3 allows obs-text): an origin's tag is kept as sent,
//! matched in If-None-Match, suffixed per coding and sent back upstream. A value that is not an
//! entity-tag is replaced by a generated one and never sent upstream.

mod support;
use support::*;

use std::time::Duration;

use http::HeaderMap;

/// `"café"` in UTF-8: two obs-text bytes.
const OBS: &str = "\"caf\u{e9}\"";

fn etag_bytes(h: &HeaderMap) -> &[u8] {
    h.get("etag").map_or(b"", |v| v.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_obs_text_etag_is_kept_matched_and_revalidated() {
    let body = json_body(4096, "obs");
    let b = body.clone();
    let origin = Origin::start(move |seen| {
        let inm = seen
            .headers
            .get("if-none-match")
            .map(|v| v.as_bytes().to_vec());
        if inm.as_deref() == Some(OBS.as_bytes()) {
            Reply::not_modified(&[("etag", OBS), ("cache-control", "max-age=60")])
        } else {
            Reply::ok(b.clone())
                .header("etag", OBS)
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let p = proxy(&origin).await;

    let (s, h, got) = get(&p, "/o").await;
    assert_eq!((s, &got[..]), (200, &body[..]));
    assert_eq!(
        etag_bytes(&h),
        OBS.as_bytes(),
        "replaced by a generated tag"
    );
    p.settle().await;

    let (s, h, got) = get_with(&p, "/o", &[("if-none-match", OBS)]).await;
    assert_eq!((s, got.len()), (304, 0));
    assert_eq!(etag_bytes(&h), OBS.as_bytes());

    // The gzip variant's tag keeps the bytes too, and matches.
    let (s, h, _) = get_with(&p, "/o", &[("accept-encoding", "gzip")]).await;
    assert_eq!((s, hdr(&h, "content-encoding")), (200, "gzip"));
    let gz = "\"caf\u{e9}-gz\"";
    assert_eq!(etag_bytes(&h), gz.as_bytes());
    let (s, _, _) = get_with(
        &p,
        "/o",
        &[("accept-encoding", "gzip"), ("if-none-match", gz)],
    )
    .await;
    assert_eq!(s, 304);
    assert_eq!(origin.count(), 1);

    // Upstream revalidation sends the same bytes back.
    p.clock().advance(Duration::from_secs(2));
    let (s, h, got) = get(&p, "/o").await;
    assert_eq!((s, &got[..]), (200, &body[..]));
    assert_eq!(etag_bytes(&h), OBS.as_bytes());
    assert_eq!(origin.count(), 2);
    let inm = origin.last().headers.get("if-none-match").cloned();
    assert_eq!(inm.as_ref().map(|v| v.as_bytes()), Some(OBS.as_bytes()));
    assert!(hdr(&h, "cache-status").contains("fwd-status=304"), "{h:?}");
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_etag_is_replaced_and_never_sent_upstream() {
    let origin = Origin::fixed(
        b"{\"m\":1}",
        &[
            ("etag", "not-quoted"),
            ("last-modified", LAST_MODIFIED),
            ("cache-control", "max-age=1"),
        ],
    )
    .await;
    let p = proxy(&origin).await;
    let h = assert_get(&p, "/m", "MISS", "{\"m\":1}").await;
    assert_eq!(hdr(&h, "etag"), generated_etag(b"{\"m\":1}"));
    p.clock().advance(Duration::from_secs(2));
    assert_get(&p, "/m", "MISS", "{\"m\":1}").await;
    let seen = origin.last();
    assert!(
        !seen.headers.contains_key("if-none-match"),
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("if-modified-since"), LAST_MODIFIED);
    p.shutdown().await;
}
