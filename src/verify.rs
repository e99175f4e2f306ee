//! Credential verdicts for `auth = "shared-verified"` routes: the origin stays the authority on
//! who may read. An entry stored once under the URL key is served to a credential only while the
//! origin accepted that credential (on the same route) within `verify_ttl`; a credential it
//! rejected is answered locally, with the origin's status, for `reject_ttl`.
//!
//! Verdicts are kept per sha256 of the credential (never the secret itself), and bounded in
//! bytes: rejections get a quarter of the budget, so a flood of bad keys cannot push out the
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

/// Who is asking, as verdicts see it: the route and the credential's class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerdictKey {
    route: usize,
    /// sha256 of the credential; `None` for a request without one ("anonymous").
    credential: Option<[u8; 32]>,
}

impl VerdictKey {
    /// The verdict class of a request on route `route`.
    pub fn new(route: usize, credential: Option<&HeaderValue>) -> Self {
        VerdictKey {
            route,
            credential: credential.map(|c| Sha256::digest(c.as_bytes()).into()),
        }
    }

    /// A collapsing suffix: requests still to be verified only ever wait for their own
    /// credential's origin answer.
    pub fn flight_suffix(&self) -> String {
        match &self.credential {
            None => " #verify=anonymous".into(),
            Some(h) => {
                let mut s = String::from(" #verify=");
                for b in h {
                    s.push_str(&format!("{b:02x}"));
                }
                s
            }
        }
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
    /// Any answer but 401/403: the origin let the credential through.
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

/// The verdict an origin status gives. Server errors, 407 and 429 give none: the origin did not
/// (or could not) judge the credential, and an outage must not verify every key that asks.
pub fn outcome_of(status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
    match status.as_u16() {
        401 | 403 => Some(Outcome::Rejected(Rejection {
            status,
            challenge: headers
                .get(header::WWW_AUTHENTICATE)
                .filter(|v| v.len() <= MAX_CHALLENGE)
                .cloned(),
        })),
        407 | 429 | 500..=599 => None,
        100..=499 => Some(Outcome::Accepted),
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
    /// The answer gave no verdict (server error, 429).
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
    clock: Clock,
}

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
