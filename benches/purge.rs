//! Purge cost: 10,000 objects under one tag, in a cache of 1,000,000 objects versus a cache of 20,000.
//! The ratio shows a tag purge costs in proportion to what it removes, not to the cache size.
//! Run: `cargo bench --bench purge` (OBJECTS=1000000 by default; set OBJECTS lower on a small machine).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use apicache::cache::{CachedObject, NewObject, Store};
use apicache::rfc::storable::Freshness;

fn obj(tags: Vec<String>) -> Arc<CachedObject> {
    Arc::new(CachedObject::new(
        NewObject {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{\"ok\":true}"),
            origin_encoded: None,
            etag: http::HeaderValue::from_static("\"e\""),
            origin_etag: None,
            freshness: Freshness::for_lifetime(3600),
            vary: Default::default(),
            tags,
            no_transform: false,
            compressible: false,
        },
        std::time::Instant::now(),
    ))
}

/// Fill a store with `total` objects, `tagged` of them under "hot"; return the purge time in ms.
async fn run(total: usize, tagged: usize) -> (f64, f64, usize) {
    let store = Store::new(8 << 30, 4);
    for i in 0..total {
        let mut tags = vec![format!("obj-{i}")];
        if i % (total / tagged) == 0 {
            tags.push("hot".into());
        }
        store.insert(format!("GET /items/{i}"), obj(tags)).await;
    }
    store.run_pending_tasks().await;
    let t0 = Instant::now();
    let n = store.purge_tag("hot", false).await;
    let ms = t0.elapsed().as_secs_f64() * 1e3;
    // The purged objects are unreachable now; their memory is released by a background task.
    store.run_pending_tasks().await;
    let settled = t0.elapsed().as_secs_f64() * 1e3;
    assert_eq!(store.entry_count() as usize, total - n);
    (ms, settled, n)
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let total: usize = std::env::var("OBJECTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (small_ms, small_settled, small_n) = run(20_000, 10_000).await;
        let (big_ms, big_settled, big_n) = run(total, 10_000).await;
        println!(
            "purge of {small_n} tagged objects in a cache of 20,000: {small_ms:.2} ms (memory released after {small_settled:.1} ms)"
        );
        println!(
            "purge of {big_n} tagged objects in a cache of {total}: {big_ms:.2} ms (memory released after {big_settled:.1} ms)"
        );
        println!(
            "ratio big/small: {:.2} (≈1 means cost follows the objects purged, not the cache size)",
            big_ms / small_ms
        );
    });
}
