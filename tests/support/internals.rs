//! The only test code that names apicache's internal modules (cache store, tag index, ETag
//! generation): when those paths move, this file is the one to fix.

use apicache::Running;
use bytes::Bytes;
use http::HeaderMap;

/// The strong ETag apicache generates for `body`.
pub fn generated_etag(body: &[u8]) -> String {
    apicache::rfc::conditional::generate_etag(body)
}

/// Exact store counters (pending removals and evictions are finished first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreView {
    /// Entries (URLs × credentials).
    pub entries: u64,
    /// Bytes charged against `cache.max_size`.
    pub weighted_size: u64,
    /// Links in the surrogate-key index.
    pub tag_links: usize,
}

pub async fn store_view(p: &Running) -> StoreView {
    let store = p.proxy.store();
    store.run_pending_tasks().await;
    StoreView {
        entries: store.entry_count(),
        weighted_size: store.weighted_size(),
        tag_links: store.tag_index().links(),
    }
}

/// The cache keys the tag index holds under `tag`.
pub fn tagged_keys(p: &Running, tag: &str) -> Vec<String> {
    let keys = p.proxy.store().tag_index().keys(tag);
    keys.into_iter().map(|(key, _generation)| key).collect()
}

/// The body stored for `GET path` as the test client sends it (Host `127.0.0.1:port`; the
/// variant a request without headers matches), fresh or not.
pub async fn stored_body(p: &Running, path: &str) -> Option<Bytes> {
    let key = apicache::normalize::cache_key(&format!("http://{}", p.addr), path, None);
    match p.proxy.store().lookup(&key, &HeaderMap::new()).await {
        apicache::cache::Lookup::Hit(o) => Some(o.body.clone()),
        _ => None,
    }
}

/// The headers stored for `GET path` on `public_origin` (`http://api.example`; the variant a
/// request without headers matches), fresh or not.
pub async fn stored_headers(p: &Running, public_origin: &str, path: &str) -> Option<HeaderMap> {
    let key = apicache::normalize::cache_key(public_origin, path, None);
    match p.proxy.store().lookup(&key, &HeaderMap::new()).await {
        apicache::cache::Lookup::Hit(o) => Some(o.headers.clone()),
        _ => None,
    }
}
