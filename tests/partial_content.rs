//! Partial content (RFC 9111 §3.3–3.4): 206 answers to range requests the cache forwards (for
//! a URL too large to store whole) are kept as parts, later ranges they cover are served from
//! them, and parts that add up to the whole body become a stored 200.

mod support;
use support::*;

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the origin serves: the body, its ETag and Cache-Control.
#[derive(Clone)]
struct Doc {
    body: Vec<u8>,
    etag: &'static str,
    cc: &'static str,
    /// A field added to every answer.
    extra: Option<(&'static str, &'static str)>,
}

/// An origin that answers `Range: bytes=a-b` with a 206 of the current document and anything
/// else with the whole 200.
async fn range_origin(doc: Arc<Mutex<Doc>>) -> Origin {
    Origin::start(move |s| {
        let d = doc.lock().unwrap().clone();
        let len = d.body.len();
        let range = s.header("range");
        let reply = match range.strip_prefix("bytes=").and_then(|r| r.split_once('-')) {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().unwrap(), b.parse().unwrap());
                let b = b.min(len - 1);
                Reply::ok(d.body[a..=b].to_vec())
                    .status(206)
                    .header("content-range", &format!("bytes {a}-{b}/{len}"))
            }
            None => Reply::ok(d.body.clone()),
        };
        let reply = match d.extra {
            Some((k, v)) => reply.header(k, v),
            None => reply,
        };
        reply
            .header("etag", d.etag)
            .header("cache-control", d.cc)
            .header("content-type", "application/octet-stream")
    })
    .await
}

fn doc(len: usize, etag: &'static str) -> Arc<Mutex<Doc>> {
    Arc::new(Mutex::new(Doc {
        body: (0..len).map(|i| (i % 251) as u8).collect(),
        etag,
        cc: "max-age=60",
        extra: None,
    }))
}

/// apicache with a 1 KiB object limit, so a 2 KiB document is filled once, found too large, and
/// its range requests forwarded.
async fn small_objects(origin: &Origin) -> apicache::Running {
    ProxyBuilder::new(origin)
        .config(|c| c.cache.max_object_size = bytesize::ByteSize::kib(1))
        .start()
        .await
}

async fn range(p: &apicache::Running, path: &str, r: &str) -> (u16, http::HeaderMap, Vec<u8>) {
    let (s, h, b) = get_with(p, path, &[("range", r)]).await;
    (s, h, b.to_vec())
}

// Ranges of a document too large to store whole: each forwarded 206 is kept, and later ranges
// inside what is kept (across adjacent parts too) are served from the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_ranges_are_kept_and_serve_later_ranges() {
    let d = doc(2048, "\"big-1\"");
    let body = d.lock().unwrap().body.clone();
    let origin = range_origin(d.clone()).await;
    let p = small_objects(&origin).await;
    // Filled whole, found too large: streamed through and the URL marked pass.
    let (s, h, got) = get(&p, "/big").await;
    assert_eq!((s, got.len()), (200, 2048));
    assert!(hdr(&h, "cache-status").contains("too-large"), "{h:?}");

    let (s, h, got) = range(&p, "/big", "bytes=0-99").await;
    assert_eq!((s, &got[..]), (206, &body[..100]));
    assert_eq!(hdr(&h, "content-range"), "bytes 0-99/2048");
    assert_eq!(
        origin.last().header("range"),
        "bytes=0-99",
        "forwarded as a range"
    );
    assert_eq!(origin.count(), 2);

    let (s, h, got) = range(&p, "/big", "bytes=10-49").await;
    assert_eq!((s, &got[..]), (206, &body[10..50]));
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(hdr(&h, "content-range"), "bytes 10-49/2048");
    assert_eq!(hdr(&h, "content-length"), "40");
    assert_eq!(hdr(&h, "etag"), "\"big-1\"");
    assert_eq!(origin.count(), 2, "served from the kept part");

    // Not covered: forwarded and kept; it joins the first part.
    let (s, _, got) = range(&p, "/big", "bytes=100-199").await;
    assert_eq!((s, &got[..]), (206, &body[100..200]));
    assert_eq!(origin.count(), 3);
    let (s, h, got) = range(&p, "/big", "bytes=50-150").await;
    assert_eq!((s, &got[..]), (206, &body[50..151]));
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 3);

    // If-Range with another validator: not from the part.
    let (_, h, _) = get_with(
        &p,
        "/big",
        &[("range", "bytes=0-9"), ("if-range", "\"big-0\"")],
    )
    .await;
    assert_ne!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 4);
    let (s, h, _) = get_with(
        &p,
        "/big",
        &[("range", "bytes=0-9"), ("if-range", "\"big-1\"")],
    )
    .await;
    assert_eq!((s, hdr(&h, "x-cache")), (206, "HIT"));

    // Stale parts are not served (the pass mark has lapsed too: the URL is filled whole again,
    // found too large again, and streamed through as a 200).
    p.clock().advance(Duration::from_secs(61));
    let (s, h, got) = range(&p, "/big", "bytes=10-19").await;
    assert_eq!((s, got.len()), (200, 2048));
    assert_ne!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(origin.count(), 5);
    p.shutdown().await;
}

