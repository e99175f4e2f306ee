//! The store, the only user of moka: Vary variants per key, byte-weighted capacity, per-entry
//! expiry, purges through the tag index, and the swap that adds encoded variants later.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::HeaderMap;
use moka::notification::RemovalCause;

use super::floor::Floor;
use super::object::CachedObject;
use super::purges::{PurgeLog, Since, Target, Ticket};
use super::tags::TagIndex;
use crate::clock::Clock;
use crate::rfc::storable::Retention;
use crate::rfc::vary::Vary;

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

/// Where the parts of `key`'s representation are kept: beside it, purged with it (same tags).
fn parts_key(key: &str) -> String {
    format!("{key} #parts")
}

/// What moka keeps per entry beyond the value: key copy, access-order and timer nodes, hashes.
const ENTRY_OVERHEAD: usize = 256;
/// What one (tag, key) link costs in the tag index beyond the tag's own bytes: the per-tag map
/// (allocated even for a tag of one key), its slot, the shared key and the entry handle.
const TAG_LINK_OVERHEAD: usize = 224;

impl Entry {
    /// Bytes this entry keeps, all counted against `max_size`: the key (held by moka and the
    /// tag index), every variant, and its tag-index links.
    fn weight(&self, key: &str) -> usize {
        2 * key.len()
            + ENTRY_OVERHEAD
            + self.objects.iter().map(|o| o.weight()).sum::<usize>()
            + self
                .tags
                .iter()
                .map(|t| 2 * t.len() + TAG_LINK_OVERHEAD)
                .sum::<usize>()
    }
}

/// Result of a lookup.
#[derive(Debug)]
pub enum Lookup {
    /// A variant matching the request.
    Hit(Arc<CachedObject>),
    /// The URL is stored, but not for this request's Vary values: the newest variant's Vary, and
    /// the live variants (newest first), which a 304 may still select (RFC 9111 §4.3.1).
    VaryMiss(Vary, Vec<Arc<CachedObject>>),
    /// Nothing stored.
    Miss,
}

/// Byte-bounded object store with a surrogate-key index.
#[derive(Clone)]
pub struct Store {
    cache: moka::future::Cache<String, Arc<Entry>>,
    tags: Arc<TagIndex<Weak<Entry>>>,
    gen: Arc<AtomicU64>,
    /// Variants per URL and retention: changed by a reload, read on every insert and lookup.
    limits: Arc<Limits>,
    /// Hard-purged keys not yet removed from moka.
    pending_removals: Arc<AtomicU64>,
    /// Time for objects' age and purge marks.
    clock: Clock,
    /// Recent purges, checked by fills that started before them.
    purges: Arc<PurgeLog>,
    /// Objects stored before this are soft-purged when read (a cluster node's gap).
    floor: Arc<Floor>,
}

/// The store's settings a reload may change (atomics: read on the hot path without a lock).
struct Limits {
    max_variants: AtomicUsize,
    revalidate_ms: AtomicU64,
    grace_ms: AtomicU64,
}

impl Limits {
    fn new(max_variants: usize, keep: Retention) -> Self {
        let l = Limits {
            max_variants: AtomicUsize::new(1),
            revalidate_ms: AtomicU64::new(0),
            grace_ms: AtomicU64::new(0),
        };
        l.set(max_variants, keep);
        l
    }

    fn set(&self, max_variants: usize, keep: Retention) {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.max_variants
            .store(max_variants.max(1), Ordering::Relaxed);
        self.revalidate_ms
            .store(ms(keep.revalidate), Ordering::Relaxed);
        self.grace_ms.store(ms(keep.grace), Ordering::Relaxed);
    }

    fn retention(&self) -> Retention {
        Retention {
            revalidate: Duration::from_millis(self.revalidate_ms.load(Ordering::Relaxed)),
            grace: Duration::from_millis(self.grace_ms.load(Ordering::Relaxed)),
        }
    }
}

/// Per-entry expiry: the longest any variant is kept, at least a second.
struct KeepFor(Arc<Limits>);

impl KeepFor {
    fn of(&self, v: &Entry) -> Option<Duration> {
        let keep = self.0.retention();
        let longest = v.objects.iter().map(|o| o.keep_for(keep)).max();
        longest.map(|d| d.max(Duration::from_secs(1)))
    }
}

