//! The open connections of one listener: per connection, when it was accepted, when it was last
//! active, how many requests it has in flight, and a way to ask it to close. The accept loop uses
//! it to evict the connection idle the longest when `max_connections` is reached.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use tokio::sync::{Notify, OwnedSemaphorePermit};

/// Every open connection of one listener.
#[derive(Default)]
pub(crate) struct Registry {
    conns: Mutex<HashMap<u64, Arc<Tracker>>>,
    next_id: AtomicU64,
    draining: AtomicBool,
}

impl Registry {
    /// Register a connection accepted now, holding `permit` (one of `max_connections`).
    pub(crate) fn add(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Entry {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracker = Arc::new(Tracker {
            accepted: Instant::now(),
            last_active_ns: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            http2: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            evict: Notify::new(),
            permit: Mutex::new(Some(permit)),
        });
        self.lock().insert(id, tracker.clone());
        Entry {
            registry: self.clone(),
            id,
            tracker,
        }
    }

    /// Ask the connection idle the longest (no request in flight, not already closing) to close,
    /// and give its slot back at once so a new client does not wait for the close to finish.
    /// Returns false when every connection is busy.
    pub(crate) fn evict_oldest_idle(&self) -> bool {
        let victim = {
            let conns = self.lock();
            conns
                .values()
                .filter(|t| t.is_idle() && !t.closing.load(Ordering::Acquire))
                .min_by_key(|t| t.last_active())
                .cloned()
        };
        let Some(victim) = victim else {
            return false;
        };
        if victim.mark_closing() {
            drop(victim.take_permit());
            victim.evict.notify_one();
        }
        true
    }

    /// Open connections.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// From now on, HTTP/1 responses carry `Connection: close`.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether shutdown has begun.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Tracker>>> {
        // A panic while holding the lock leaves the map consistent (single inserts and removes).
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection's place in the registry; leaving it (drop) frees the connection's slot.
pub(crate) struct Entry {
    registry: Arc<Registry>,
    id: u64,
    tracker: Arc<Tracker>,
}

impl Entry {
    /// The connection's state, shared with its requests.
    pub(crate) fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
        drop(self.tracker.take_permit());
    }
}

/// One connection's activity.
pub(crate) struct Tracker {
    accepted: Instant,
    /// When the last request ended, as nanoseconds after `accepted` (0: none yet).
    last_active_ns: AtomicU64,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    http2: AtomicBool,
    closing: AtomicBool,
    /// Signalled when the accept loop evicts this connection.
    pub(crate) evict: Notify,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Tracker {
    /// When the connection was accepted.
    pub(crate) fn accepted(&self) -> Instant {
        self.accepted
    }

    /// When the connection last finished a request (or was accepted).
    pub(crate) fn last_active(&self) -> Instant {
        self.accepted + Duration::from_nanos(self.last_active_ns.load(Ordering::Acquire))
    }

    /// Requests whose response has not been fully sent.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether a request ever arrived.
    pub(crate) fn had_request(&self) -> bool {
        self.requests.load(Ordering::Acquire) > 0
    }

    /// Whether the connection speaks HTTP/2 (known from its first request on).
    pub(crate) fn is_http2(&self) -> bool {
        self.http2.load(Ordering::Acquire)
    }

    /// No request in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight() == 0
    }

    /// Mark the connection as closing; false if it already was.
    pub(crate) fn mark_closing(&self) -> bool {
        !self.closing.swap(true, Ordering::AcqRel)
    }

    /// A request started: counted in flight until the returned guard drops (with the response body).
    pub(crate) fn start(self: &Arc<Self>, http2: bool) -> InFlight {
        if http2 {
            self.http2.store(true, Ordering::Release);
        }
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    fn take_permit(&self) -> Option<OwnedSemaphorePermit> {
        self.permit.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A request in flight on a connection.
pub(crate) struct InFlight(Arc<Tracker>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let t = &self.0;
        let ns = u64::try_from(t.accepted.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Before the decrement, so a connection seen idle has its idle start recorded.
        t.last_active_ns.fetch_max(ns, Ordering::AcqRel);
        t.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight until hyper has sent or dropped it.
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        guard: InFlight,
    }
}

impl<B> Tracked<B> {
    pub(crate) fn new(body: B, guard: InFlight) -> Self {
        Tracked { body, guard }
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Semaphore;

    #[tokio::test]
    async fn eviction_picks_the_longest_idle_and_frees_its_slot() {
        let registry = Arc::new(Registry::default());
        let slots = Arc::new(Semaphore::new(3));
        let take = || slots.clone().try_acquire_owned().unwrap();
        let oldest_busy = registry.add(take());
        let old_idle = registry.add(take());
        let new_idle = registry.add(take());
        let _req = oldest_busy.tracker().start(false);
        assert_eq!(slots.available_permits(), 0);
        assert!(registry.evict_oldest_idle());
        assert!(old_idle.tracker().closing.load(Ordering::Acquire));
        assert!(!new_idle.tracker().closing.load(Ordering::Acquire));
        assert_eq!(slots.available_permits(), 1);
        // The evicted one is skipped from now on; then only the busy one is left.
        assert!(registry.evict_oldest_idle());
        assert!(new_idle.tracker().closing.load(Ordering::Acquire));
        assert!(!registry.evict_oldest_idle());
        drop(old_idle);
        assert_eq!(registry.len(), 2);
        assert_eq!(slots.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_request_ending_moves_last_active() {
        let registry = Arc::new(Registry::default());
        let slots = Arc::new(Semaphore::new(1));
        let e = registry.add(slots.clone().try_acquire_owned().unwrap());
        let t = e.tracker();
        assert!(!t.had_request() && t.is_idle());
        assert_eq!(t.last_active(), t.accepted());
        let req = t.start(true);
        assert!(!t.is_idle() && t.had_request() && t.is_http2());
        tokio::time::sleep(Duration::from_millis(2)).await;
        drop(req);
        assert!(t.is_idle());
        assert!(t.last_active() > t.accepted());
    }
}
