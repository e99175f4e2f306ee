//! One stored response: headers, the identity body, its encoded variants and what the cache needs
//! to decide on reuse (freshness, validators, Vary, tags, purge marks).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};

use crate::rfc::coding::Coding;
use crate::rfc::conditional::variant_etag;
use crate::rfc::storable::{Freshness, Retention};
use crate::rfc::update::Validators;
use crate::rfc::usage::Stored;
use crate::rfc::vary::Vary;

/// What a fill knows about a response it is about to store.
#[derive(Debug)]
pub struct NewObject {
    /// Response status.
    pub status: StatusCode,
    /// End-to-end headers, detached from hyper's read buffer.
    pub headers: HeaderMap,
    /// The identity body.
    pub body: Bytes,
    /// The origin's own encoded bytes (gzip or zstd) when it sent them: kept as that variant.
    pub origin_encoded: Option<(Coding, Bytes)>,
    /// The identity representation's ETag as clients see it (origin's or generated), as bytes.
    pub etag: HeaderValue,
    /// The origin's own ETag, for conditional refreshes.
    pub origin_etag: Option<HeaderValue>,
    /// Lifetime and stale windows.
    pub freshness: Freshness,
    /// The Vary variant this object is.
    pub vary: Vary,
    /// Surrogate keys, route tags and the URL tag.
    pub tags: Vec<String>,
    /// The origin said no-transform: never served encoded by this proxy.
    pub no_transform: bool,
    /// Worth compressing: encoded variants are computed after it is stored.
    pub compressible: bool,
}

/// Purge marks, shared by every copy of one stored response (an encoded copy, say), so a purge
/// racing a swap marks both.
#[derive(Debug, Default)]
struct Marks {
    /// Milliseconds after `stored_at` + 1 at which it was soft-purged; 0 = never.
    purged_at: AtomicU64,
    /// Hard-purged: never served again, removed from moka in the background.
    dead: AtomicBool,
}

/// One stored response (one Vary variant of a URL), with every content-coding computed once.
#[derive(Debug)]
pub struct CachedObject {
    /// Response status.
    pub status: StatusCode,
    /// End-to-end headers as the client gets them, minus Content-Length/Content-Encoding/ETag/Age.
    pub headers: HeaderMap,
    /// The identity body.
    pub body: Bytes,
    /// Encoded bodies by coding discriminant (the identity slot stays empty), each kept only
    /// where smaller than the identity body.
    variants: [Option<Bytes>; 4],
    /// Encoded variants were computed (whether or not they were worth keeping).
    encoded: bool,
    /// An encoding of this object is queued or running.
    encoding: AtomicBool,
    /// The identity representation's ETag, as clients see it (origin's or generated), as bytes.
    pub etag: HeaderValue,
    /// Header values of each coding's ETag, built once instead of on every hit.
    etag_values: [HeaderValue; 4],
    /// The origin's own ETag, used to revalidate upstream.
    pub origin_etag: Option<HeaderValue>,
    /// Last-Modified, for If-Modified-Since both ways.
    pub last_modified: Option<HeaderValue>,
    /// Lifetime and stale windows.
    pub freshness: Freshness,
    /// When it was stored, on the store's clock (resident time for Age).
    pub stored_at: Instant,
    marks: Arc<Marks>,
    /// The Vary variant this object is.
    pub vary: Vary,
    /// Surrogate keys, plus the URL tag.
    pub tags: Vec<String>,
    /// The origin said no-transform: never served encoded by this proxy.
    pub no_transform: bool,
    /// Worth compressing (type, size, settings).
    pub compressible: bool,
}

