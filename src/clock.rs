//! The proxy's monotonic time source: the real clock plus an offset tests can advance.
//!
//! Stored objects' age, freshness and purge marks are measured against it, so tests move time
//! forward instead of sleeping. moka's own expiry and timers still use real time: the clock only
//! decides what the cache *says* about an object, never when memory is reclaimed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A shared monotonic clock; clones see the same offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Milliseconds added to `Instant::now()`; only tests move it.
    offset_ms: Arc<AtomicU64>,
}

impl Clock {
    /// The current instant as the cache sees it.
    pub fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Move this clock (and every clone) forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_every_clone() {
        let c = Clock::default();
        let d = c.clone();
        let before = d.now();
        c.advance(Duration::from_secs(5));
        assert!(d.now().duration_since(before) >= Duration::from_secs(5));
    }
}
