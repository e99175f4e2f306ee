//! The only file that touches moka: stored objects, byte-weighted capacity, per-entry expiry and the tag index.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use moka::notification::RemovalCause;

use crate::compress::Coding;
use crate::policy::{vary_values, Freshness};
use crate::tags::TagIndex;

/// One stored response (one Vary variant of a URL), with every content-coding computed once.
#[derive(Debug)]
pub struct CachedObject {
    /// Response status.
    pub status: StatusCode,
    /// End-to-end headers as the client gets them, minus Content-Length/Content-Encoding/ETag/Age.
    pub headers: HeaderMap,
    /// The identity body.
    pub body: Bytes,
    /// gzip variant, when worth having.
    pub gzip: Option<Bytes>,
    /// brotli variant, when worth having.
    pub br: Option<Bytes>,
    /// The identity representation's ETag, as clients see it (origin's or generated).
    pub etag: String,
    /// Header values of the identity, gzip and br ETags, built once instead of on every hit.
    etag_values: [Option<HeaderValue>; 3],
    /// The origin's own ETag, used to revalidate upstream.
    pub origin_etag: Option<HeaderValue>,
    /// Last-Modified, for If-Modified-Since both ways.
    pub last_modified: Option<HeaderValue>,
    /// Lifetime and stale windows.
    pub freshness: Freshness,
    /// When it was stored (monotonic: resident time for Age).
    pub stored_at: Instant,
    /// Milliseconds after `stored_at` + 1 at which it was soft-purged; 0 = never.
    purged_at: AtomicU64,
    /// Hard-purged: never served again, removed from moka in the background.
    dead: AtomicBool,
    /// Fields named by the origin's Vary (Accept-Encoding excluded: handled here).
    pub vary: Vec<HeaderName>,
    /// The request's values for `vary` when stored.
    pub vary_values: Vec<Option<HeaderValue>>,
    /// Surrogate keys, plus the URL tag.
    pub tags: Vec<String>,
    /// The origin said no-transform: never served encoded by this proxy.
    pub no_transform: bool,
}

