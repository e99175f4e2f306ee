//! Content codings of stored objects: gzip/br variants, q-values, origin gzip, no-transform, variants computed once.

mod support;
use support::*;

use bytesize::ByteSize;

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
    assert_eq!(
        stat(&st, "compressions"),
        3,
        "gzip, br and zstd, once: {st}"
    );
    assert_eq!(stat(&st, "origin_requests"), 1, "{st}");

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
