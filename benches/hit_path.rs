//! Criterion micro-benches of the hit path: normalization alone, normalize + key + lookup, and building the
//! response from a stored object in each coding (a cached br hit must cost what an identity hit costs).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use http::{HeaderMap, HeaderValue, StatusCode};

use apicache::cache::{CachedObject, Lookup, NewObject, Store};
use apicache::compress;
use apicache::normalize::{cache_key, Normalizer};
use apicache::proxy::Proxy;
use apicache::rfc::coding::Coding;
use apicache::rfc::storable::Freshness;
use apicache::Config;

fn object(body: Vec<u8>) -> CachedObject {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=3600"),
    );
    headers.insert(
        "last-modified",
        HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
    );
    headers.insert(
        "date",
        HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
    );
    let etag = HeaderValue::try_from(apicache::rfc::conditional::generate_etag(&body)).unwrap();
    let o = CachedObject::new(
        NewObject {
            status: StatusCode::OK,
            headers,
            body: Bytes::from(body.clone()),
            origin_encoded: None,
            etag,
            origin_etag: None,
            freshness: Freshness::for_lifetime(3600),
            vary: Default::default(),
            tags: vec!["url /accounts/A1/transactions".into()],
            no_transform: false,
            compressible: true,
        },
        std::time::Instant::now(),
    );
    o.with_encodings([
        (Coding::Gzip, Bytes::from(compress::gzip(&body, 9))),
        (Coding::Br, Bytes::from(compress::brotli(&body, 9))),
        (Coding::Zstd, Bytes::from(compress::zstd(&body, 3).unwrap())),
    ])
}

fn json(n: usize) -> Vec<u8> {
    let mut s = String::from("{\"items\":[");
    let mut i = 0;
    while s.len() + 64 < n {
        s.push_str(&format!(
            "{{\"id\":\"T-{i:05}\",\"amount\":{}.25,\"label\":\"coffee\"}},",
            i % 97
        ));
        i += 1;
    }
    s.push_str("{}]}");
    s.into_bytes()
}

fn benches(c: &mut Criterion) {
    let cfg = Config::parse(
        "[origin]\nurl = \"http://127.0.0.1:9\"\n[normalize]\nlist_params = [\"fields\"]\n",
    )
    .unwrap();
    let normalizer = Normalizer::new(&cfg.normalize);
    let target = "/accounts/A1/transactions?size=25&page=1&fields=b,a&utm_source=x&apiKey=secret";
    c.bench_function("normalize", |b| {
        b.iter(|| normalizer.normalize(black_box(target)).unwrap())
    });
    c.bench_function("normalize_plain_path", |b| {
        b.iter(|| normalizer.normalize(black_box("/accounts/A1")).unwrap())
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let store = Store::new(256 << 20, 16);
    let body = json(32 * 1024);
    rt.block_on(async {
        for i in 0..10_000 {
            store
                .insert(
                    format!("GET /accounts/A{i}/transactions?fields=a,b&size=25"),
                    Arc::new(object(vec![b'x'; 64])),
                )
                .await;
        }
        store
            .insert(
                "GET /accounts/A1/transactions?fields=a,b&size=25".into(),
                Arc::new(object(body.clone())),
            )
            .await;
    });
    let req_headers = HeaderMap::new();
    c.bench_function("hit_path_normalize_key_lookup", |b| {
        b.to_async(&rt).iter(|| async {
            let n = normalizer.normalize(black_box(target)).unwrap();
            let key = cache_key("http://127.0.0.1", &n.path_and_query, None);
            match store.lookup(&key, &req_headers).await {
                Lookup::Hit(o) => black_box(o),
                other => panic!("expected a hit, got {other:?}"),
            }
        })
    });

    // The response for a stored object in each coding: br, zstd and gzip are stored bytes, not
    // recompressed.
    let proxy = Proxy::new(cfg.clone());
    let obj = object(body);
    let mut group = c.benchmark_group("cached_response_32k");
    for coding in Coding::ALL {
        let mut h = HeaderMap::new();
        h.insert(
            "accept-encoding",
            HeaderValue::from_static(match coding {
                Coding::Identity => "identity",
                Coding::Gzip => "gzip",
                Coding::Br => "br, gzip",
                Coding::Zstd => "gzip, deflate, br;q=0.9, zstd",
            }),
        );
        group.bench_function(coding.as_str(), |b| {
            b.iter(|| {
                let r = proxy.respond_cached(&obj, black_box(&h), false);
                assert_eq!(
                    r.headers().get("content-encoding").is_some(),
                    coding != Coding::Identity
                );
                black_box(r)
            })
        });
    }
    // Reference: what compressing on every hit would cost instead.
    group.bench_function("br_recompress_reference", |b| {
        b.iter(|| compress::brotli(black_box(&obj.body), 9))
    });
    group.finish();
}

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