impl CachedObject {
    /// A new object stored now.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        status: StatusCode,
        mut headers: HeaderMap,
        body: Bytes,
        etag: String,
        origin_etag: Option<HeaderValue>,
        freshness: Freshness,
        vary: Vec<HeaderName>,
        vary_values: Vec<Option<HeaderValue>>,
        tags: Vec<String>,
        no_transform: bool,
    ) -> Self {
        // Set per response from the stored body, ETag and age instead.
        for h in [
            http::header::CONTENT_LENGTH,
            http::header::ETAG,
            http::header::AGE,
        ] {
            headers.remove(h);
        }
        let last_modified = headers.get(http::header::LAST_MODIFIED).cloned();
        Self {
            status,
            headers,
            body,
            gzip: None,
            br: None,
            etag_values: [Coding::Identity, Coding::Gzip, Coding::Br]
                .map(|c| HeaderValue::from_str(&crate::conditional::variant_etag(&etag, c)).ok()),
            etag,
            origin_etag,
            last_modified,
            freshness,
            stored_at: Instant::now(),
            purged_at: AtomicU64::new(0),
            dead: AtomicBool::new(false),
            vary,
            vary_values,
            tags,
            no_transform,
        }
    }

    /// The bytes for a coding, if stored.
    pub fn variant(&self, coding: Coding) -> Option<&Bytes> {
        match coding {
            Coding::Identity => Some(&self.body),
            Coding::Gzip => self.gzip.as_ref(),
            Coding::Br => self.br.as_ref(),
        }
    }

    /// Codings this object can be served in (identity first), without allocating.
    pub fn codings(&self) -> impl Iterator<Item = Coding> + Clone + '_ {
        [Coding::Identity, Coding::Gzip, Coding::Br]
            .into_iter()
            .filter(|c| self.variant(*c).is_some())
    }

    /// The ETag header value of one coding's representation.
    pub fn etag_value(&self, coding: Coding) -> Option<&HeaderValue> {
        self.etag_values[coding as usize].as_ref()
    }

    /// Current age in seconds (RFC 9111 §4.2.3).
    pub fn age(&self) -> u64 {
        self.freshness.initial_age + self.stored_at.elapsed().as_secs()
    }

    /// Seconds of freshness left; negative once stale. A soft-purged object is stale since the purge.
    pub fn ttl(&self) -> i64 {
        let natural = self.freshness.lifetime as i64 - self.age() as i64;
        match self.purged_at.load(Ordering::Relaxed) {
            0 => natural,
            p => {
                let since_purge = self.stored_at.elapsed().as_millis() as i64 - (p as i64 - 1);
                natural.min(-(since_purge / 1000) - 1)
            }
        }
    }

    /// Mark stale now, keeping the object for stale serving and revalidation.
    pub fn soft_purge(&self) {
        let at = self.stored_at.elapsed().as_millis() as u64 + 1;
        let _ = self
            .purged_at
            .compare_exchange(0, at, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Whether the object has validators the origin can check.
    pub fn has_validators(&self) -> bool {
        self.origin_etag.is_some() || self.last_modified.is_some()
    }

    /// How long moka should keep it: freshness left plus the longest stale window.
    fn keep_for(&self, revalidate_keep: u64) -> Duration {
        let left = self
            .freshness
            .lifetime
            .saturating_sub(self.freshness.initial_age);
        let total = left
            + self
                .freshness
                .stale_window(self.has_validators(), revalidate_keep);
        Duration::from_secs(total.max(1))
    }

    /// Bytes this object costs the cache budget.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len()
            + self.gzip.as_ref().map_or(0, |b| b.len())
            + self.br.as_ref().map_or(0, |b| b.len())
            + headers
            + self.tags.iter().map(|t| t.len() + 48).sum::<usize>()
            + 512
    }
}

/// What one cache key holds: the Vary variants of one URL.
#[derive(Debug)]
pub struct Entry {
    /// Variants, newest first.
    pub objects: Vec<Arc<CachedObject>>,
    /// Insert generation, for exact tag unlinking.
    gen: u64,
    /// Union of the variants' tags.
    tags: Vec<String>,
}

/// Result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// A variant matching the request.
    Hit(Arc<CachedObject>),
    /// The URL is stored, but not for this request's Vary values.
    VaryMiss,
    /// Nothing stored.
    Miss,
}

/// Byte-bounded object store with a surrogate-key index.
#[derive(Clone)]
pub struct Store {
    cache: moka::future::Cache<String, Arc<Entry>>,
    tags: Arc<TagIndex<Weak<Entry>>>,
    gen: Arc<AtomicU64>,
    max_variants: usize,
    /// Hard-purged keys not yet removed from moka.
    pending_removals: Arc<AtomicU64>,
}

/// Per-entry expiry; holds `cache.keep_for_revalidation` in seconds.
struct KeepFor(u64);

impl moka::Expiry<String, Arc<Entry>> for KeepFor {
    fn expire_after_create(&self, _k: &String, v: &Arc<Entry>, _now: Instant) -> Option<Duration> {
        v.objects.iter().map(|o| o.keep_for(self.0)).max()
    }
    fn expire_after_update(
        &self,
        _k: &String,
        v: &Arc<Entry>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        v.objects.iter().map(|o| o.keep_for(self.0)).max()
    }
}

impl Store {
    /// A store bounded to `max_bytes`, keeping at most `max_variants` Vary variants per URL.
    pub fn new(max_bytes: u64, max_variants: usize) -> Self {
        Self::with_revalidation_window(max_bytes, max_variants, Duration::from_secs(3600))
    }

