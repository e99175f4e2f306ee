//! Encoded variants, computed after an object is stored so that a fill never waits for them.
//!
//! A fill stores and answers with the identity body; this computes gzip and brotli at the stored
//! levels on the blocking pool, a few at a time, once per object, and swaps the encoded copy in
//! (same ETag per coding, same age and purge marks). Waiting work is bounded in bytes: beyond the
//! budget an object is served identity-only until a later hit finds room for it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::object::CachedObject;
use super::store::Store;
use crate::compress;
use crate::rfc::coding::Coding;

/// Runs the background encodings.
pub struct Encoder {
    store: Store,
    gzip_level: u32,
    brotli_level: u32,
    /// Encoders running at once: bounds CPU and the encoders' own memory.
    slots: Arc<Semaphore>,
    /// Identity bytes that may wait for encoding at once: queued objects stay in memory even if
    /// evicted meanwhile, so this is part of what the cache may hold beyond `max_size`.
    max_queued_bytes: usize,
    queued_bytes: Arc<AtomicUsize>,
    queued: Arc<AtomicUsize>,
    runs: Arc<AtomicU64>,
}

impl Encoder {
    /// Encode into `store` at the given levels, with at most `max_queued_bytes` of bodies waiting.
    pub fn new(store: Store, gzip_level: u32, brotli_level: u32, max_queued_bytes: usize) -> Self {
        Self {
            store,
            max_queued_bytes,
            gzip_level,
            brotli_level,
            slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, |n| n.get()),
            )),
            queued_bytes: Arc::default(),
            queued: Arc::default(),
            runs: Arc::default(),
        }
    }

    /// Compute `obj`'s encoded variants in the background, if it needs them and nobody is at it
    /// yet, and swap them in under `key`. Called on store and on every hit: one flag check when
    /// there is nothing to do.
    pub fn schedule(&self, key: &str, obj: &Arc<CachedObject>) {
        if !obj.claim_encoding() {
            return;
        }
        let size = obj.body.len();
        if self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            obj.release_encoding();
            tracing::debug!(
                key,
                "encoding queue full: served identity until a later hit"
            );
            return;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        let (store, slots, key, obj) = (
            self.store.clone(),
            self.slots.clone(),
            key.to_string(),
            obj.clone(),
        );
        let (queued_bytes, queued, runs) = (
            self.queued_bytes.clone(),
            self.queued.clone(),
            self.runs.clone(),
        );
        let (gz_level, br_level) = (self.gzip_level, self.brotli_level);
        tokio::spawn(async move {
            if let Ok(_slot) = slots.acquire().await {
                // Only the codings it lacks: an origin's own gzip bytes are kept as they are.
                let need_gzip = obj.variant(Coding::Gzip).is_none();
                let body = obj.body.clone();
                let encoded = tokio::task::spawn_blocking(move || {
                    let gz = need_gzip.then(|| Bytes::from(compress::gzip(&body, gz_level)));
                    (gz, Bytes::from(compress::brotli(&body, br_level)))
                })
                .await;
                if let Ok((gz, br)) = encoded {
                    runs.fetch_add(1 + u64::from(gz.is_some()), Ordering::Relaxed);
                    let new = Arc::new(obj.with_encodings(gz, Some(br)));
                    store.swap(&key, &obj, new).await;
                }
            }
            queued_bytes.fetch_sub(size, Ordering::Relaxed);
            queued.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Times the compressor ran.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Wait (bounded) until no encoding is queued or running: tests and benches.
    pub async fn settle(&self) {
        for _ in 0..5000 {
            if self.queued.load(Ordering::Relaxed) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use http::{HeaderMap, StatusCode};

    use super::*;
    use crate::cache::{Lookup, NewObject};
    use crate::rfc::storable::Freshness;

    fn object(seed: &str) -> Arc<CachedObject> {
        let body: String = (0..400).map(|i| format!("{{\"{seed}\":{i}}},")).collect();
        Arc::new(CachedObject::new(
            NewObject {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from(body),
                gzip: None,
                etag: http::HeaderValue::try_from(format!("\"{seed}\"")).unwrap(),
                origin_etag: None,
                freshness: Freshness::for_lifetime(60),
                vary: Default::default(),
                tags: vec![],
                no_transform: false,
                compressible: true,
            },
            Instant::now(),
        ))
    }

    async fn stored(store: &Store, key: &str) -> Arc<CachedObject> {
        match store.lookup(key, &HeaderMap::new()).await {
            Lookup::Hit(o) => o,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn crowded_out_objects_are_encoded_on_a_later_try() {
        let store = Store::new(1 << 20, 4);
        let (a, b) = (object("a"), object("b"));
        store.insert("GET /a".into(), a.clone()).await;
        store.insert("GET /b".into(), b.clone()).await;
        // Room for one body at a time.
        let enc = Encoder::new(store.clone(), 6, 5, a.body.len());
        enc.schedule("GET /a", &a);
        enc.schedule("GET /a", &a); // already claimed: no second run
        enc.schedule("GET /b", &b); // no room: given back
        enc.settle().await;
        assert_eq!(enc.runs(), 2, "gzip + br, once");
        assert!(!stored(&store, "GET /a").await.needs_encoding());
        let b_now = stored(&store, "GET /b").await;
        assert!(Arc::ptr_eq(&b_now, &b) && b.needs_encoding());
        // A later hit finds room.
        enc.schedule("GET /b", &b_now);
        enc.settle().await;
        let b_done = stored(&store, "GET /b").await;
        assert!(!b_done.needs_encoding());
        assert!(b_done.variant(Coding::Br).is_some() && b_done.variant(Coding::Gzip).is_some());
        assert_eq!(enc.runs(), 4);
    }
}