impl moka::Expiry<String, Arc<Entry>> for KeepFor {
    fn expire_after_create(&self, _k: &String, v: &Arc<Entry>, _now: Instant) -> Option<Duration> {
        self.of(v)
    }
    fn expire_after_update(
        &self,
        _k: &String,
        v: &Arc<Entry>,
        _now: Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        self.of(v)
    }
}

impl Store {
    /// A store bounded to `max_bytes`, keeping at most `max_variants` Vary variants per URL.
    pub fn new(max_bytes: u64, max_variants: usize) -> Self {
        Self::with_retention(max_bytes, max_variants, Retention::default())
    }

    /// As [`Store::new`], keeping stale objects past freshness as `keep` says.
    pub fn with_retention(max_bytes: u64, max_variants: usize, keep: Retention) -> Self {
        let tags = Arc::new(TagIndex::default());
        let limits = Arc::new(Limits::new(max_variants, keep));
        let listener_tags = tags.clone();
        let clock = Clock::default();
        let cache = moka::future::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Arc<Entry>| u32::try_from(v.weight(k)).unwrap_or(u32::MAX))
            .expire_after(KeepFor(limits.clone()))
            .eviction_listener(move |k: Arc<String>, v: Arc<Entry>, _cause: RemovalCause| {
                listener_tags.unlink(&k, v.gen, &v.tags);
            })
            .build();
        Self {
            cache,
            tags,
            gen: Arc::new(AtomicU64::new(1)),
            limits,
            pending_removals: Arc::new(AtomicU64::new(0)),
            floor: Arc::new(Floor::new(clock.now())),
            clock,
            purges: Arc::new(PurgeLog::default()),
        }
    }

    /// Apply a reloaded `cache.max_variants` and retention: lookups and inserts from now on
    /// use them; entries keep the expiry they were given until their next update.
    pub fn set_limits(&self, max_variants: usize, keep: Retention) {
        self.limits.set(max_variants, keep);
    }

    /// Find the variant of `key` that matches the request headers. A variant kept its whole
    /// time by the store's clock is not found, even while moka (on real time) still holds it.
    pub async fn lookup(&self, key: &str, req_headers: &HeaderMap) -> Lookup {
        let Some(entry) = self.cache.get(key).await else {
            return Lookup::Miss;
        };
        let now = self.clock.now();
        self.below_floor(&entry.objects, now);
        let live = || entry.objects.iter().filter(|o| self.live(o, now));
        // A hit clones one Arc; only a miss gathers the other variants.
        if let Some(obj) = live().find(|o| o.vary.matches(req_headers)) {
            return Lookup::Hit(obj.clone());
        }
        let others: Vec<_> = live().cloned().collect();
        match others.first() {
            Some(o) => Lookup::VaryMiss(o.vary.clone(), others),
            None => Lookup::Miss,
        }
    }

    /// The live parts (206 answers, `proxy::partial`) kept for `key`.
    pub async fn parts(&self, key: &str) -> Vec<Arc<CachedObject>> {
        let Some(entry) = self.cache.get(&parts_key(key)).await else {
            return Vec::new();
        };
        let now = self.clock.now();
        self.below_floor(&entry.objects, now);
        let live = entry.objects.iter().filter(|o| self.live(o, now));
        live.cloned().collect()
    }

    /// Soft-purge the objects stored before the floor, if there is one (a few atomic reads when
    /// there is none).
    fn below_floor(&self, objects: &[Arc<CachedObject>], now: Instant) {
        if let Some(floor) = self.floor.at(now) {
            objects
                .iter()
                .filter(|o| o.stored_at < floor)
                .for_each(|o| o.soft_purge(floor));
        }
    }

    /// Treat everything stored so far as soft-purged, before the next lookup: a node that may
    /// have missed purges. Fills already under way are stored stale. Returns the entries held.
    pub fn soft_purge_everything(&self) -> u64 {
        self.purges.record(Target::All, true);
        self.floor.raise(self.clock.now());
        self.cache.entry_count()
    }

    /// Cut off from the cluster's purge log since `since` (`None`: in contact): once that lasts
    /// longer than `lag`, objects older than `lag` are soft-purged when read.
    pub fn set_cut_off(&self, since: Option<Instant>, lag: Duration) {
        self.floor.set_cut_off(since, lag);
    }

    /// Replace the parts kept for `key` by `parts` (none: drop them), unless a hard purge since
    /// `ticket` covered them; a soft one keeps them stale. As [`Store::insert_fill`].
    pub async fn set_parts(&self, key: &str, parts: Vec<Arc<CachedObject>>, ticket: Ticket) {
        let key = parts_key(key);
        if parts.is_empty() {
            return self.cache.invalidate(&key).await;
        }
        let tags: Vec<String> = parts.iter().flat_map(|o| o.tags.clone()).collect();
        match self.purges.since(ticket, &tags) {
            Since::Hard => return,
            Since::Soft => parts.iter().for_each(|o| o.soft_purge(self.clock.now())),
            Since::Nothing => {}
        }
        let entry = self.entry(&key, parts.clone());
        self.cache.insert(key, entry).await;
        match self.purges.since(ticket, &tags) {
            Since::Hard => parts.iter().for_each(|o| o.kill()),
            Since::Soft => parts.iter().for_each(|o| o.soft_purge(self.clock.now())),
            Since::Nothing => {}
        }
    }

    /// Store `obj` under `key`, replacing the variant with the same Vary values.
    pub async fn insert(&self, key: String, obj: Arc<CachedObject>) {
        let now = self.clock.now();
        self.put(&key, |cur| {
            let mut objects = vec![obj.clone()];
            if let (Some(e), false) = (cur, obj.vary.is_empty()) {
                objects.extend(self.other_variants(e, &obj, |o| self.live(o, now)));
            }
            Some(objects)
        })
        .await;
    }

    /// Put the entry `build` makes from the current one (`None`: leave it alone), through the
    /// key's compute lock, as the purges' background removals are: a plain insert could land
    /// between a removal's check of the generation and its remove, and be removed. Returns
    /// whether it put.
    async fn put(
        &self,
        key: &str,
        build: impl FnOnce(Option<&Entry>) -> Option<Vec<Arc<CachedObject>>>,
    ) -> bool {
        let mut put = false;
        self.cache
            .entry_by_ref(key)
            .and_compute_with(|cur| {
                let op = match build(cur.as_ref().map(|e| &**e.value())) {
                    Some(objects) => {
                        put = true;
                        moka::ops::compute::Op::Put(self.entry(key, objects))
                    }
                    None => moka::ops::compute::Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        put
    }

    /// The variants of `e` kept beside `new`: the other Vary values of the same fields that
    /// `keep` accepts, up to `max_variants` in all.
    fn other_variants<'e>(
        &self,
        e: &'e Entry,
        new: &'e CachedObject,
        keep: impl Fn(&CachedObject) -> bool + 'e,
    ) -> impl Iterator<Item = Arc<CachedObject>> + 'e {
        e.objects
            .iter()
            .filter(move |o| o.vary.same_fields(&new.vary) && o.vary != new.vary && keep(o))
            .take(self.limits.max_variants.load(Ordering::Relaxed) - 1)
            .cloned()
    }

    /// Neither purged nor kept past its time.
    fn live(&self, obj: &CachedObject, now: Instant) -> bool {
        !obj.is_dead() && !obj.outlived(now, self.limits.retention())
    }

    /// Where the purge sequence stands: a fill takes this before asking the origin.
    pub fn purge_ticket(&self) -> Ticket {
        self.purges.ticket()
    }

    /// Store a fill's object unless a purge since `ticket` covered it: a hard purge wins (the
    /// object is not kept), a soft one stores it stale. Checked again after inserting, so a purge
    /// racing the insert either sees the entry in the tag index or is seen here.
    /// Returns whether the object was stored fresh.
    pub async fn insert_fill(&self, key: &str, obj: &Arc<CachedObject>, ticket: Ticket) -> bool {
        self.store_checked(key, obj, ticket, None).await
    }

    /// As [`Store::insert_fill`], but only in place of `old` (or a copy of it sharing its marks,
    /// such as the encoder's): an update of a stored response must not overwrite a newer one a
    /// concurrent fill stored meanwhile. Returns whether `new` was stored fresh.
    pub async fn replace_fill(
        &self,
        key: &str,
        old: &Arc<CachedObject>,
        new: &Arc<CachedObject>,
        ticket: Ticket,
    ) -> bool {
        self.store_checked(key, new, ticket, Some(old)).await
    }

    /// The purge checks around an insert (or, with `old`, a replacement).
    async fn store_checked(
        &self,
        key: &str,
        obj: &Arc<CachedObject>,
        ticket: Ticket,
        old: Option<&Arc<CachedObject>>,
    ) -> bool {
        match self.purges.since(ticket, &obj.tags) {
            Since::Hard => return false,
            Since::Soft => obj.soft_purge(self.clock.now()),
            Since::Nothing => {}
        }
        match old {
            None => self.insert(key.to_string(), obj.clone()).await,
            Some(old) => {
                if !self.replace(key, old, obj.clone()).await {
                    return false;
                }
            }
        }
        match self.purges.since(ticket, &obj.tags) {
            Since::Hard => obj.kill(),
            Since::Soft => obj.soft_purge(self.clock.now()),
            Since::Nothing => return true,
        }
        false
    }

    /// Put `new` in place of `old` (or its copy) if that is still stored and alive, keeping the
    /// other variants as [`Store::insert`] would. Returns whether it replaced.
    async fn replace(&self, key: &str, old: &Arc<CachedObject>, new: Arc<CachedObject>) -> bool {
        self.put(key, |cur| {
            let e =
                cur.filter(|e| !old.is_dead() && e.objects.iter().any(|o| o.same_response(old)))?;
            let mut objects = vec![new.clone()];
            objects.extend(self.other_variants(e, &new, |o| !o.same_response(old) && !o.is_dead()));
            Some(objects)
        })
        .await
    }

    /// A new entry for `key`, linked in the tag index before moka sees it, so an immediate
    /// eviction always finds its links.
    fn entry(&self, key: &str, objects: Vec<Arc<CachedObject>>) -> Arc<Entry> {
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
        self.tags
            .link(key, gen, &Arc::downgrade(&entry), &entry.tags);
        entry
    }

    /// Replace `old` by `new` (the same response, now with encoded variants) if `old` is still
    /// stored and alive; otherwise leave the entry alone. Returns whether it swapped.
    pub async fn swap(&self, key: &str, old: &Arc<CachedObject>, new: Arc<CachedObject>) -> bool {
        self.put(key, |cur| {
            let e =
                cur.filter(|e| !old.is_dead() && e.objects.iter().any(|o| Arc::ptr_eq(o, old)))?;
            let swapped = e.objects.iter().map(|o| {
                if Arc::ptr_eq(o, old) {
                    new.clone()
                } else {
                    o.clone()
                }
            });
            Some(swapped.collect())
        })
        .await
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
        self.purges.record(Target::Tag(tag.to_string()), soft);
        let mut doomed = Vec::new();
        for (key, gen, handle) in self.tags.handles(tag) {
            let Some(entry) = handle.upgrade() else {
                continue;
            };
            if entry.objects.iter().all(|o| o.is_dead()) {
                // Already purged under another tag, awaiting removal.
                continue;
            }
            for o in &entry.objects {
                if soft {
                    o.soft_purge(self.clock.now());
                } else {
                    o.kill();
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

    /// Purge everything. Returns entries affected. A soft purge-all raises the floor (every
    /// object is marked when next read), so it costs the same whatever the cache holds.
    pub async fn purge_all(&self, soft: bool) -> usize {
        if soft {
            self.cache.run_pending_tasks().await;
            return self.soft_purge_everything() as usize;
        }
        self.purges.record(Target::All, false);
        // Kill first: an insert racing this may carry older variants of its key along, and a
        // dead variant is never carried nor served.
        for (_, entry) in self.cache.iter() {
            entry.objects.iter().for_each(|o| o.kill());
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

    /// The clock objects in this store are aged by.
    pub fn clock(&self) -> &Clock {
        &self.clock
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
mod tests;