// A 206 without a strong validator, or that says no-store, is relayed and not kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unvalidated_or_unstorable_parts_are_not_kept() {
    for (etag, cc) in [("W/\"weak\"", "max-age=60"), ("\"s\"", "no-store")] {
        let d = doc(2048, etag);
        d.lock().unwrap().cc = cc;
        let origin = range_origin(d).await;
        let p = small_objects(&origin).await;
        get(&p, "/big").await;
        for n in 1..=2 {
            let (s, _, got) = range(&p, "/big", "bytes=0-99").await;
            assert_eq!((s, got.len()), (206, 100), "{etag} {cc}");
            assert_eq!(origin.count(), 1 + n, "{etag} {cc}: forwarded every time");
        }
        p.shutdown().await;
    }
}

// Parts that cover the whole body, when it fits max_object_size, become one stored 200. Here
// the document shrinks to 600 bytes (a new ETag) while the URL is still marked too large, so its
// ranges are forwarded; parts of the old version are not mixed in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_covering_the_whole_body_become_a_stored_200() {
    let d = doc(2048, "\"v1\"");
    let origin = range_origin(d.clone()).await;
    let p = small_objects(&origin).await;
    get(&p, "/doc").await;
    range(&p, "/doc", "bytes=0-299").await;
    let small: Vec<u8> = (0..600).map(|i| (i % 7) as u8 + b'a').collect();
    *d.lock().unwrap() = Doc {
        body: small.clone(),
        etag: "\"v2\"",
        cc: "max-age=60",
        extra: None,
    };
    let (s, _, got) = range(&p, "/doc", "bytes=300-599").await;
    assert_eq!((s, &got[..]), (206, &small[300..]));
    let (_, h, _) = range(&p, "/doc", "bytes=0-9").await;
    assert_ne!(hdr(&h, "x-cache"), "HIT", "the v1 part is not v2's");
    assert_eq!(origin.count(), 4);
    let (s, _, got) = range(&p, "/doc", "bytes=0-299").await;
    assert_eq!((s, &got[..]), (206, &small[..300]));
    assert_eq!(origin.count(), 5);
    p.settle().await;

    let (s, h, got) = get(&p, "/doc").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"), "{h:?}");
    assert_eq!(got, small);
    assert_eq!(hdr(&h, "etag"), "\"v2\"");
    assert!(!h.contains_key("content-range"));
    let (s, h, got) = range(&p, "/doc", "bytes=100-109").await;
    assert_eq!((s, hdr(&h, "x-cache")), (206, "HIT"));
    assert_eq!(got, &small[100..110]);
    assert_eq!(origin.count(), 5);
    p.shutdown().await;
}

