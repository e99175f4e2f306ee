//! The use-time decision (RFC 9111 §4, §4.2.4, RFC 5861): may a stored object answer this request
//! now, be served stale, or must the origin be asked?
//!
//! Pure: the stored object's freshness, its age and how long ago it was soft-purged are inputs,
//! so the tests below are tables over an injected clock instead of sleeps.

use std::time::Duration;

use super::directives::Directives;
use super::storable::Freshness;

/// What the cache knows about a stored object at the moment of use.
///
/// Age and staleness are kept to the millisecond: whole seconds would grant every stale window
/// (and `max-stale`) up to a second more than it allows. Only what goes on the wire (`Age`,
/// `Cache-Status: ttl=`) is whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Lifetime and stale windows, fixed when it was stored.
    pub freshness: Freshness,
    /// Current age (RFC 9111 §4.2.3).
    pub age: Duration,
    /// How long ago a soft purge marked it stale, if one did.
    pub purged_ago: Option<Duration>,
}

impl Stored {
    /// Milliseconds of freshness left; zero or negative once stale. A soft purge makes it stale
    /// since the purge (and at least a millisecond stale at the purge itself).
    pub fn ttl_ms(&self) -> i64 {
        let lifetime = i128::from(self.freshness.lifetime) * 1000;
        let natural = lifetime - self.age.as_millis() as i128;
        let ttl = match self.purged_ago {
            None => natural,
            Some(ago) => natural.min(-(ago.as_millis() as i128) - 1),
        };
        ttl.clamp(i64::MIN as i128, i64::MAX as i128) as i64
    }

    /// Whole seconds of freshness left, rounded down (so any staleness reads as negative), as
    /// `Cache-Status: ttl=` reports it.
    pub fn ttl(&self) -> i64 {
        self.ttl_ms().div_euclid(1000)
    }

    /// Whether it is still fresh (RFC 9111 §4.2: its age has not reached its lifetime).
    fn is_fresh(&self) -> bool {
        self.ttl_ms() > 0
    }

    /// Whether it is stale by no more than `window` seconds. A zero window allows nothing, not
    /// even the first millisecond (RFC 9111 §4.2.4: stale only with explicit permission).
    fn stale_within(&self, window: u64) -> bool {
        let staleness = self.ttl_ms().unsigned_abs();
        !self.is_fresh() && window > 0 && u128::from(staleness) <= u128::from(window) * 1000
    }

    /// Stale-if-error (RFC 5861 §4): whether this object may stand in for an origin failure.
    /// A fresh object always may (the request forced the trip); a stale one within a non-zero window.
    pub fn usable_on_error(&self) -> bool {
        if self.freshness.must_revalidate {
            return false;
        }
        self.is_fresh() || self.stale_within(self.freshness.sie)
    }
}

/// Why a stale object is served without asking the origin first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// The request's `max-stale` accepts it.
    MaxStale,
    /// Within `stale-while-revalidate`: served now, refreshed in the background.
    WhileRevalidate,
}

/// Why the origin must be asked although something is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevalidateReason {
    /// The request said `no-cache` (or `Pragma: no-cache`).
    Request,
    /// Stale, or not fresh enough for the request, or the response said `no-cache`.
    Stale,
}

/// What a stored object can do for a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Fresh enough for the request: serve it.
    Fresh,
    /// Stale, but allowed to be served.
    Stale(StaleReason),
    /// Ask the origin (conditionally when the object has validators).
    Revalidate(RevalidateReason),
    /// Nothing stored for this request.
    Miss,
}