    /// As [`Store::new`], keeping stale objects that have validators for `keep` past freshness.
    pub fn with_revalidation_window(max_bytes: u64, max_variants: usize, keep: Duration) -> Self {
        let tags = Arc::new(TagIndex::default());
        let listener_tags = tags.clone();
        let cache = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Arc<Entry>| {
                let w = k.len() + v.objects.iter().map(|o| o.weight()).sum::<usize>();
                u32::try_from(w).unwrap_or(u32::MAX)
            })
            .expire_after(KeepFor(keep.as_secs()))
            .eviction_listener(move |k: Arc<String>, v: Arc<Entry>, _cause: RemovalCause| {
                listener_tags.unlink(&k, v.gen, &v.tags);
            })
            .build();
        Self {
            cache,
            tags,
            gen: Arc::new(AtomicU64::new(1)),
            max_variants: max_variants.max(1),
            pending_removals: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Find the variant of `key` that matches the request headers.
    pub async fn lookup(&self, key: &str, req_headers: &HeaderMap) -> Lookup {
        let Some(entry) = self.cache.get(key).await else {
            return Lookup::Miss;
        };
        let mut live = false;
        for obj in entry
            .objects
            .iter()
            .filter(|o| !o.dead.load(Ordering::Relaxed))
        {
            live = true;
            if obj.vary.is_empty() || vary_values(&obj.vary, req_headers) == obj.vary_values {
                return Lookup::Hit(obj.clone());
            }
        }
        if live {
            Lookup::VaryMiss
        } else {
            Lookup::Miss
        }
    }

    /// Store `obj` under `key`, replacing the variant with the same Vary values.
    pub async fn insert(&self, key: String, obj: Arc<CachedObject>) {
        let mut objects = vec![obj.clone()];
        if !obj.vary.is_empty() {
            if let Some(old) = self.cache.get(&key).await {
                objects.extend(
                    old.objects
                        .iter()
                        .filter(|o| o.vary != obj.vary || o.vary_values != obj.vary_values)
                        .filter(|o| o.vary == obj.vary && !o.dead.load(Ordering::Relaxed))
                        .take(self.max_variants - 1)
                        .cloned(),
                );
            }
        }
        let mut tags: Vec<String> = Vec::new();
        for o in &objects {
            for t in &o.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
        }
        let gen = self.gen.fetch_add(1, Ordering::Relaxed);
        let entry = Arc::new(Entry { objects, gen, tags });
        // Link before inserting, so an immediate eviction of this entry always finds its links.
        self.tags
            .link(&key, gen, &Arc::downgrade(&entry), &entry.tags);
        self.cache.insert(key, entry).await;
    }

    /// Remove one key.
    pub async fn remove(&self, key: &str) {
        self.cache.invalidate(key).await;
    }

    /// Purge every entry under a tag; soft marks objects stale instead. Returns entries affected.
    ///
    /// Costs O(entries under the tag): each is marked through the index's handle (it stops being
    /// served at once), and the hard-purged keys leave moka in a background task.
    pub async fn purge_tag(&self, tag: &str, soft: bool) -> usize {
        let mut doomed = Vec::new();
        for (key, gen, handle) in self.tags.handles(tag) {
            let Some(entry) = handle.upgrade() else {
                continue;
            };
            if entry.objects.iter().all(|o| o.dead.load(Ordering::Relaxed)) {
                // Already purged under another tag, awaiting removal.
                continue;
            }
            for o in &entry.objects {
                if soft {
                    o.soft_purge();
                } else {
                    o.dead.store(true, Ordering::Relaxed);
                }
            }
            doomed.push((key, gen));
        }
        let n = doomed.len();
        if !soft && n > 0 {
            let cache = self.cache.clone();
            let pending = self.pending_removals.clone();
            pending.fetch_add(n as u64, Ordering::Relaxed);
            let remove = async move {
                for (key, gen) in doomed {
                    // Only the generation that was purged: a refill that raced in stays.
                    cache
                        .entry(key)
                        .and_compute_with(|cur| {
                            let op = match cur {
                                Some(e) if e.value().gen == gen => moka::ops::compute::Op::Remove,
                                _ => moka::ops::compute::Op::Nop,
                            };
                            std::future::ready(op)
                        })
                        .await;
                    pending.fetch_sub(1, Ordering::Relaxed);
                }
            };
            tokio::spawn(remove);
        }
        n
    }

    /// Purge everything. Returns entries affected.
    pub async fn purge_all(&self, soft: bool) -> usize {
        if soft {
            let mut n = 0;
            for (_, entry) in self.cache.iter() {
                entry.objects.iter().for_each(|o| o.soft_purge());
                n += 1;
            }
            return n;
        }
        self.cache.run_pending_tasks().await;
        let n = self.cache.entry_count() as usize;
        // Clear first: an insert racing in after this keeps its fresh links, and the listener's
        // generation check cleans up after entries invalidated below.
        self.tags.clear();
        self.cache.invalidate_all();
        n
    }

    /// Finish background purge removals and pending evictions so counts are exact (tests, metrics).
    pub async fn run_pending_tasks(&self) {
        // Bounded: a removal task does a few µs of work per key.
        for _ in 0..2000 {
            if self.pending_removals.load(Ordering::Relaxed) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.cache.run_pending_tasks().await;
    }

    /// Number of entries (URLs × credentials).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// Bytes charged against `max_size`.
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// The tag index (for metrics and tests).
    pub fn tag_index(&self) -> &TagIndex<Weak<Entry>> {
        &self.tags
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Freshness;

    fn obj(body: &'static str, tags: &[&str]) -> Arc<CachedObject> {
        Arc::new(CachedObject::new(
            StatusCode::OK,
            HeaderMap::new(),
            Bytes::from_static(body.as_bytes()),
            "\"e\"".into(),
            None,
            Freshness::for_lifetime(60),
            vec![],
            vec![],
            tags.iter().map(|t| t.to_string()).collect(),
            false,
        ))
    }

    #[tokio::test]
    async fn tag_purge_removes_only_tagged() {
        let s = Store::new(1 << 20, 4);
        s.insert("GET /a".into(), obj("a", &["p1", "all"])).await;
        s.insert("GET /b".into(), obj("b", &["p2", "all"])).await;
        assert_eq!(s.purge_tag("p1", false).await, 1);
        assert!(matches!(
            s.lookup("GET /a", &HeaderMap::new()).await,
            Lookup::Miss
        ));
        assert!(matches!(
            s.lookup("GET /b", &HeaderMap::new()).await,
            Lookup::Hit(_)
        ));
        s.run_pending_tasks().await;
        assert!(s.tag_index().keys("p1").is_empty());
        assert_eq!(s.purge_tag("all", true).await, 1);
        match s.lookup("GET /b", &HeaderMap::new()).await {
            Lookup::Hit(o) => assert!(o.ttl() < 0),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn replacement_keeps_index_exact() {
        let s = Store::new(1 << 20, 4);
        s.insert("GET /a".into(), obj("a", &["t1"])).await;
        s.insert("GET /a".into(), obj("a2", &["t2"])).await;
        s.run_pending_tasks().await;
        assert!(s.tag_index().keys("t1").is_empty());
        assert_eq!(s.tag_index().keys("t2").len(), 1);
    }

    #[tokio::test]
    async fn eviction_unlinks_tags() {
        let s = Store::new(64 * 1024, 4);
        for i in 0..2000 {
            s.insert(
                format!("GET /{i}"),
                obj("0123456789012345678901234567890123456789", &["t"]),
            )
            .await;
        }
        s.run_pending_tasks().await;
        assert!(s.weighted_size() <= 64 * 1024);
        assert_eq!(s.tag_index().keys("t").len() as u64, s.entry_count());
    }
}
