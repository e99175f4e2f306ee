//! Hit-for-pass: a key whose response could not be stored skips collapsing for a while, so
//! requests for it go to the origin in parallel instead of queueing behind one another.
//!
//! Bounded in bytes: when full, expired marks are swept, and if that frees nothing new marks are
//! dropped (hit-for-pass only saves waiting; forgetting a mark loses nothing).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::StatusCode;

use crate::clock::Clock;
use crate::rfc::storable::NoStore;

/// Bytes a mark costs beyond its key (map slot, reason, instant).
const MARK_OVERHEAD: usize = 64;

/// Keys recently found uncacheable, with why.
pub struct PassMemory {
    marks: DashMap<String, (NoStore, Instant)>,
    bytes: AtomicUsize,
    max_bytes: usize,
    clock: Clock,
}

/// Whether an unstorable response says something about the key for every client, so the key
/// may skip collapsing: a success or redirect that is `no-store`, `private`, `Vary: *` or too
/// large, to an ordinary request (no credentials, cookies or request directives, which the key
/// ignores but the origin may answer to). Errors never mark a key: one bad request must not
/// switch caching off for everyone.
pub fn worth_remembering(ordinary: bool, status: StatusCode, reason: NoStore) -> bool {
    ordinary
        && (status.is_success() || status.is_redirection())
        && matches!(
            reason,
            NoStore::NoStore | NoStore::Private | NoStore::VaryStar | NoStore::TooLarge
        )
}

impl PassMemory {
    /// Marks that take at most `max_bytes`.
    pub fn new(max_bytes: usize, clock: Clock) -> Self {
        Self {
            marks: DashMap::new(),
            bytes: AtomicUsize::new(0),
            max_bytes,
            clock,
        }
    }

    /// Why `key` is marked pass, if it is.
    pub fn get(&self, key: &str) -> Option<NoStore> {
        let (reason, until) = *self.marks.get(key)?;
        if self.clock.now() < until {
            return Some(reason);
        }
        self.forget(key);
        None
    }

    /// Mark `key` pass for `ttl` (`cache.hit_for_pass`; 0 marks nothing).
    pub fn remember(&self, key: &str, reason: NoStore, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let cost = key.len() + MARK_OVERHEAD;
        if self.bytes.load(Ordering::Relaxed) + cost > self.max_bytes {
            self.sweep();
            if self.bytes.load(Ordering::Relaxed) + cost > self.max_bytes {
                tracing::debug!("hit-for-pass memory full: mark dropped");
                return;
            }
        }
        let until = self.clock.now() + ttl;
        if self
            .marks
            .insert(key.to_string(), (reason, until))
            .is_none()
        {
            self.bytes.fetch_add(cost, Ordering::Relaxed);
        }
    }

    /// Bytes held by marks.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Clear `key`'s mark (a cacheable answer came back).
    pub fn forget(&self, key: &str) {
        if self.marks.remove(key).is_some() {
            self.bytes
                .fetch_sub(key.len() + MARK_OVERHEAD, Ordering::Relaxed);
        }
    }

    fn sweep(&self) {
        let now = self.clock.now();
        self.marks.retain(|k, (_, until)| {
            let keep = now < *until;
            if !keep {
                self.bytes
                    .fetch_sub(k.len() + MARK_OVERHEAD, Ordering::Relaxed);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_expire_on_the_clock() {
        let clock = Clock::default();
        let m = PassMemory::new(1 << 20, clock.clone());
        m.remember("GET /a", NoStore::Private, Duration::from_secs(10));
        assert_eq!(m.get("GET /a"), Some(NoStore::Private));
        assert_eq!(m.get("GET /b"), None);
        clock.advance(Duration::from_secs(10));
        assert_eq!(m.get("GET /a"), None);
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn bounded_in_bytes() {
        let clock = Clock::default();
        let m = PassMemory::new(1000, clock.clone());
        for i in 0..100 {
            m.remember(
                &format!("GET /{i}"),
                NoStore::NoStore,
                Duration::from_secs(10),
            );
        }
        assert!(m.bytes() <= 1000);
        assert!(m.get("GET /0").is_some() && m.get("GET /99").is_none());
        // Once the old marks expire, new ones fit again.
        clock.advance(Duration::from_secs(11));
        m.remember("GET /new", NoStore::NoStore, Duration::from_secs(10));
        assert!(m.get("GET /new").is_some());
        assert!(m.bytes() <= 1000);
    }

    #[test]
    fn disabled_and_rules() {
        let m = PassMemory::new(1 << 20, Clock::default());
        m.remember("GET /a", NoStore::Private, Duration::ZERO);
        assert_eq!(m.get("GET /a"), None);
        // (ordinary request, status, reason, remembered)
        let rows = [
            (true, StatusCode::OK, NoStore::NoStore, true),
            (true, StatusCode::OK, NoStore::Private, true),
            (true, StatusCode::OK, NoStore::VaryStar, true),
            (true, StatusCode::OK, NoStore::TooLarge, true),
            (true, StatusCode::MOVED_PERMANENTLY, NoStore::NoStore, true),
            (false, StatusCode::OK, NoStore::NoStore, false),
            (true, StatusCode::BAD_REQUEST, NoStore::NoStore, false),
            (true, StatusCode::NOT_FOUND, NoStore::Private, false),
            (true, StatusCode::BAD_GATEWAY, NoStore::TooLarge, false),
            (true, StatusCode::OK, NoStore::SetCookie, false),
            (true, StatusCode::OK, NoStore::NoFreshness, false),
            (true, StatusCode::OK, NoStore::Authorization, false),
        ];
        for (ordinary, status, reason, want) in rows {
            assert_eq!(
                worth_remembering(ordinary, status, reason),
                want,
                "{ordinary} {status} {reason:?}"
            );
        }
    }
}
