//! zstd end to end: the stored variant negotiated and byte-identical once decoded, the tie order
//! (default and configured), what a fill asks the origin for, an origin's zstd decoded and stored,
//! bombs and oversized windows refused, answers compressed on the fly.

mod support;
use support::*;

use std::io::Write;

use apicache::rfc::coding::Coding;
use bytesize::ByteSize;

/// The identity ETag of a stored answer with `suffix` before its closing quote.
fn with_suffix(etag: &str, suffix: &str) -> String {
    format!("{}{suffix}\"", etag.trim_end_matches('"'))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_client_gets_the_stored_zstd_variant_byte_identical_once_decoded() {
    let body = json_body(16 * 1024, "zstd-variant");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    let (s, h, got) = get(&p, "/z").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "MISS"));
    assert_eq!(&got[..], &body[..]);
    let etag = hdr(&h, "etag").to_string();
    p.settle().await;

    for ae in [
        "zstd",
        "ZSTD;q=0.5",
        "zstd, gzip;q=0.9",
        "identity;q=0.5, zstd;q=0.5",
    ] {
        let (s, h, enc) = get_with(&p, "/z", &[("accept-encoding", ae)]).await;
        assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"), "{ae}");
        assert_eq!(hdr(&h, "content-encoding"), "zstd", "{ae}: {h:?}");
        assert_eq!(hdr(&h, "content-length"), enc.len().to_string(), "{ae}");
        assert_eq!(vary_count(&h, "accept-encoding"), 1, "{ae}: {h:?}");
        assert_eq!(hdr(&h, "etag"), with_suffix(&etag, "-zst"), "{ae}");
        assert!(
            is_zstd(&enc) && enc.len() < body.len() / 3,
            "{ae}: {}",
            enc.len()
        );
        assert_eq!(
            unzstd(&enc),
            body,
            "{ae}: zstd body does not decode to the identity"
        );
    }
    // q=0 forbids it, even as the only coding offered.
    let (_, h, got) = get_with(&p, "/z", &[("accept-encoding", "zstd;q=0, gzip")]).await;
    assert_eq!(hdr(&h, "content-encoding"), "gzip");
    assert_eq!(gunzip(&got), body);
    let (_, h, got) = get_with(&p, "/z", &[("accept-encoding", "zstd;q=0")]).await;
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_eq!(&got[..], &body[..]);

    // Its ETag validates like the other variants': a 304 names the zstd representation.
    let zst = with_suffix(&etag, "-zst");
    let (s, h, b) = get_with(
        &p,
        "/z",
        &[("accept-encoding", "zstd"), ("if-none-match", &zst)],
    )
    .await;
    assert_not_modified(s, &h, &b, &zst);
    // HEAD describes the same representation without its body.
    let (s, h, b) = head_with(&p, "/z", &[("accept-encoding", "zstd")]).await;
    assert_eq!((s, hdr(&h, "content-encoding")), (200, "zstd"));
    assert!(b.is_empty());
    assert_eq!(origin.count(), 1);
    let st = stats(&p).await;
    assert_eq!(
        stat(&st, "compressions"),
        3,
        "gzip, br and zstd, once: {st}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ties_prefer_br_then_zstd_then_gzip_unless_configured() {
    let body = json_body(8192, "ties");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let default = proxy(&origin).await;
    let gzip_first = ProxyBuilder::new(&origin)
        .config(|c| c.compression.prefer = vec![Coding::Gzip, Coding::Zstd])
        .start()
        .await;
    for p in [&default, &gzip_first] {
        let _ = get(p, "/t").await;
        p.settle().await;
    }
    // (Accept-Encoding, default order's pick, pick with prefer = ["gzip", "zstd"])
    let rows: &[(&str, &str, &str)] = &[
        ("gzip, deflate, br, zstd", "br", "gzip"),
        ("gzip, zstd", "zstd", "gzip"),
        ("zstd, gzip", "zstd", "gzip"),
        ("br, zstd", "br", "zstd"),
        ("*", "br", "gzip"),
        // q-values rule before the order does, and q=0 still forbids.
        ("gzip;q=0.5, zstd;q=0.4, br;q=0.1", "gzip", "gzip"),
        ("gzip;q=0.5, zstd", "zstd", "zstd"),
        ("*, br;q=0", "zstd", "gzip"),
        ("*, gzip;q=0", "br", "zstd"),
        ("zstd;q=0, br;q=0, gzip", "gzip", "gzip"),
        ("identity", "identity", "identity"),
    ];
    for (ae, want_default, want_gzip_first) in rows {
        for (p, want) in [(&default, want_default), (&gzip_first, want_gzip_first)] {
            let (s, h, got) = get_with(p, "/t", &[("accept-encoding", ae)]).await;
            assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"), "{ae}");
            let coding = h
                .get("content-encoding")
                .map_or("identity", |v| v.to_str().unwrap());
            assert_eq!(coding, *want, "Accept-Encoding: {ae}");
            let decoded = match coding {
                "br" => unbrotli(&got),
                "zstd" => unzstd(&got),
                "gzip" => gunzip(&got),
                _ => got.to_vec(),
            };
            assert_eq!(decoded, body, "Accept-Encoding: {ae}");
        }
    }
    assert_eq!(origin.count(), 2);
    default.shutdown().await;
    gzip_first.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_zstd_body_is_decoded_stored_and_served_to_every_client() {
    let body = json_body(24 * 1024, "origin-zstd");
    let zst = zstd(&body);
    let sent = zst.clone();
    let origin = Origin::start(move |_| {
        Reply::ok(sent.clone())
            .header("content-encoding", "zstd")
            .header("vary", "Accept-Encoding")
            .header("etag", "\"o1\"")
            .header("cache-control", "max-age=60")
    })
    .await;
    let p = ProxyBuilder::new(&origin).admin().start().await;

    // The fill asks for zstd (this client takes it) and answers with the origin's own bytes.
    let (s, h, got) = get_with(&p, "/oz", &[("accept-encoding", "zstd")]).await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "MISS"));
    assert_eq!(origin.last().header("accept-encoding"), "zstd");
    assert_eq!(hdr(&h, "content-encoding"), "zstd");
    assert_eq!(got, zst, "the origin's own zstd bytes, not re-encoded");
    // Decoded, the representation differs from the bytes the origin's tag named: weak.
    assert_eq!(hdr(&h, "etag"), "W/\"o1-zst\"");
    assert_eq!(stored_body(&p, "/oz").await.as_deref(), Some(&body[..]));

    let (s, h, got) = get(&p, "/oz").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_eq!(
        &got[..],
        &body[..],
        "identity is byte-identical to what the origin encoded"
    );
    assert_eq!(hdr(&h, "content-length"), body.len().to_string());
    assert_eq!(hdr(&h, "etag"), "W/\"o1\"");

    p.settle().await;
    let (_, h, got) = get_with(&p, "/oz", &[("accept-encoding", "gzip")]).await;
    assert_eq!(
        (hdr(&h, "x-cache"), hdr(&h, "content-encoding")),
        ("HIT", "gzip")
    );
    assert_eq!(gunzip(&got), body);
    let (_, h, got) = get_with(&p, "/oz", &[("accept-encoding", "br")]).await;
    assert_eq!(hdr(&h, "content-encoding"), "br");
    assert_eq!(unbrotli(&got), body);
    let (_, h, got) = get_with(&p, "/oz", &[("accept-encoding", "zstd")]).await;
    assert_eq!(hdr(&h, "content-encoding"), "zstd");
    assert_eq!(got, zst, "the origin's bytes stay the zstd variant");
    assert_eq!(origin.count(), 1);
    let st = stats(&p).await;
    assert_eq!(
        stat(&st, "compressions"),
        2,
        "only gzip and br computed: {st}"
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_asks_the_origin_only_for_codings_the_client_takes() {
    let body = json_body(4096, "asks");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.compression.prefer = vec![Coding::Gzip])
        .start()
        .await;
    let default = proxy(&origin).await;
    // (client's Accept-Encoding, asked with prefer = ["gzip"], asked with the default order)
    let rows: &[(&str, &str, &str)] = &[
        (
            "gzip, deflate, br, zstd",
            "gzip, zstd;q=0.9",
            "zstd, gzip;q=0.9",
        ),
        ("zstd", "zstd", "zstd"),
        ("gzip", "gzip", "gzip"),
        ("br", "identity", "identity"),
        (
            "zstd;q=0.2, gzip;q=0.1",
            "zstd, gzip;q=0.9",
            "zstd, gzip;q=0.9",
        ),
        ("zstd;q=0, gzip", "gzip", "gzip"),
        ("identity", "identity", "identity"),
    ];
    for (i, (ae, gzip_first, by_default)) in rows.iter().enumerate() {
        for (proxy, want) in [(&p, gzip_first), (&default, by_default)] {
            let path = format!("/ask{i}");
            let (s, _, _) = get_with(proxy, &path, &[("accept-encoding", ae)]).await;
            assert_eq!(s, 200);
            let seen = origin.last();
            assert_eq!(seen.path_and_query, path);
            assert_eq!(seen.header("accept-encoding"), *want, "client sent {ae}");
        }
    }
    p.shutdown().await;
    default.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_zstd_variant_counts_in_the_objects_bytes() {
    let body = json_body(32 * 1024, "weight");
    let origin = Origin::fixed(&body, &[("cache-control", "max-age=60")]).await;
    let plain = ProxyBuilder::new(&origin)
        .config(|c| c.compression.enabled = false)
        .start()
        .await;
    let p = proxy(&origin).await;
    for proxy in [&plain, &p] {
        let _ = get(proxy, "/w").await;
        proxy.settle().await;
    }
    let mut variants = 0;
    for ae in ["gzip", "br", "zstd"] {
        let (_, h, got) = get_with(&p, "/w", &[("accept-encoding", ae)]).await;
        assert_eq!(hdr(&h, "content-encoding"), ae);
        variants += got.len() as u64;
    }
    let (without, with) = (store_view(&plain).await, store_view(&p).await);
    assert_eq!(with.entries, 1);
    // Same key length (ephemeral ports have five digits), headers and tags: only the variants differ.
    assert_eq!(
        with.weighted_size - without.weighted_size,
        variants,
        "{with:?} vs {without:?}"
    );
    plain.shutdown().await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_variant_no_smaller_than_identity_is_not_kept() {
    // Bytes no codec can shrink, labelled as JSON: every variant would be larger.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let noise: Vec<u8> = (0..8192)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let origin = Origin::fixed(&noise, &[("cache-control", "max-age=60")]).await;
    let p = proxy(&origin).await;
    let _ = get(&p, "/n").await;
    p.settle().await;
    let (s, h, got) = get_with(&p, "/n", &[("accept-encoding", "zstd, gzip, br")]).await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "HIT"));
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_eq!(&got[..], &noise[..]);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_bomb_from_the_origin_is_refused_within_the_object_limit() {
    // 64 MiB of zeros in a few KiB of zstd; the object limit is 1 MiB.
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&zeros).unwrap();
    }
    let bomb = enc.finish().unwrap();
    assert!(bomb.len() < 16 * 1024, "{}", bomb.len());
    let sent = bomb.clone();
    let origin = Origin::start(move |_| {
        Reply::ok(sent.clone())
            .header("content-encoding", "zstd")
            .header("cache-control", "max-age=60")
    })
    .await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.cache.max_object_size = ByteSize::mib(1))
        .start()
        .await;
    for _ in 0..2 {
        let (s, h, got) = get_with(&p, "/bomb", &[("accept-encoding", "zstd")]).await;
        assert_eq!(s, 200);
        // Relayed as the origin sent it, to a client that asked for zstd: never inflated here.
        assert_eq!(hdr(&h, "content-encoding"), "zstd");
        assert_eq!(got, bomb);
    }
    assert_eq!(stored_body(&p, "/bomb").await, None);
    assert_eq!(store_view(&p).await.entries, 0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zstd_frame_wanting_more_than_an_8_mib_window_is_a_bad_gateway() {
    let body = json_body(2048, "window");
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.window_log(25).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(&body).unwrap();
    let wide = enc.finish().unwrap();
    assert_eq!(unzstd(&wide), body, "valid zstd, just a 32 MiB window");
    let origin = Origin::start(move |seen| {
        let zst = if seen.path_and_query == "/corrupt" {
            b"\x28\xb5\x2f\xfd not really zstd".to_vec()
        } else {
            wide.clone()
        };
        Reply::ok(zst)
            .header("content-encoding", "zstd")
            .header("cache-control", "max-age=60")
    })
    .await;
    let p = proxy(&origin).await;
    for path in ["/wide", "/corrupt"] {
        let (s, h, _) = get_with(&p, path, &[("accept-encoding", "zstd")]).await;
        assert_eq!(s, 502, "{path}: {h:?}");
        assert_eq!(stored_body(&p, path).await, None, "{path}");
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uncached_answer_is_zstd_compressed_on_the_fly() {
    let body = json_body(20 * 1024, "pass-zstd");
    let zst = zstd(&body);
    let (b, z) = (body.clone(), zst.clone());
    let origin = Origin::start(move |seen| {
        // /own answers with its own zstd when asked for it, as a negotiating origin does.
        let asked = seen.header("accept-encoding").contains("zstd");
        if seen.path_and_query == "/own" && asked {
            Reply::ok(z.clone())
                .header("content-encoding", "zstd")
                .header("cache-control", "no-store")
        } else {
            Reply::ok(b.clone()).header("cache-control", "no-store")
        }
    })
    .await;
    let p = proxy(&origin).await;
    // The first request is the fill's, the second a hit-for-pass forward.
    for _ in 0..2 {
        let (s, h, got) = get_with(&p, "/pass", &[("accept-encoding", "zstd")]).await;
        assert_eq!(s, 200);
        assert_eq!(hdr(&h, "content-encoding"), "zstd", "{h:?}");
        assert!(vary_has(&h, "accept-encoding"), "{h:?}");
        assert!(got.len() < body.len());
        assert_eq!(unzstd(&got), body);

        let (s, h, got) = get_with(&p, "/own", &[("accept-encoding", "gzip, zstd")]).await;
        assert_eq!((s, hdr(&h, "content-encoding")), (200, "zstd"));
        assert_eq!(
            got, zst,
            "the origin's zstd passed through, not encoded twice"
        );
    }
    p.shutdown().await;
}