impl CachedObject {
    /// A new object stored at `stored_at` (the store's clock).
    pub fn new(o: NewObject, stored_at: Instant) -> Self {
        let headers = per_response_removed(o.headers);
        let last_modified = headers.get(header::LAST_MODIFIED).cloned();
        let compressible = o.compressible && !o.no_transform;
        let mut variants: [Option<Bytes>; 4] = Default::default();
        if let Some((coding, bytes)) = o.origin_encoded {
            if compressible && coding != Coding::Identity && bytes.len() < o.body.len() {
                variants[coding as usize] = Some(bytes);
            }
        }
        Self {
            status: o.status,
            headers,
            variants,
            body: o.body,
            encoded: false,
            encoding: AtomicBool::new(false),
            etag_values: Coding::ALL.map(|c| variant_etag(&o.etag, c)),
            etag: o.etag,
            origin_etag: o.origin_etag,
            last_modified,
            freshness: o.freshness,
            stored_at,
            marks: Arc::default(),
            vary: o.vary,
            tags: o.tags,
            no_transform: o.no_transform,
            compressible,
        }
    }

    /// The same response with encoded variants added where it had none (kept only where smaller
    /// than identity). It shares this object's purge marks and age: it is the same stored response.
    pub fn with_encodings(&self, encoded: impl IntoIterator<Item = (Coding, Bytes)>) -> Self {
        let mut variants = self.variants.clone();
        for (coding, bytes) in encoded {
            let slot = &mut variants[coding as usize];
            if coding != Coding::Identity && slot.is_none() && bytes.len() < self.body.len() {
                *slot = Some(bytes);
            }
        }
        Self {
            variants,
            encoded: true,
            ..self.copy()
        }
    }

    /// RFC 9111 §4.3.4 / §4.3.5: the stored response updated by a 304 (or a HEAD response) that
    /// selected it, stored anew at `stored_at` as the variant `vary`. Its ETags stay as they were:
    /// the update selected this representation, so clients and the origin keep agreeing on them.
    pub fn refreshed(
        &self,
        headers: HeaderMap,
        freshness: Freshness,
        vary: Vary,
        stored_at: Instant,
    ) -> Self {
        let headers = per_response_removed(headers);
        Self {
            last_modified: headers.get(header::LAST_MODIFIED).cloned(),
            headers,
            freshness,
            vary,
            stored_at,
            marks: Arc::default(),
            ..self.copy()
        }
    }

    /// A field-by-field copy (bodies are reference-counted) sharing the purge marks.
    fn copy(&self) -> Self {
        Self {
            status: self.status,
            headers: self.headers.clone(),
            body: self.body.clone(),
            variants: self.variants.clone(),
            encoded: self.encoded,
            encoding: AtomicBool::new(false),
            etag: self.etag.clone(),
            etag_values: self.etag_values.clone(),
            origin_etag: self.origin_etag.clone(),
            last_modified: self.last_modified.clone(),
            freshness: self.freshness,
            stored_at: self.stored_at,
            marks: self.marks.clone(),
            vary: self.vary.clone(),
            tags: self.tags.clone(),
            no_transform: self.no_transform,
            compressible: self.compressible,
        }
    }

    /// Whether encoded variants are still to be computed.
    pub fn needs_encoding(&self) -> bool {
        self.compressible && !self.encoded
    }

    /// Claim this object's encoding; false when it needs none or another caller has it.
    pub fn claim_encoding(&self) -> bool {
        self.needs_encoding() && !self.encoding.swap(true, Ordering::Relaxed)
    }

    /// Give the claim back (the encoder had no room), so a later hit can try again.
    pub fn release_encoding(&self) {
        self.encoding.store(false, Ordering::Relaxed);
    }

    /// The bytes for a coding, if stored.
    pub fn variant(&self, coding: Coding) -> Option<&Bytes> {
        match coding {
            Coding::Identity => Some(&self.body),
            c => self.variants[c as usize].as_ref(),
        }
    }