/// Decide how `stored` (if anything) may answer a request with directives `req`.
pub fn decide(stored: Option<&Stored>, req: &Directives) -> Usage {
    let Some(s) = stored else {
        return Usage::Miss;
    };
    let must_check = req.no_cache || s.freshness.no_cache;
    let fresh_enough = s.is_fresh()
        && req.max_age.is_none_or(|m| s.age <= Duration::from_secs(m))
        && req
            .min_fresh
            .is_none_or(|m| i128::from(s.ttl_ms()) >= i128::from(m) * 1000);
    if !must_check && fresh_enough {
        return Usage::Fresh;
    }
    // Only a stale object may be served stale: a fresh one the request finds too old is refetched.
    let may_serve_stale = !must_check && !s.freshness.must_revalidate;
    if may_serve_stale && req.max_stale.is_some_and(|m| s.stale_within(m)) {
        return Usage::Stale(StaleReason::MaxStale);
    }
    if may_serve_stale && s.stale_within(s.freshness.swr) {
        return Usage::Stale(StaleReason::WhileRevalidate);
    }
    Usage::Revalidate(if req.no_cache {
        RevalidateReason::Request
    } else {
        RevalidateReason::Stale
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A response stored at `t0`, looked at `elapsed` seconds later on an injected clock.
    fn at(f: Freshness, t0: Instant, now: Instant, purged: Option<Instant>) -> Stored {
        Stored {
            freshness: f,
            age: Duration::from_secs(f.initial_age) + now.duration_since(t0),
            purged_ago: purged.map(|p| now.duration_since(p)),
        }
    }

    fn fresh_for(lifetime: u64) -> Freshness {
        Freshness::for_lifetime(lifetime)
    }

    fn req(cc: &str) -> Directives {
        let mut d = Directives::default();
        d.parse_into(cc);
        d
    }

    const FRESH: Usage = Usage::Fresh;
    const SWR: Usage = Usage::Stale(StaleReason::WhileRevalidate);
    const MAX_STALE: Usage = Usage::Stale(StaleReason::MaxStale);
    const REVALIDATE: Usage = Usage::Revalidate(RevalidateReason::Stale);
    const REQUEST: Usage = Usage::Revalidate(RevalidateReason::Request);

    #[test]
    fn use_time_table() {
        let swr = |lifetime, swr| Freshness {
            swr,
            ..fresh_for(lifetime)
        };
        let must = |lifetime| Freshness {
            must_revalidate: true,
            swr: 60,
            ..fresh_for(lifetime)
        };
        let no_cache = Freshness {
            no_cache: true,
            ..fresh_for(60)
        };
        let aged = Freshness {
            initial_age: 50,
            ..fresh_for(60)
        };
        // (row, stored freshness, seconds since stored, request Cache-Control, expected)
        let rows: &[(&str, Freshness, u64, &str, Usage)] = &[
            ("fresh", fresh_for(60), 10, "", FRESH),
            (
                "expires exactly at lifetime",
                fresh_for(60),
                60,
                "",
                REVALIDATE,
            ),
            ("stale, no windows", fresh_for(60), 61, "", REVALIDATE),
            (
                "stored stale (validators only)",
                fresh_for(0),
                0,
                "",
                REVALIDATE,
            ),
            ("origin Age counts", aged, 10, "", REVALIDATE),
            ("origin Age still fresh", aged, 5, "", FRESH),
            ("response no-cache", no_cache, 1, "", REVALIDATE),
            ("request no-cache", fresh_for(60), 1, "no-cache", REQUEST),
            (
                "request no-cache beats max-stale",
                fresh_for(1),
                5,
                "no-cache, max-stale",
                REQUEST,
            ),
            (
                "request max-age within",
                fresh_for(60),
                10,
                "max-age=10",
                FRESH,
            ),
            (
                "request max-age exceeded",
                fresh_for(60),
                11,
                "max-age=10",
                REVALIDATE,
            ),
            (
                "request min-fresh met",
                fresh_for(60),
                10,
                "min-fresh=50",
                FRESH,
            ),
            (
                "request min-fresh not met",
                fresh_for(60),
                11,
                "min-fresh=50",
                REVALIDATE,
            ),
            (
                "max-stale within",
                fresh_for(60),
                70,
                "max-stale=10",
                MAX_STALE,
            ),
            (
                "max-stale exceeded",
                fresh_for(60),
                71,
                "max-stale=10",
                REVALIDATE,
            ),
            (
                "max-stale without value",
                fresh_for(60),
                9999,
                "max-stale",
                MAX_STALE,
            ),
            (
                "max-stale never serves a fresh-but-too-old object",
                fresh_for(60),
                30,
                "max-age=10, max-stale",
                REVALIDATE,
            ),
            ("swr within window", swr(60, 30), 90, "", SWR),
            ("swr window passed", swr(60, 30), 91, "", REVALIDATE),
            ("swr does not apply while fresh", swr(60, 30), 10, "", FRESH),
            (
                "max-stale preferred over swr",
                swr(60, 30),
                70,
                "max-stale=20",
                MAX_STALE,
            ),
            ("must-revalidate forbids swr", must(60), 70, "", REVALIDATE),
            (
                "must-revalidate forbids max-stale",
                must(60),
                70,
                "max-stale",
                REVALIDATE,
            ),
            ("must-revalidate while fresh", must(60), 10, "", FRESH),
        ];
        let t0 = Instant::now();
        for (row, f, secs, cc, want) in rows {
            let now = t0 + Duration::from_secs(*secs);
            let s = at(*f, t0, now, None);
            assert_eq!(decide(Some(&s), &req(cc)), *want, "{row}");
        }
        assert_eq!(decide(None, &req("")), Usage::Miss);
        assert_eq!(decide(None, &req("max-stale")), Usage::Miss);
    }

    #[test]
    fn sub_second_edges_table() {
        let with = |lifetime, swr, sie| Freshness {
            swr,
            sie,
            ..fresh_for(lifetime)
        };
        // (row, stored freshness, milliseconds since stored, request Cache-Control, expected,
        // usable on error, Cache-Status ttl)
        let rows: &[(&str, Freshness, u64, &str, Usage, bool, i64)] = &[
            (
                "fresh to the last ms",
                with(60, 0, 0),
                59_999,
                "",
                FRESH,
                true,
                0,
            ),
            (
                "stale at 60.0 s",
                with(60, 0, 0),
                60_000,
                "",
                REVALIDATE,
                false,
                0,
            ),
            (
                "stale by 1 ms",
                with(60, 0, 0),
                60_001,
                "",
                REVALIDATE,
                false,
                -1,
            ),
            (
                "lifetime 0 at once",
                with(0, 0, 0),
                0,
                "",
                REVALIDATE,
                false,
                0,
            ),
            (
                "lifetime 0, 300 ms on",
                with(0, 0, 0),
                300,
                "",
                REVALIDATE,
                false,
                -1,
            ),
            (
                "swr=30 at 90.0 s",
                with(60, 30, 0),
                90_000,
                "",
                SWR,
                false,
                -30,
            ),
            (
                "swr=30 at 90.5 s",
                with(60, 30, 0),
                90_500,
                "",
                REVALIDATE,
                false,
                -31,
            ),
            (
                "swr=0 300 ms stale",
                with(60, 0, 0),
                60_300,
                "",
                REVALIDATE,
                false,
                -1,
            ),
            (
                "sie=30 at 90.0 s",
                with(60, 0, 30),
                90_000,
                "",
                REVALIDATE,
                true,
                -30,
            ),
            (
                "sie=30 at 90.5 s",
                with(60, 0, 30),
                90_500,
                "",
                REVALIDATE,
                false,
                -31,
            ),
            (
                "max-stale=30 at 90.0 s",
                with(60, 0, 0),
                90_000,
                "max-stale=30",
                MAX_STALE,
                false,
                -30,
            ),
            (
                "max-stale=30 at 90.5 s",
                with(60, 0, 0),
                90_500,
                "max-stale=30",
                REVALIDATE,
                false,
                -31,
            ),
            (
                "max-stale=0 allows nothing",
                with(0, 0, 0),
                300,
                "max-stale=0",
                REVALIDATE,
                false,
                -1,
            ),
            (
                "request max-age=10 at 10.5 s",
                with(60, 0, 0),
                10_500,
                "max-age=10",
                REVALIDATE,
                true,
                49,
            ),
            (
                "min-fresh=50 with 49.5 s left",
                with(60, 0, 0),
                10_500,
                "min-fresh=50",
                REVALIDATE,
                true,
                49,
            ),
        ];
        let t0 = Instant::now();
        for (row, f, ms, cc, want, on_error, ttl) in rows {
            let s = at(*f, t0, t0 + Duration::from_millis(*ms), None);
            assert_eq!(decide(Some(&s), &req(cc)), *want, "{row}");
            assert_eq!(s.usable_on_error(), *on_error, "{row}: on error");
            assert_eq!(s.ttl(), *ttl, "{row}: ttl");
        }
    }

    #[test]
    fn soft_purge_table() {
        let t0 = Instant::now();
        let purged = t0 + Duration::from_secs(10);
        let swr = Freshness {
            swr: 30,
            ..fresh_for(600)
        };
        // (freshness, seconds since stored, request, expected); purged at second 10.
        let rows: &[(Freshness, u64, &str, Usage, i64)] = &[
            (fresh_for(600), 10, "", REVALIDATE, -1),
            (fresh_for(600), 15, "", REVALIDATE, -6),
            (swr, 10, "", SWR, -1),
            (swr, 39, "", SWR, -30),
            (swr, 40, "", REVALIDATE, -31),
            (fresh_for(600), 12, "max-stale=5", MAX_STALE, -3),
        ];
        for (f, secs, cc, want, ttl) in rows {
            let s = at(*f, t0, t0 + Duration::from_secs(*secs), Some(purged));
            assert_eq!(s.ttl(), *ttl, "ttl at {secs}s");
            assert_eq!(decide(Some(&s), &req(cc)), *want, "at {secs}s {cc}");
        }
        // A purge never makes an object fresher than it naturally is.
        let expired = at(fresh_for(5), t0, t0 + Duration::from_secs(60), Some(purged));
        assert_eq!(expired.ttl(), -55);
    }

    #[test]
    fn stale_if_error_table() {
        let t0 = Instant::now();
        let sie = |lifetime, sie, must_revalidate| Freshness {
            sie,
            must_revalidate,
            ..fresh_for(lifetime)
        };
        // (freshness, seconds since stored, usable when the origin fails)
        let rows: &[(Freshness, u64, bool)] = &[
            (sie(60, 0, false), 10, true),
            (sie(60, 0, false), 61, false),
            (sie(60, 300, false), 360, true),
            (sie(60, 300, false), 361, false),
            (sie(60, 300, true), 61, false),
            (sie(0, 0, false), 0, false),
            (sie(0, 5, false), 0, true),
        ];
        for (f, secs, want) in rows {
            let s = at(*f, t0, t0 + Duration::from_secs(*secs), None);
            assert_eq!(s.usable_on_error(), *want, "{f:?} at {secs}s");
        }
    }
}
