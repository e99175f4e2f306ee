//! Credential verdicts for `auth = "shared-verified"` routes: the origin stays the authority on
//! who may read. An entry stored once under the URL key is served to a credential only while the
//! origin accepted that credential (a 2xx on the same route) within `verify_ttl`; a credential it
//! rejected (401/403) is answered locally, with the origin's status, for `reject_ttl`.
//!
//! Verdicts are kept per route and per sha256 of what identifies the asker (host, credential,
//! cookies; never the secret itself), and bounded in bytes: rejections get a quarter of the budget, so a flood of bad keys cannot push out the
//! verdicts of good ones. A verdict that does not fit is not kept: that credential is verified
//! again on its next request (correct, only slower).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use sha2::{Digest, Sha256};

use crate::clock::Clock;

/// Bytes a verdict costs beyond a rejection's challenge (map slot, key, deadline).
const VERDICT_COST: usize = 112;
/// Longest `WWW-Authenticate` value replayed with a cached rejection.
const MAX_CHALLENGE: usize = 512;

/// How long verdicts last on a `shared-verified` route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// An accepted credential is trusted this long.
    pub verify_ttl: Duration,
    /// A rejected credential is answered locally this long.
    pub reject_ttl: Duration,
}

/// Who is asking, as verdicts see it: a sha256 of the route's pattern and of everything that may
/// identify the asker to the origin (the host it asked, its credential, its cookies). The pattern,
/// not the route's index, so a reload that reorders routes cannot lend one route's verdicts to
/// another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerdictKey {
    class: [u8; 32],
}

impl VerdictKey {
    /// The verdict class of a request for `origin` (the cache key's scheme, host and forwarding
    /// part) on the route with pattern `route`. Without a credential or cookie it is the "anonymous" class of that
    /// host; an empty credential is a credential. Cookies count because an origin may
    /// authenticate by session cookie, which an anonymous verdict must not stand for.
    pub fn new<'a>(
        route: &str,
        origin: &str,
        credential: Option<&HeaderValue>,
        cookies: impl Iterator<Item = &'a HeaderValue>,
    ) -> Self {
        let mut h = Sha256::new();
        h.update((route.len() as u64).to_le_bytes());
        h.update(route.as_bytes());
        h.update(origin.as_bytes());
        match credential {
            None => h.update([0]),
            Some(c) => {
                h.update([1]);
                h.update((c.len() as u64).to_le_bytes());
                h.update(c.as_bytes());
            }
        }
        for c in cookies {
            h.update([2]);
            h.update((c.len() as u64).to_le_bytes());
            h.update(c.as_bytes());
        }
        VerdictKey {
            class: h.finalize().into(),
        }
    }

    /// A collapsing suffix: requests still to be verified only ever wait for their own class's
    /// origin answer.
    pub fn flight_suffix(&self) -> String {
        format!(" #verify={}", crate::normalize::hex(&self.class))
    }
}

/// A request on a `shared-verified` route, with the verdict lifetimes of its route.
#[derive(Debug, Clone, Copy)]
pub struct Asker {
    /// The verdict class.
    pub key: VerdictKey,
    /// The route's verdict lifetimes.
    pub policy: VerifyPolicy,
}

/// A rejection as it is replayed: the origin's status and its challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 401 or 403.
    pub status: StatusCode,
    /// The origin's `WWW-Authenticate`, when it sent one that fits.
    pub challenge: Option<HeaderValue>,
}

/// What the origin's answer says about the credential that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx: the origin let the credential through.
    Accepted,
    /// 401 or 403.
    Rejected(Rejection),
}

/// A kept verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What the origin said.
    pub outcome: Outcome,
    /// Until when it holds.
    pub until: Instant,
}

/// Whether a request may be answered from a shared entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// The origin accepted this credential recently: stored entries may be served.
    Verified,
    /// No current verdict: the request itself goes to the origin.
    Unverified,
    /// The origin rejected this credential recently: answered locally.
    Rejected(Rejection),
}

/// The verdict an origin status gives: a 2xx accepts the credential, 401/403 reject it.
/// Anything else gives none. Server errors, 407 and 429 mean the origin did not judge it (an
/// outage must not verify every key that asks). Redirects and other 4xx (404, 400) are often
/// answered before authentication (a router's 404, a framework's trailing-slash redirect), so they
/// say nothing about the credential either.
pub fn outcome_of(status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
    match status.as_u16() {
        401 | 403 => Some(Outcome::Rejected(Rejection {
            status,
            challenge: headers
                .get(header::WWW_AUTHENTICATE)
                .filter(|v| v.len() <= MAX_CHALLENGE)
                .cloned(),
        })),
        200..=299 => Some(Outcome::Accepted),
        _ => None,
    }
}

/// What a kept verdict (if any) allows at `now`.
pub fn admission(verdict: Option<&Verdict>, now: Instant) -> Admission {
    match verdict {
        Some(v) if now < v.until => match &v.outcome {
            Outcome::Accepted => Admission::Verified,
            Outcome::Rejected(r) => Admission::Rejected(r.clone()),
        },
        _ => Admission::Unverified,
    }
}

/// What recording an origin answer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The answer gave no verdict (see [`outcome_of`]).
    Nothing,
    /// It confirmed a credential that was already verified.
    Confirmed,
    /// It verified or rejected a credential that was not verified: a verification fetch.
    Verification,
}