// A URL purge (and an unsafe method on the URL) removes its parts with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_are_purged_with_their_url() {
    let origin = range_origin(doc(2048, "\"p\"")).await;
    let p = ProxyBuilder::new(&origin)
        .admin()
        .config(|c| c.cache.max_object_size = bytesize::ByteSize::kib(1))
        .start()
        .await;
    get(&p, "/big").await;
    range(&p, "/big", "bytes=0-99").await;
    let (_, h, _) = range(&p, "/big", "bytes=0-9").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(purge(&p, "PURGE", "/big", &[]).await, 1);
    let (_, h, _) = range(&p, "/big", "bytes=0-9").await;
    assert_ne!(hdr(&h, "x-cache"), "HIT", "purged");
    assert_eq!(origin.count(), 3);
    p.shutdown().await;
}

// A part keeps out what the origin withheld from shared caches, and a URL keeps a bounded number
// of separate ranges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_keep_withheld_fields_out_and_are_bounded_in_number() {
    let d = doc(2048, "\"big-3\"");
    {
        let mut d = d.lock().unwrap();
        d.cc = "max-age=60, private=\"Set-Cookie\"";
        d.extra = Some(("set-cookie", "sid=first-client"));
    }
    let origin = range_origin(d).await;
    let p = small_objects(&origin).await;
    get(&p, "/big").await;
    let (s, h, _) = range(&p, "/big", "bytes=0-99").await;
    assert_eq!((s, hdr(&h, "set-cookie")), (206, "sid=first-client"));
    let (s, h, _) = range(&p, "/big", "bytes=10-19").await;
    assert_eq!((s, hdr(&h, "x-cache")), (206, "HIT"));
    assert!(
        !h.contains_key("set-cookie"),
        "another client's cookie: {h:?}"
    );
    // Separate one-byte ranges: only a bounded number is kept.
    for i in 0..40 {
        let r = format!("bytes={}-{}", 200 + i * 2, 200 + i * 2);
        range(&p, "/big", &r).await;
    }
    let before = origin.count();
    for i in 0..40 {
        let r = format!("bytes={}-{}", 200 + i * 2, 200 + i * 2);
        range(&p, "/big", &r).await;
    }
    let refetched = origin.count() - before;
    assert!(
        (20..=40).contains(&refetched),
        "{refetched} of 40 ranges were not kept"
    );
    p.shutdown().await;
}

// Parts of an older representation are not served next to a newer stored whole response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_another_representation_than_the_stored_one_are_not_served() {
    let d = doc(2048, "\"old\"");
    d.lock().unwrap().cc = "max-age=600";
    let origin = range_origin(d.clone()).await;
    let p = small_objects(&origin).await;
    get(&p, "/doc").await;
    let (s, _, _) = range(&p, "/doc", "bytes=0-99").await;
    assert_eq!(s, 206);
    let (_, h, _) = range(&p, "/doc", "bytes=0-9").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT", "the part is kept");
    // The document changes and now fits: stored whole, then stale.
    let small: Vec<u8> = (0..600).map(|i| (i % 7) as u8 + b'a').collect();
    *d.lock().unwrap() = Doc {
        body: small.clone(),
        etag: "\"new\"",
        cc: "max-age=1",
        extra: None,
    };
    // The first answer clears the URL's too-large mark, the second is stored.
    get(&p, "/doc").await;
    let (s, h, got) = get(&p, "/doc").await;
    assert_eq!((s, &got[..]), (200, &small[..]));
    assert!(hdr(&h, "cache-status").contains("stored"), "{h:?}");
    p.clock().advance(Duration::from_secs(5));
    let (s, h, got) = range(&p, "/doc", "bytes=0-9").await;
    assert_eq!((s, &got[..]), (206, &small[..10]), "{h:?}");
    assert_ne!(hdr(&h, "etag"), "\"old\"");
    p.shutdown().await;
}