    /// Codings this object can be served in (identity first), without allocating.
    pub fn codings(&self) -> impl Iterator<Item = Coding> + Clone + '_ {
        Coding::ALL
            .into_iter()
            .filter(|c| self.variant(*c).is_some())
    }

    /// The ETag header value of one coding's representation.
    pub fn etag_value(&self, coding: Coding) -> &HeaderValue {
        &self.etag_values[coding as usize]
    }

    /// What the use-time decision needs to know about this object at `now`.
    pub fn stored(&self, now: Instant) -> Stored {
        let resident = now.saturating_duration_since(self.stored_at);
        let purged_ago = match self.marks.purged_at.load(Ordering::Relaxed) {
            0 => None,
            p => Some(resident.saturating_sub(Duration::from_millis(p - 1))),
        };
        Stored {
            freshness: self.freshness,
            age: Duration::from_secs(self.freshness.initial_age) + resident,
            purged_ago,
        }
    }

    /// Age in whole seconds at `now`, as the `Age` header carries it (RFC 9111 §4.2.3, §5.1).
    pub fn age(&self, now: Instant) -> u64 {
        self.stored(now).age.as_secs()
    }

    /// Seconds of freshness left at `now`; negative once stale or soft-purged.
    pub fn ttl(&self, now: Instant) -> i64 {
        self.stored(now).ttl()
    }

    /// Mark stale from `now` on, keeping the object for stale serving and revalidation. The
    /// earliest mark wins: a purge the store's floor applies late (when the object is read) may
    /// come after a later one that marked it at once.
    pub fn soft_purge(&self, now: Instant) {
        let at = now.saturating_duration_since(self.stored_at).as_millis() as u64 + 1;
        let _ = self
            .marks
            .purged_at
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
                (cur == 0 || at < cur).then_some(at)
            });
    }

    /// Never serve it again.
    pub fn kill(&self) {
        self.marks.dead.store(true, Ordering::Relaxed);
    }

    /// Hard-purged.
    pub fn is_dead(&self) -> bool {
        self.marks.dead.load(Ordering::Relaxed)
    }

    /// Whether `other` is this stored response or a copy of it (they share the purge marks).
    pub fn same_response(&self, other: &CachedObject) -> bool {
        Arc::ptr_eq(&self.marks, &other.marks)
    }

    /// The validators the origin knows this response by (its own ETag, Last-Modified).
    pub fn validators(&self) -> Validators<'_> {
        Validators {
            etag: self.origin_etag.as_ref().map(|v| v.as_bytes()),
            last_modified: self.last_modified.as_ref().map(|v| v.as_bytes()),
        }
    }

    /// Whether the object has validators the origin can check.
    pub fn has_validators(&self) -> bool {
        self.origin_etag.is_some() || self.last_modified.is_some()
    }

    /// How long after it was stored it is kept: freshness left plus the longest stale window.
    pub fn keep_for(&self, keep: Retention) -> Duration {
        let left = self
            .freshness
            .lifetime
            .saturating_sub(self.freshness.initial_age);
        Duration::from_secs(left) + self.freshness.stale_window(self.has_validators(), keep)
    }

    /// Whether it has been kept its whole [`keep_for`](Self::keep_for) by `now` on the store's
    /// clock: then it is gone, whether or not moka (on real time) has removed it yet.
    pub fn outlived(&self, now: Instant, keep: Retention) -> bool {
        now.saturating_duration_since(self.stored_at) > self.keep_for(keep)
    }

    /// Bytes this object costs the cache budget.
    pub fn weight(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.len()
            + self
                .variants
                .iter()
                .flatten()
                .map(Bytes::len)
                .sum::<usize>()
            + headers
            + self.vary.weight()
            + self.etag.len() * 4
            + self.tags.iter().map(|t| t.len() + 48).sum::<usize>()
            + 512
    }
}

