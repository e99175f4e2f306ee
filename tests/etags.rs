//! Validators and 304s from the cache: generated and origin ETags, If-None-Match, If-Modified-Since, conditional misses.

mod support;
use support::*;

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