/// The verdicts of every `shared-verified` route, bounded in bytes.
pub struct Verdicts {
    map: DashMap<VerdictKey, Verdict>,
    accepted_bytes: AtomicUsize,
    rejected_bytes: AtomicUsize,
    max_bytes: usize,
    dropped: AtomicU64,
    /// When the last full sweep ran, in ms since `epoch`: at most one per [`SWEEP_EVERY`], so a
    /// flood of bad keys against a full budget cannot make every request scan the map.
    last_sweep_ms: AtomicU64,
    epoch: Instant,
    clock: Clock,
}

/// Least time between two sweeps of expired verdicts.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

fn cost(outcome: &Outcome) -> usize {
    match outcome {
        Outcome::Accepted => VERDICT_COST,
        Outcome::Rejected(r) => VERDICT_COST + r.challenge.as_ref().map_or(0, |c| c.len()),
    }
}

impl Verdicts {
    /// Verdicts taking at most `max_bytes` (a quarter of it for rejections), aged by `clock`.
    pub fn new(max_bytes: usize, clock: Clock) -> Self {
        Verdicts {
            map: DashMap::new(),
            accepted_bytes: AtomicUsize::new(0),
            rejected_bytes: AtomicUsize::new(0),
            max_bytes,
            dropped: AtomicU64::new(0),
            last_sweep_ms: AtomicU64::new(0),
            epoch: clock.now(),
            clock,
        }
    }

    /// Whether `key` may be served from shared entries now.
    pub fn admit(&self, key: &VerdictKey) -> Admission {
        admission(self.map.get(key).as_deref(), self.clock.now())
    }

    /// Record what the origin answered a request of `asker`.
    pub fn record(&self, asker: &Asker, status: StatusCode, headers: &HeaderMap) -> Recorded {
        let Some(outcome) = outcome_of(status, headers) else {
            return Recorded::Nothing;
        };
        let now = self.clock.now();
        let was_verified = self.admit(&asker.key) == Admission::Verified;
        let ttl = match outcome {
            Outcome::Accepted => asker.policy.verify_ttl,
            Outcome::Rejected(_) => asker.policy.reject_ttl,
        };
        let recorded = if was_verified {
            Recorded::Confirmed
        } else {
            Recorded::Verification
        };
        if ttl.is_zero() {
            self.remove(&asker.key);
            return recorded;
        }
        let new_cost = cost(&outcome);
        if !self.fits(&outcome, new_cost) {
            self.sweep(now);
            if !self.fits(&outcome, new_cost) {
                // The old verdict (if any) must not outlive what the origin just said.
                self.remove(&asker.key);
                self.dropped.fetch_add(1, Relaxed);
                return recorded;
            }
        }
        self.account(&outcome, new_cost, true);
        let verdict = Verdict {
            outcome,
            until: now + ttl,
        };
        if let Some(old) = self.map.insert(asker.key, verdict) {
            self.account(&old.outcome, cost(&old.outcome), false);
        }
        recorded
    }

    /// Forget every verdict (`POST /verify/purge`); how many there were.
    pub fn clear(&self) -> usize {
        let n = self.map.len();
        let keys: Vec<VerdictKey> = self.map.iter().map(|e| *e.key()).collect();
        for k in keys {
            self.remove(&k);
        }
        n
    }

    /// Verdicts kept.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no verdict is kept.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Bytes the kept verdicts take.
    pub fn bytes(&self) -> usize {
        self.accepted_bytes.load(Relaxed) + self.rejected_bytes.load(Relaxed)
    }

    /// Verdicts not kept because the budget was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    fn budget(&self, outcome: &Outcome) -> (&AtomicUsize, usize) {
        match outcome {
            Outcome::Accepted => (&self.accepted_bytes, self.max_bytes - self.max_bytes / 4),
            Outcome::Rejected(_) => (&self.rejected_bytes, self.max_bytes / 4),
        }
    }

    fn fits(&self, outcome: &Outcome, cost: usize) -> bool {
        let (used, max) = self.budget(outcome);
        used.load(Relaxed) + cost <= max
    }

    fn account(&self, outcome: &Outcome, cost: usize, add: bool) {
        let (used, _) = self.budget(outcome);
        if add {
            used.fetch_add(cost, Relaxed);
        } else {
            used.fetch_sub(cost, Relaxed);
        }
    }

    fn remove(&self, key: &VerdictKey) {
        if let Some((_, old)) = self.map.remove(key) {
            self.account(&old.outcome, cost(&old.outcome), false);
        }
    }

    fn sweep(&self, now: Instant) {
        let at = now.duration_since(self.epoch).as_millis() as u64 + SWEEP_EVERY.as_millis() as u64;
        let last = self.last_sweep_ms.load(Relaxed);
        if at < last + SWEEP_EVERY.as_millis() as u64
            || self
                .last_sweep_ms
                .compare_exchange(last, at, Relaxed, Relaxed)
                .is_err()
        {
            return;
        }
        self.map.retain(|_, v| {
            let keep = now < v.until;
            if !keep {
                let (used, _) = self.budget(&v.outcome);
                used.fetch_sub(cost(&v.outcome), Relaxed);
            }
            keep
        });
    }
}

#[cfg(test)]
mod tests;
