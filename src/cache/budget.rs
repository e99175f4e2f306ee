//! The byte budget shared by all fills buffering a body at once (`cache.max_fill_memory`): 200
//! concurrent cold fills of large objects must not hold 200 × `max_object_size`. A fill that
//! cannot reserve its next bytes streams the rest through unstored instead of waiting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The shared budget.
#[derive(Debug, Clone)]
pub struct FillBudget {
    used: Arc<AtomicUsize>,
    max: usize,
}

/// Bytes one fill holds; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicUsize>,
    max: usize,
    held: usize,
}

impl FillBudget {
    /// A budget of `max` bytes.
    pub fn new(max: u64) -> Self {
        Self {
            used: Arc::new(AtomicUsize::new(0)),
            max: usize::try_from(max).unwrap_or(usize::MAX),
        }
    }

    /// An empty reservation for one fill.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            used: self.used.clone(),
            max: self.max,
            held: 0,
        }
    }

    /// Bytes reserved by all fills now.
    pub fn in_use(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

impl Reservation {
    /// A new, empty reservation on the same budget.
    pub fn empty(&self) -> Reservation {
        Reservation {
            used: self.used.clone(),
            max: self.max,
            held: 0,
        }
    }

    /// Reserve `bytes` more, or nothing and `false` when the budget would be exceeded.
    pub fn grow(&mut self, bytes: usize) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(bytes).filter(|n| *n <= self.max)
            })
            .is_ok();
        if ok {
            self.held += bytes;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.held, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_share_the_budget_and_give_it_back() {
        let b = FillBudget::new(100);
        let mut a = b.reservation();
        let mut c = b.reservation();
        assert!(a.grow(60));
        assert!(!c.grow(50), "over the budget");
        assert!(c.grow(40));
        assert_eq!(b.in_use(), 100);
        assert!(!a.grow(1));
        drop(a);
        assert_eq!(b.in_use(), 40);
        assert!(c.grow(60));
        drop(c);
        assert_eq!(b.in_use(), 0);
    }
}