/// Stored headers without the fields set per response from the stored body, ETag and age.
fn per_response_removed(mut headers: HeaderMap) -> HeaderMap {
    for h in [header::CONTENT_LENGTH, header::ETAG, header::AGE] {
        headers.remove(h);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;

    fn object(lifetime: u64, at: Instant) -> CachedObject {
        CachedObject::new(
            NewObject {
                status: StatusCode::OK,
                headers: HeaderMap::new(),
                body: Bytes::from_static(b"{\"a\":1}"),
                origin_encoded: None,
                etag: HeaderValue::from_static("\"e\""),
                origin_etag: None,
                freshness: Freshness::for_lifetime(lifetime),
                vary: Vary::default(),
                tags: vec![],
                no_transform: false,
                compressible: true,
            },
            at,
        )
    }

    #[test]
    fn ages_on_the_injected_clock() {
        let clock = Clock::default();
        let o = object(60, clock.now());
        assert_eq!(o.ttl(clock.now()), 60);
        clock.advance(Duration::from_secs(45));
        assert_eq!((o.age(clock.now()), o.ttl(clock.now())), (45, 15));
        o.soft_purge(clock.now());
        assert_eq!(o.ttl(clock.now()), -1);
        clock.advance(Duration::from_secs(5));
        assert_eq!(o.ttl(clock.now()), -6);
    }

    #[test]
    fn kept_for_the_longest_window_or_the_grace() {
        let f = |swr, sie, must_revalidate, no_cache| Freshness {
            swr,
            sie,
            must_revalidate,
            no_cache,
            ..Freshness::for_lifetime(60)
        };
        let keep = |grace| Retention {
            revalidate: Duration::from_secs(3600),
            grace: Duration::from_secs(grace),
        };
        // (row, freshness, has validators, grace, seconds kept after storing)
        let rows: &[(&str, Freshness, bool, u64, u64)] = &[
            (
                "no windows: the grace",
                f(0, 0, false, false),
                false,
                10,
                70,
            ),
            (
                "grace 0s: until expiry",
                f(0, 0, false, false),
                false,
                0,
                60,
            ),
            (
                "swr longer than the grace",
                f(30, 0, false, false),
                false,
                10,
                90,
            ),
            (
                "sie longer than the grace",
                f(0, 300, false, false),
                false,
                10,
                360,
            ),
            (
                "must-revalidate: no grace",
                f(0, 0, true, false),
                false,
                10,
                60,
            ),
            ("no-cache: no grace", f(0, 0, false, true), false, 10, 60),
            (
                "validators: for revalidation",
                f(0, 0, true, false),
                true,
                10,
                3660,
            ),
        ];
        let clock = Clock::default();
        for (row, freshness, validators, grace, secs) in rows {
            let mut o = object(60, clock.now());
            o.freshness = *freshness;
            if *validators {
                o.origin_etag = Some(HeaderValue::from_static("\"v\""));
            }
            let kept = Duration::from_secs(*secs);
            assert_eq!(o.keep_for(keep(*grace)), kept, "{row}");
            assert!(!o.outlived(o.stored_at + kept, keep(*grace)), "{row}");
            let after = o.stored_at + kept + Duration::from_millis(1);
            assert!(o.outlived(after, keep(*grace)), "{row}");
        }
    }

    #[test]
    fn encoded_copy_shares_marks_and_keeps_etags() {
        let clock = Clock::default();
        let o = object(60, clock.now());
        assert!(o.needs_encoding());
        let e = o.with_encodings([
            (Coding::Gzip, Bytes::from_static(b"g")),
            (Coding::Br, Bytes::from_static(b"0123456789")),
            (Coding::Zstd, Bytes::from_static(b"z")),
            (Coding::Identity, Bytes::from_static(b"i")),
        ]);
        assert!(!e.needs_encoding());
        assert_eq!(
            e.codings().collect::<Vec<_>>(),
            [Coding::Identity, Coding::Gzip, Coding::Zstd],
            "br is no smaller than identity: not kept"
        );
        assert_eq!(e.variant(Coding::Identity), Some(&o.body));
        assert_eq!(e.variant(Coding::Zstd).map(|b| &b[..]), Some(&b"z"[..]));
        assert_eq!(e.etag_value(Coding::Gzip), "\"e-gz\"");
        assert_eq!(e.etag_value(Coding::Zstd), "\"e-zst\"");
        assert_eq!(
            e.weight(),
            o.weight() + 2,
            "each kept variant counts in the weight"
        );
        // A variant already there (the origin's own bytes) is kept, not replaced.
        let again = e.with_encodings([(Coding::Zstd, Bytes::from_static(b"y"))]);
        assert_eq!(again.variant(Coding::Zstd).map(|b| &b[..]), Some(&b"z"[..]));
        o.kill();
        assert!(
            e.is_dead(),
            "a purge of the original reaches its encoded copy"
        );
    }
}
