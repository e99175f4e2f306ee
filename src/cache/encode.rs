//! Encoded variants, computed after an object is stored so that a fill never waits for them.
//!
//! A fill stores and answers with the identity body; this computes gzip, brotli and zstd at the
//! stored levels on the blocking pool, a few at a time, once per object, and swaps the encoded copy
//! in (same ETag per coding, same age and purge marks). Waiting work is bounded in bytes: beyond the
//! budget an object is served identity-only until a later hit finds room for it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::object::CachedObject;
use super::store::Store;
use crate::compress::{self, Levels};
use crate::rfc::coding::Coding;

/// The codings every compressible object is stored in besides identity.
const ENCODED: [Coding; 3] = [Coding::Gzip, Coding::Br, Coding::Zstd];

/// Runs the background encodings.
pub struct Encoder {
    store: Store,
    /// Changed by a reload; read once per object scheduled.
    levels: std::sync::Mutex<Levels>,
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
    /// Encode objects scheduled from now on at `levels` (a reload).
    pub fn set_levels(&self, levels: Levels) {
        *self.levels.lock().unwrap_or_else(|p| p.into_inner()) = levels;
    }

    /// Encode into `store` at `levels`, with at most `max_queued_bytes` of bodies waiting.
    pub fn new(store: Store, levels: Levels, max_queued_bytes: usize) -> Self {
        Self {
            store,
            max_queued_bytes,
            levels: std::sync::Mutex::new(levels),
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
        let levels = *self.levels.lock().unwrap_or_else(|p| p.into_inner());
        tokio::spawn(async move {
            if let Ok(_slot) = slots.acquire().await {
                // Only the codings it lacks: an origin's own gzip or zstd bytes are kept as they are.
                let needed: Vec<Coding> = ENCODED
                    .into_iter()
                    .filter(|c| obj.variant(*c).is_none())
                    .collect();
                let body = obj.body.clone();
                let encoded = tokio::task::spawn_blocking(move || {
                    let encode = |c: Coding| compress::encode(&body, c, levels.of(c));
                    let out: Vec<(Coding, Bytes)> = needed
                        .into_iter()
                        .filter_map(|c| Some((c, Bytes::from(encode(c)?))))
                        .collect();
                    out
                })
                .await;
                if let Ok(encoded) = encoded {
                    runs.fetch_add(encoded.len() as u64, Ordering::Relaxed);
                    let new = Arc::new(obj.with_encodings(encoded));
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
                origin_encoded: None,
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
        let levels = Levels {
            gzip: 6,
            brotli: 5,
            zstd: 3,
        };
        let enc = Encoder::new(store.clone(), levels, a.body.len());
        enc.schedule("GET /a", &a);
        enc.schedule("GET /a", &a); // already claimed: no second run
        enc.schedule("GET /b", &b); // no room: given back
        enc.settle().await;
        assert_eq!(enc.runs(), 3, "gzip + br + zstd, once");
        assert!(!stored(&store, "GET /a").await.needs_encoding());
        let b_now = stored(&store, "GET /b").await;
        assert!(Arc::ptr_eq(&b_now, &b) && b.needs_encoding());
        // A later hit finds room.
        enc.schedule("GET /b", &b_now);
        enc.settle().await;
        let b_done = stored(&store, "GET /b").await;
        assert!(!b_done.needs_encoding());
        for c in ENCODED {
            assert!(b_done.variant(c).is_some(), "{c}");
        }
        assert_eq!(enc.runs(), 6);
    }
}
