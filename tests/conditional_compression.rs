//! Conditional requests (304), validators, upstream revalidation, ranges and content codings,
//! all exercised over real HTTP against an in-process origin.

mod support;
use support::*;

use std::time::Duration;

use bytesize::ByteSize;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_etag_is_strong_and_stable_across_instances() {
    let body = json_body(4096, "gen-etag");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p1 = proxy(&origin).await;
    let p2 = proxy(&origin).await;

    let (s1, h1, b1) = get(&p1, "/e").await;
    let (s2, h2, b2) = get(&p2, "/e").await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!((&b1[..], &b2[..]), (&body[..], &body[..]));
    let e1 = hdr(&h1, "etag").to_string();
    assert!(!e1.is_empty(), "no ETag: {h1:?}");
    let e2 = hdr(&h2, "etag").to_string();
    assert!(!e2.is_empty(), "no ETag: {h2:?}");
    assert!(!e1.starts_with("W/"), "generated ETag must be strong: {e1}");
    assert!(
        e1.len() > 2 && e1.starts_with('"') && e1.ends_with('"'),
        "{e1}"
    );
    assert!(!e1[1..e1.len() - 1].contains('"'), "{e1}");
    assert_eq!(e1, e2, "same body, two proxy instances, different ETags");
    assert_eq!(e1, generated_etag(&body));

    // A hit carries the same tag.
    let (_, h3, _) = get(&p1, "/e").await;
    assert_eq!(hdr(&h3, "x-cache"), "HIT");
    assert_eq!(hdr(&h3, "etag"), e1.as_str());
    assert_eq!(origin.count(), 2);

    p1.shutdown().await;
    p2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_etag_is_kept_as_is() {
    let body = json_body(4096, "origin-etag");
    let origin = Origin::fixed(
        &body,
        &[("cache-control", "max-age=60"), ("etag", "\"v1-abc\"")],
    )
    .await;
    let p = proxy(&origin).await;

    let (s, h, b) = get(&p, "/o").await;
    assert_eq!(s, 200);
    assert_eq!(&b[..], &body[..]);
    assert_eq!(hdr(&h, "etag"), "\"v1-abc\"");
    // Encoded variants are computed in the background after the fill.
    p.settle().await;
    let (_, h, _) = get(&p, "/o").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(hdr(&h, "etag"), "\"v1-abc\"");
    // An encoded variant gets a tag of its own, distinct from the identity one.
    let (_, h, _) = get_with(&p, "/o", &[("accept-encoding", "br")]).await;
    assert_eq!(hdr(&h, "content-encoding"), "br");
    let e_br = hdr(&h, "etag");
    assert!(!e_br.is_empty(), "no ETag: {h:?}");
    assert_ne!(e_br, "\"v1-abc\"");
    assert!(e_br.starts_with('"') && e_br.ends_with('"'), "{e_br}");
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_forms_get_304_from_cache() {
    let body = json_body(4096, "inm");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let (s, h, _) = get(&p, "/inm").await;
    assert_eq!(s, 200);
    let etag = hdr(&h, "etag").to_string();
    assert!(!etag.is_empty(), "no ETag: {h:?}");
    assert_eq!(origin.count(), 1);

    let list = format!("\"x\", {etag}");
    let weak = format!("W/{etag}");
    for inm in [etag.as_str(), list.as_str(), weak.as_str(), "*"] {
        let (s, h, b) = get_with(&p, "/inm", &[("if-none-match", inm)]).await;
        assert_not_modified(s, &h, &b, &etag);
        assert_eq!(
            origin.count(),
            1,
            "origin contacted for If-None-Match: {inm}"
        );
    }
    // Same tag split over two header lines.
    let (s, _, _) = get_with(
        &p,
        "/inm",
        &[("if-none-match", "\"nope\""), ("if-none-match", &etag)],
    )
    .await;
    assert_eq!(s, 304);

    // Non-matching tags: the full representation.
    let (s, h, b) = get_with(&p, "/inm", &[("if-none-match", "\"x\", W/\"y\"")]).await;
    assert_eq!(s, 200);
    assert_eq!(&b[..], &body[..]);
    assert_eq!(hdr(&h, "content-type"), "application/json");
    assert_eq!(origin.count(), 1);

    let st = stats(&p).await;
    assert_eq!(stat(&st, "not_modified"), 5);
    assert_eq!(stat(&st, "origin_requests"), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_modified_since_and_precedence_of_if_none_match() {
    let body = json_body(4096, "ims");
    let origin = Origin::fixed(
        &body,
        &[
            ("cache-control", "max-age=60"),
            ("last-modified", LAST_MODIFIED),
        ],
    )
    .await;
    let p = proxy(&origin).await;

    let (s, h, _) = get(&p, "/ims").await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "last-modified"), LAST_MODIFIED);
    let etag = hdr(&h, "etag").to_string();
    assert!(!etag.is_empty(), "no ETag: {h:?}");

    // IMS equal to / later than Last-Modified → 304.
    for ims in [LAST_MODIFIED, "Thu, 22 Oct 2015 07:28:00 GMT"] {
        let (s, h, b) = get_with(&p, "/ims", &[("if-modified-since", ims)]).await;
        assert_not_modified(s, &h, &b, &etag);
    }
    // Earlier → 200.
    let (s, _, b) = get_with(
        &p,
        "/ims",
        &[("if-modified-since", "Tue, 20 Oct 2015 07:28:00 GMT")],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(&b[..], &body[..]);

    // If-None-Match present: If-Modified-Since is ignored (RFC 9110 §13.1.3).
    let (s, h, b) = get_with(
        &p,
        "/ims",
        &[
            ("if-none-match", "\"something-else\""),
            ("if-modified-since", LAST_MODIFIED),
        ],
    )
    .await;
    assert_eq!(s, 200, "INM did not win over a matching IMS");
    assert_eq!(&b[..], &body[..]);
    assert_eq!(hdr(&h, "content-type"), "application/json");
    let (s, h, b) = get_with(
        &p,
        "/ims",
        &[
            ("if-none-match", etag.as_str()),
            ("if-modified-since", "Tue, 20 Oct 2015 07:28:00 GMT"),
        ],
    )
    .await;
    assert_not_modified(s, &h, &b, &etag);
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_with_matching_if_none_match_gets_304() {
    let body = json_body(4096, "head");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    let (_, h, _) = get(&p, "/h").await;
    let etag = hdr(&h, "etag").to_string();
    assert!(!etag.is_empty(), "no ETag: {h:?}");

    let (s, h, b) = head_with(&p, "/h", &[("if-none-match", etag.as_str())]).await;
    assert_not_modified(s, &h, &b, &etag);
    // Plain HEAD: 200, no body, the GET's headers.
    let (s, h, b) = head_with(&p, "/h", &[]).await;
    assert_eq!(s, 200);
    assert!(b.is_empty());
    assert_eq!(hdr(&h, "etag"), etag.as_str());
    assert_eq!(hdr(&h, "content-length"), body.len().to_string());
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_variant_etag_matches_identity_request() {
    let body = json_body(4096, "variant-etag");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    let (_, h_id, _) = get(&p, "/v").await;
    p.settle().await;
    let e_id = hdr(&h_id, "etag").to_string();
    assert!(!e_id.is_empty(), "no ETag: {h_id:?}");
    let (_, h_br, _) = get_with(&p, "/v", &[("accept-encoding", "br")]).await;
    let (_, h_gz, _) = get_with(&p, "/v", &[("accept-encoding", "gzip")]).await;
    let e_br = hdr(&h_br, "etag").to_string();
    assert!(!e_br.is_empty(), "no ETag: {h_br:?}");
    let e_gz = hdr(&h_gz, "etag").to_string();
    assert!(!e_gz.is_empty(), "no ETag: {h_gz:?}");
    assert_eq!(hdr(&h_br, "content-encoding"), "br");
    assert_eq!(hdr(&h_gz, "content-encoding"), "gzip");
    assert!(e_br.contains("-br"), "{e_br}");
    assert_ne!(e_br, e_id);
    assert_ne!(e_gz, e_id);
    assert_ne!(e_gz, e_br);

    // The -br tag revalidates an identity request (and vice versa); the 304 names the
    // representation this request would have got.
    let (s, h, b) = get_with(&p, "/v", &[("if-none-match", e_br.as_str())]).await;
    assert_not_modified(s, &h, &b, &e_id);
    let (s, h, b) = get_with(&p, "/v", &[("if-none-match", e_gz.as_str())]).await;
    assert_not_modified(s, &h, &b, &e_id);
    let (s, h, b) = get_with(
        &p,
        "/v",
        &[("accept-encoding", "br"), ("if-none-match", e_id.as_str())],
    )
    .await;
    assert_not_modified(s, &h, &b, &e_br);
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_object_revalidated_upstream_with_if_none_match() {
    let body = json_body(4096, "reval-etag");
    let b = body.clone();
    let origin = Origin::start(move |seen| {
        if seen.header("if-none-match") == "\"rev-1\"" {
            Reply::not_modified(&[("etag", "\"rev-1\""), ("cache-control", "max-age=60")])
        } else {
            Reply::ok(b.clone())
                .header("etag", "\"rev-1\"")
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let (s, h, got) = get(&p, "/r").await;
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert!(origin.last().headers.get("if-none-match").is_none());
    let bytes_before = origin.bytes_sent();
    assert_eq!(bytes_before, body.len());

    tokio::time::sleep(Duration::from_millis(2100)).await;

    let (s, h, got) = get(&p, "/r").await;
    assert_eq!(origin.count(), 2, "stale object was not revalidated");
    let seen = origin.last();
    assert_eq!(
        seen.header("if-none-match"),
        "\"rev-1\"",
        "revalidation did not carry If-None-Match: {:?}",
        seen.headers
    );
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..], "revalidated response lost its body");
    assert_eq!(hdr(&h, "content-type"), "application/json");
    assert_eq!(hdr(&h, "etag"), "\"rev-1\"");
    assert_eq!(hdr(&h, "content-length"), body.len().to_string());
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert!(hdr(&h, "cache-status").contains("fwd-status=304"), "{h:?}");
    assert_eq!(
        origin.bytes_sent(),
        bytes_before,
        "origin sent a body on revalidation"
    );

    // Fresh again (the 304's max-age=60 replaced the stored one): no origin contact.
    let (s, h, got) = get(&p, "/r").await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "cache-control"), "max-age=60");
    // The encoded variants survived the refresh.
    let (s, h, got) = get_with(&p, "/r", &[("accept-encoding", "gzip")]).await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "content-encoding"), "gzip");
    assert_eq!(gunzip(&got), body);
    assert_eq!(origin.count(), 2);

    let st = stats(&p).await;
    assert_eq!(stat(&st, "revalidated"), 1);
    assert_eq!(stat(&st, "origin_requests"), 2);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_object_revalidated_upstream_with_if_modified_since() {
    let body = json_body(4096, "reval-lm");
    let b = body.clone();
    let origin = Origin::start(move |seen| {
        if seen.header("if-modified-since") == LAST_MODIFIED {
            Reply::not_modified(&[("cache-control", "max-age=60")])
        } else {
            Reply::ok(b.clone())
                .header("last-modified", LAST_MODIFIED)
                .header("cache-control", "max-age=1")
        }
    })
    .await;
    let p = proxy(&origin).await;

    let (s, h, _) = get(&p, "/lm").await;
    assert_eq!(s, 200);
    let etag = hdr(&h, "etag").to_string();
    assert!(!etag.is_empty(), "no ETag: {h:?}");
    let bytes_before = origin.bytes_sent();

    tokio::time::sleep(Duration::from_millis(2100)).await;

    let (s, h, got) = get(&p, "/lm").await;
    assert_eq!(origin.count(), 2, "stale object was not revalidated");
    let seen = origin.last();
    assert_eq!(
        seen.header("if-modified-since"),
        LAST_MODIFIED,
        "{:?}",
        seen.headers
    );
    // The generated tag is the proxy's, not the origin's: never sent upstream.
    assert!(
        seen.headers.get("if-none-match").is_none(),
        "{:?}",
        seen.headers
    );
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "etag"), etag.as_str());
    assert_eq!(hdr(&h, "last-modified"), LAST_MODIFIED);
    assert_eq!(origin.bytes_sent(), bytes_before);

    let (s, h, got) = get(&p, "/lm").await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    assert_eq!(&got[..], &body[..]);
    assert_eq!(origin.count(), 2);

    p.shutdown().await;
}

/// An origin with ETag `"e1"` that answers a matching If-None-Match with a 304 carrying `extra`.
async fn validating_origin(body: &[u8], extra: &'static [(&'static str, &'static str)]) -> Origin {
    let body = body.to_vec();
    Origin::start(move |seen| {
        if seen.header("if-none-match") == "\"e1\"" {
            Reply::not_modified(&[("etag", "\"e1\""), ("cache-control", "max-age=60")])
                .headers(extra)
        } else {
            Reply::ok(body.clone())
                .header("etag", "\"e1\"")
                .header("cache-control", "max-age=60")
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_no_cache_revalidates_upstream() {
    let body = json_body(4096, "client-no-cache");
    let origin = validating_origin(&body, &[]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let (s, _, _) = get(&p, "/nc").await;
    assert_eq!(s, 200);
    // The fill's variants are computed in the background: let them land before the refreshes.
    p.settle().await;
    let bytes_before = origin.bytes_sent();

    // A fresh object, but the client insists: one conditional origin request, answered 304.
    let (s, h, got) = get_with(&p, "/nc", &[("cache-control", "no-cache")]).await;
    assert_eq!(origin.count(), 2);
    assert_eq!(origin.last().header("if-none-match"), "\"e1\"");
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "etag"), "\"e1\"");
    assert_eq!(origin.bytes_sent(), bytes_before);

    // Same, with the client's own validator: the client gets a 304.
    let (s, h, b) = get_with(
        &p,
        "/nc",
        &[("cache-control", "no-cache"), ("if-none-match", "\"e1\"")],
    )
    .await;
    assert_eq!(origin.count(), 3);
    assert_not_modified(s, &h, &b, "\"e1\"");
    assert_eq!(origin.bytes_sent(), bytes_before);

    // Any re-encoding the refreshes started would be counted once it has run.
    p.settle().await;
    let st = stats(&p).await;
    assert_eq!(stat(&st, "revalidated"), 2);
    assert_eq!(
        stat(&st, "compressions"),
        2,
        "variants recomputed on refresh: {st}"
    );

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revalidation_with_changed_body_replaces_object_and_variants() {
    let old = json_body(4096, "old");
    let new = json_body(4096, "new");
    let origin = validating_origin(&old, &[]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let _ = get(&p, "/chg").await;
    p.settle().await;
    let (_, h, got) = get_with(&p, "/chg", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gunzip(&got), old);
    assert_eq!(hdr(&h, "etag"), "\"e1-gz\"");

    let n = new.clone();
    origin.set_handler(move |_| {
        Reply::ok(n.clone())
            .header("etag", "\"e2\"")
            .header("cache-control", "max-age=60")
    });
    let (s, h, got) = get_with(&p, "/chg", &[("cache-control", "no-cache")]).await;
    assert_eq!(s, 200);
    assert_eq!(&got[..], &new[..]);
    assert_eq!(hdr(&h, "etag"), "\"e2\"");
    assert_eq!(origin.last().header("if-none-match"), "\"e1\"");

    // The old validator no longer matches; the encoded variants are the new body's.
    let (s, _, got) = get_with(&p, "/chg", &[("if-none-match", "\"e1\"")]).await;
    assert_eq!(s, 200);
    assert_eq!(&got[..], &new[..]);
    p.settle().await;
    for (ae, decode) in [("gzip", gunzip as fn(&[u8]) -> Vec<u8>), ("br", unbrotli)] {
        let (s, h, got) = get_with(&p, "/chg", &[("accept-encoding", ae)]).await;
        assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
        assert_eq!(decode(&got), new, "{ae} variant is stale");
    }
    assert_eq!(origin.count(), 2);
    let st = stats(&p).await;
    assert_eq!(stat(&st, "compressions"), 4, "{st}");
    assert_eq!(stat(&st, "revalidated"), 0, "{st}");

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_304_that_makes_object_unstorable_still_serves_body() {
    let body = json_body(4096, "reval-set-cookie");
    let origin = validating_origin(&body, &[("set-cookie", "session=abc")]).await;
    let p = proxy(&origin).await;

    let (s, _, _) = get(&p, "/sc").await;
    assert_eq!(s, 200);
    let (s, h, got) = get_with(&p, "/sc", &[("cache-control", "no-cache")]).await;
    assert_eq!(origin.count(), 2);
    assert_eq!(s, 200, "{h:?}");
    assert_eq!(&got[..], &body[..]);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_request_on_miss_fills_cache() {
    let body = json_body(4096, "cond-miss");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    // A non-matching precondition: the full body, and the cache is filled.
    let (s, _, got) = get_with(
        &p,
        "/a",
        &[
            ("if-none-match", "\"not-this\""),
            ("if-modified-since", LAST_MODIFIED),
        ],
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(&got[..], &body[..]);
    let seen = origin.last();
    assert!(
        seen.headers.get("if-none-match").is_none(),
        "{:?}",
        seen.headers
    );
    assert!(
        seen.headers.get("if-modified-since").is_none(),
        "{:?}",
        seen.headers
    );
    let (s, h, got) = get(&p, "/a").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
    assert_eq!(&got[..], &body[..]);
    assert_eq!(origin.count(), 1);

    // A precondition that matches what the origin is about to send: 304, and still filled.
    let etag = generated_etag(&body);
    let (s, h, b) = get_with(&p, "/b", &[("if-none-match", etag.as_str())]).await;
    assert_not_modified(s, &h, &b, &etag);
    assert_eq!(origin.count(), 2);
    assert!(origin.last().headers.get("if-none-match").is_none());
    let (s, h, got) = get(&p, "/b").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
    assert_eq!(&got[..], &body[..]);
    assert_eq!(origin.count(), 2);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_br_variants_decode_to_identity() {
    let body = json_body(8192, "codings");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    let (s, h, id) = get(&p, "/c").await;
    assert_eq!(s, 200);
    assert!(!h.contains_key("content-encoding"));
    assert_eq!(&id[..], &body[..]);
    assert_eq!(hdr(&h, "content-length"), body.len().to_string());
    assert_eq!(vary_count(&h, "accept-encoding"), 1, "{h:?}");
    p.settle().await;

    for (ae, coding) in [("gzip", "gzip"), ("br", "br")] {
        let (s, h, enc) = get_with(&p, "/c", &[("accept-encoding", ae)]).await;
        assert_eq!(s, 200);
        assert_eq!(hdr(&h, "content-encoding"), coding);
        assert_eq!(vary_count(&h, "accept-encoding"), 1, "{h:?}");
        assert_eq!(
            hdr(&h, "content-length"),
            enc.len().to_string(),
            "Content-Length does not match the encoded body"
        );
        assert!(enc.len() < body.len());
        let decoded = if coding == "gzip" {
            gunzip(&enc)
        } else {
            unbrotli(&enc)
        };
        assert_eq!(
            decoded, body,
            "{coding} body does not decode to the identity"
        );
        assert_eq!(hdr(&h, "content-type"), "application/json");
    }
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_encoding_q_values_are_respected() {
    let body = json_body(4096, "qvalues");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;
    let _ = get(&p, "/q").await;
    p.settle().await;

    let cases: &[(&str, Option<&str>)] = &[
        ("gzip;q=1, br;q=0.5", Some("gzip")),
        ("br;q=0, gzip", Some("gzip")),
        ("gzip;q=0.2, br;q=0.9", Some("br")),
        ("identity;q=0", None),
        ("br;q=0, gzip;q=0", None),
        ("identity", None),
    ];
    for (ae, want) in cases {
        let (s, h, got) = get_with(&p, "/q", &[("accept-encoding", ae)]).await;
        assert_eq!(s, 200, "Accept-Encoding: {ae}");
        match want {
            Some(coding) => assert_eq!(
                hdr(&h, "content-encoding"),
                *coding,
                "Accept-Encoding: {ae}"
            ),
            None => assert!(!h.contains_key("content-encoding"), "Accept-Encoding: {ae}"),
        }
        let decoded = match want {
            Some("gzip") => gunzip(&got),
            Some("br") => unbrotli(&got),
            _ => got.to_vec(),
        };
        assert_eq!(decoded, body, "Accept-Encoding: {ae}");
    }
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_gzip_is_not_compressed_twice() {
    let body = json_body(8192, "origin-gzip");
    let gz = gzip(&body);
    let origin = Origin::start(move |_| {
        Reply::ok(gz.clone())
            .header("content-encoding", "gzip")
            .header("vary", "Accept-Encoding")
            .header("cache-control", "max-age=60")
    })
    .await;
    let p = proxy(&origin).await;

    let (s, h, got) = get_with(&p, "/z", &[("accept-encoding", "gzip")]).await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "content-encoding"), "gzip");
    assert_eq!(hdr(&h, "content-length"), got.len().to_string());
    assert_eq!(vary_count(&h, "accept-encoding"), 1, "{h:?}");
    let once = gunzip(&got);
    assert!(!is_gzip(&once), "body was gzipped twice");
    assert_eq!(once, body);

    let (s, h, got) = get(&p, "/z").await;
    assert_eq!(s, 200);
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_eq!(&got[..], &body[..]);
    assert_eq!(hdr(&h, "content-length"), body.len().to_string());

    p.settle().await;
    let (s, h, got) = get_with(&p, "/z", &[("accept-encoding", "br")]).await;
    assert_eq!(s, 200);
    assert_eq!(hdr(&h, "content-encoding"), "br");
    assert_eq!(unbrotli(&got), body);
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transform_is_never_encoded() {
    let body = json_body(8192, "no-transform");
    let b = body.clone();
    let origin = Origin::start(move |seen| {
        let cc = if seen.path_and_query.starts_with("/pass") {
            "no-store, no-transform"
        } else {
            "max-age=60, no-transform"
        };
        Reply::ok(b.clone()).header("cache-control", cc)
    })
    .await;
    let p = proxy(&origin).await;

    for path in ["/cached", "/pass"] {
        for ae in ["gzip", "br", "gzip, br", "br", "gzip"] {
            let (s, h, got) = get_with(&p, path, &[("accept-encoding", ae)]).await;
            assert_eq!(s, 200);
            assert!(
                !h.contains_key("content-encoding"),
                "{path} encoded despite no-transform: {h:?}"
            );
            assert_eq!(&got[..], &body[..], "{path}");
        }
    }
    assert_eq!(origin.count_for("/cached"), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_and_non_compressible_bodies_untouched() {
    let small = json_body(600, "small");
    assert!(small.len() < 1024);
    let png: Vec<u8> = {
        let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
        v.extend(std::iter::repeat_n(0u8, 8192));
        v
    };
    let (s2, p2) = (small.clone(), png.clone());
    let origin = Origin::start(move |seen| {
        if seen.path_and_query.starts_with("/img") {
            let mut r = Reply::ok(p2.clone()).header("cache-control", "max-age=60");
            r.headers.retain(|(k, _)| k != "content-type");
            r.header("content-type", "image/png")
        } else {
            Reply::ok(s2.clone()).header("cache-control", "max-age=60")
        }
    })
    .await;
    let p = proxy(&origin).await;

    for (path, want) in [("/small", &small), ("/img", &png)] {
        for _ in 0..2 {
            let (s, h, got) = get_with(&p, path, &[("accept-encoding", "gzip, br")]).await;
            assert_eq!(s, 200);
            assert!(!h.contains_key("content-encoding"), "{path}: {h:?}");
            assert_eq!(&got[..], &want[..], "{path}");
            assert_eq!(hdr(&h, "content-length"), want.len().to_string());
        }
    }
    assert_eq!(origin.count(), 2);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_variants_computed_once_per_object() {
    let body = json_body(16 * 1024, "once");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    // The fill answers identity; the variants are computed once, in the background.
    let (_, h, _) = get_with(&p, "/once", &[("accept-encoding", "br")]).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    p.settle().await;

    for _ in 0..5 {
        let (s, h, got) = get_with(&p, "/once", &[("accept-encoding", "br")]).await;
        assert_eq!(s, 200);
        assert_eq!(hdr(&h, "content-encoding"), "br");
        assert_eq!(unbrotli(&got), body);
    }
    for _ in 0..5 {
        let (s, h, got) = get_with(&p, "/once", &[("accept-encoding", "gzip")]).await;
        assert_eq!(s, 200);
        assert_eq!(hdr(&h, "content-encoding"), "gzip");
        assert_eq!(gunzip(&got), body);
    }
    assert_eq!(origin.count(), 1);
    let st = stats(&p).await;
    assert_eq!(stat(&st, "compressions"), 2, "{st}");
    assert_eq!(stat(&st, "origin_requests"), 1, "{st}");

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_served_from_cache() {
    let body = json_body(4096, "ranges");
    let len = body.len();
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    let (_, h, _) = get(&p, "/rg").await;
    let etag = hdr(&h, "etag").to_string();
    assert!(!etag.is_empty(), "no ETag: {h:?}");
    assert_eq!(hdr(&h, "accept-ranges"), "bytes");

    let (s, h, got) = get_with(&p, "/rg", &[("range", "bytes=0-9")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(&got[..], &body[..10]);
    assert_eq!(hdr(&h, "content-length"), "10");
    assert!(!h.contains_key("content-encoding"));

    let (s, h, got) = get_with(&p, "/rg", &[("range", "bytes=-5")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes {}-{}/{len}", len - 5, len - 1).as_str()
    );
    assert_eq!(&got[..], &body[len - 5..]);

    let from_end = format!("bytes={len}-");
    let (s, h, _) = get_with(&p, "/rg", &[("range", from_end.as_str())]).await;
    assert_eq!(s, 416);
    assert_eq!(hdr(&h, "content-range"), format!("bytes */{len}").as_str());

    let (s, h, got) = get_with(
        &p,
        "/rg",
        &[("range", "bytes=0-9"), ("if-range", etag.as_str())],
    )
    .await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(&got[..], &body[..10]);

    let (s, h, got) = get_with(
        &p,
        "/rg",
        &[("range", "bytes=0-9"), ("if-range", "\"other\"")],
    )
    .await;
    assert_eq!(s, 200, "If-Range with another ETag must give the full body");
    assert!(!h.contains_key("content-range"));
    assert_eq!(&got[..], &body[..]);

    // Ranges the proxy may ignore: several at once, or last < first.
    for range in ["bytes=0-1,5-6", "bytes=9-0", "items=0-9"] {
        let (s, h, got) = get_with(&p, "/rg", &[("range", range)]).await;
        assert_eq!(s, 200, "Range: {range}");
        assert!(!h.contains_key("content-range"), "Range: {range}");
        assert_eq!(&got[..], &body[..], "Range: {range}");
    }
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_on_miss_gives_206_and_stores_whole_object() {
    let body = json_body(4096, "range-miss");
    let len = body.len();
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;

    let (s, h, got) = get_with(&p, "/rm", &[("range", "bytes=0-9")]).await;
    assert_eq!(s, 206);
    assert_eq!(
        hdr(&h, "content-range"),
        format!("bytes 0-9/{len}").as_str()
    );
    assert_eq!(&got[..], &body[..10]);
    let seen = origin.last();
    assert!(
        seen.headers.get("range").is_none(),
        "Range forwarded: {:?}",
        seen.headers
    );

    let (s, h, got) = get(&p, "/rm").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
    assert_eq!(&got[..], &body[..]);
    assert_eq!(origin.count(), 1);

    p.shutdown().await;
}

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
async fn admin_listen_port_zero_is_accepted() {
    let origin = Origin::fixed(b"{}", &[("cache-control", "max-age=60")]).await;
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[origin]\nurl = \"{}\"\n[admin]\nlisten = \"127.0.0.1:0\"\n",
        origin.url()
    );
    let cfg = apicache::Config::parse(&text).expect("two ephemeral ports never collide");
    let p = apicache::start(cfg).await.unwrap();
    let admin = p.admin_addr.expect("admin listener");
    assert_ne!(admin, p.addr);
    let st = stats(&p).await;
    assert_eq!(stat(&st, "origin_requests"), 0);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_gzip_over_object_limit_once_decoded_is_still_served() {
    // ~5 KiB of gzip on the wire, 64 KiB decoded; the object limit sits in between.
    let body = json_body(64 * 1024, "gzip-bomb-ish");
    let gz = gzip(&body);
    assert!(gz.len() < 16 * 1024, "{}", gz.len());
    let origin = Origin::start(move |_| {
        Reply::ok(gz.clone())
            .header("content-encoding", "gzip")
            .header("cache-control", "max-age=60")
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.max_object_size = ByteSize::kib(16))
        .start()
        .await;
    let (s, h, got) = get_with(&p, "/gb", &[("accept-encoding", "gzip")]).await;
    assert_eq!(s, 200, "{h:?}");
    assert_eq!(hdr(&h, "content-encoding"), "gzip");
    assert_eq!(gunzip(&got), body);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_that_always_gzips_is_decoded_for_identity_clients() {
    let plain = json_body(20 * 1024, "always-gzip");
    let gz = gzip(&plain);
    let origin = Origin::start(move |_| {
        Reply::ok(gz.clone())
            .header("content-encoding", "gzip")
            .header("cache-control", "no-store")
            .header("etag", "\"o1\"")
    })
    .await;
    let p = proxy(&origin).await;
    for _ in 0..2 {
        let (s, h, body) = get_with(&p, "/g", &[("accept-encoding", "identity")]).await;
        assert_eq!(s, 200);
        assert!(!h.contains_key("content-encoding"), "{h:?}");
        assert_eq!(&body[..], &plain[..]);
        assert_eq!(hdr(&h, "etag"), "W/\"o1\"");
    }
    let (_, h, body) = get_with(&p, "/g", &[("accept-encoding", "gzip")]).await;
    assert_eq!(hdr(&h, "content-encoding"), "gzip");
    assert_eq!(gunzip(&body), plain);
    p.shutdown().await;
}
