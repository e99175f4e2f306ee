//! The soft-purge floor: objects stored before it are treated as soft-purged when next read.
//!
//! A cluster node that may have missed purges (a gap in the purge log, or cut off from Redis for
//! longer than `max_purge_lag`) must stop serving what it holds as fresh *before its next hit*.
//! Marking every object would take a walk over the whole cache; raising this floor is one atomic
//! store, and each lookup marks the objects it reads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When everything older is suspect: a fixed point (a gap), and the degraded state while the
/// node is cut off. Times are nanoseconds after `base` plus one (0 = unset), exact: a floor
/// must neither miss an object stored just before it nor catch one stored just after.
#[derive(Debug)]
pub struct Floor {
    base: Instant,
    fixed: AtomicU64,
    /// Last contact with the purge log while cut off from it; 0 = connected.
    cut_since: AtomicU64,
    /// How long a cut-off node may go on trusting what it holds.
    lag: AtomicU64,
}

impl Floor {
    /// No floor; times are measured from `base` (the store's clock at creation).
    pub fn new(base: Instant) -> Self {
        Floor {
            base,
            fixed: AtomicU64::new(0),
            cut_since: AtomicU64::new(0),
            lag: AtomicU64::new(0),
        }
    }

    fn encode(&self, t: Instant) -> u64 {
        let ns = t.saturating_duration_since(self.base).as_nanos();
        u64::try_from(ns).unwrap_or(u64::MAX - 1) + 1
    }

    fn decode(&self, v: u64) -> Option<Instant> {
        (v != 0).then(|| self.base + Duration::from_nanos(v - 1))
    }

    /// Everything stored before `at` is suspect (the floor only rises).
    pub fn raise(&self, at: Instant) {
        self.fixed.fetch_max(self.encode(at), Ordering::AcqRel);
    }

    /// Cut off from the purge log since `since` (`None`: connected again); after `lag` of that,
    /// nothing held is trusted.
    pub fn set_cut_off(&self, since: Option<Instant>, lag: Duration) {
        self.lag.store(lag.as_millis() as u64, Ordering::Relaxed);
        let v = since.map_or(0, |s| self.encode(s));
        self.cut_since.store(v, Ordering::Release);
    }

    /// The floor at `now`, if any.
    pub fn at(&self, now: Instant) -> Option<Instant> {
        let fixed = self.decode(self.fixed.load(Ordering::Acquire));
        let cut = self.decode(self.cut_since.load(Ordering::Acquire));
        let lag = Duration::from_millis(self.lag.load(Ordering::Relaxed));
        floor_at(fixed, cut, lag, now)
    }
}

/// The floor at `now`: the fixed one, or, once cut off for longer than `lag`, `now` itself:
/// every use revalidates. By then the node's heartbeat has run out, so purge calls no longer
/// wait for it; anything it still served as fresh, even an object fetched a moment ago, could
/// be what such a purge removed.
pub fn floor_at(
    fixed: Option<Instant>,
    cut_since: Option<Instant>,
    lag: Duration,
    now: Instant,
) -> Option<Instant> {
    let degraded = cut_since
        .filter(|s| now.saturating_duration_since(*s) > lag)
        .map(|_| now);
    match (fixed, degraded) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let at = |x: u64| Some(t0 + s(x));
        // (fixed, cut off since, lag, now) → floor
        type Row = (Option<Instant>, Option<Instant>, u64, u64, Option<Instant>);
        let rows: &[Row] = &[
            (None, None, 2, 100, None),
            (at(10), None, 2, 100, at(10)),
            // Cut off, but not for longer than the lag: still trusted.
            (None, at(99), 2, 100, None),
            (None, at(98), 2, 100, None),
            // Cut off longer than the lag: nothing is trusted.
            (None, at(97), 2, 100, at(100)),
            (None, at(10), 2, 100, at(100)),
            // The higher of the two wins.
            (at(101), at(10), 2, 100, at(101)),
            (at(50), at(10), 2, 100, at(100)),
            (at(50), at(99), 2, 100, at(50)),
        ];
        for (i, (fixed, cut, lag, now, want)) in rows.iter().enumerate() {
            assert_eq!(
                floor_at(*fixed, *cut, s(*lag), t0 + s(*now)),
                *want,
                "row {i}"
            );
        }
    }

    #[test]
    fn a_raised_floor_is_exact() {
        let t0 = Instant::now();
        let f = Floor::new(t0);
        let before = t0 + Duration::from_nanos(1_700_001);
        let at = t0 + Duration::from_nanos(1_700_002);
        let after = t0 + Duration::from_nanos(1_700_003);
        f.raise(at);
        let floor = f.at(t0 + Duration::from_secs(1)).unwrap();
        assert!(before < floor && after > floor);
    }

    #[test]
    fn raise_only_rises_and_cut_off_clears() {
        let t0 = Instant::now();
        let f = Floor::new(t0);
        let s = Duration::from_secs;
        assert_eq!(f.at(t0 + s(5)), None);
        f.raise(t0 + s(3));
        f.raise(t0 + s(1));
        assert_eq!(f.at(t0 + s(5)), Some(t0 + s(3)));
        f.set_cut_off(Some(t0 + s(4)), s(2));
        assert_eq!(f.at(t0 + s(5)), Some(t0 + s(3)));
        assert_eq!(f.at(t0 + s(10)), Some(t0 + s(10)));
        f.set_cut_off(None, s(2));
        assert_eq!(f.at(t0 + s(10)), Some(t0 + s(3)));
    }
}
