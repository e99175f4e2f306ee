//! One connection's life: served until a reason to close (no request within the header-read
//! deadline counted from accept, idle too long, evicted, shutdown), then closed gracefully
//! (HTTP/1: `Connection: close` or an immediate close when idle; HTTP/2: GOAWAY), and dropped if
//! that does not finish in time.
//!
//! hyper's own HTTP/1 header timeout only starts once `auto::Builder` has seen the first byte,
//! and HTTP/2 has none, so the deadlines before the first request and between requests are kept
//! here. hyper-util's `GracefulShutdown` cannot be used: it takes the connection, and eviction
//! and idle closes need to call `graceful_shutdown` on it too.

use std::pin::pin;
use std::time::Duration;

use hyper_util::server::graceful::GracefulConnection;
use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};

use super::registry::{Entry, Tracker};

/// Where the listener is in its life; connections watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Serving,
    /// Shutdown began: finish what is in flight, close the rest.
    Draining,
    /// `shutdown_grace` is over: drop every connection now.
    Closing,
}

/// The timeouts a connection is held to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// From accept to the first request's complete head.
    pub(crate) header_read: Duration,
    /// With no request in flight.
    pub(crate) idle: Duration,
    /// During shutdown, an idle HTTP/1 connection stays open this long for a request already on
    /// its way.
    pub(crate) drain_idle: Duration,
}

/// After a graceful close began, how long a connection with nothing in flight may take to finish
/// it (an HTTP/2 peer that does not acknowledge GOAWAY's ping, a half-sent HTTP/1 head).
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Shortest pause between two looks at a connection's state (a zero `idle_timeout` must not spin).
const MIN_CHECK: Duration = Duration::from_millis(10);

/// Why a connection is being closed (for the debug log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    NoRequest,
    Idle,
    Evicted,
    Shutdown,
}

/// Serve `conn` until it ends or is closed; `entry` (the connection's slot) is freed on return.
pub(crate) async fn drive<C>(
    conn: C,
    entry: Entry,
    limits: Limits,
    mut phase: watch::Receiver<Phase>,
    peer: std::net::SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let t = entry.tracker().clone();
    let mut conn = pin!(conn);
    let why = loop {
        if *phase.borrow_and_update() != Phase::Serving {
            break Why::Shutdown;
        }
        let wake = match deadline(&t, limits, Instant::now()) {
            Ok(at) => at,
            Err(why) => break why,
        };
        tokio::select! {
            r = conn.as_mut() => return ended(r, peer),
            _ = sleep_until(wake) => {}
            _ = t.evict.notified() => break Why::Evicted,
            // A dropped sender means the listener is gone: same as shutdown.
            r = phase.changed() => if r.is_err() { break Why::Shutdown },
        }
    };
    // Eviction skips it from now on (an evicted one is marked already).
    t.mark_closing();
    tracing::debug!(%peer, ?why, "closing connection");
    if why == Why::Shutdown && !t.is_http2() && t.is_idle() {
        // A request may already be on its way over an idle HTTP/1 connection: closing now would
        // reset it. It gets an answer with `Connection: close` (added by the service while
        // draining), after which hyper closes the connection itself.
        tokio::select! {
            r = conn.as_mut() => return ended(r, peer),
            _ = sleep(limits.drain_idle) => {}
            _ = closing(&mut phase) => return,
        }
    }
    conn.as_mut().graceful_shutdown();
    // Bounded: every round either ends or sleeps CLOSE_WAIT, and a round with nothing in flight
    // ends it; a request in flight is bounded by its own timeouts and by `shutdown_grace`.
    loop {
        tokio::select! {
            r = conn.as_mut() => return ended(r, peer),
            _ = sleep(CLOSE_WAIT) => if t.is_idle() { return },
            _ = closing(&mut phase) => return,
        }
    }
}

/// When to look again, or why to close now. Requests do not wake the connection's task, so it
/// looks at least every `idle` (at least [`MIN_CHECK`]): a request that ends at E is then seen
/// idle from E + `idle` on, and the first deadline is kept exactly.
fn deadline(t: &Tracker, limits: Limits, now: Instant) -> Result<Instant, Why> {
    let next_check = now + limits.idle.max(MIN_CHECK);
    if !t.had_request() {
        let at = Instant::from_std(t.accepted()) + limits.header_read;
        return if now >= at {
            Err(Why::NoRequest)
        } else {
            Ok(at.min(next_check))
        };
    }
    if !t.is_idle() {
        return Ok(next_check);
    }
    let at = Instant::from_std(t.last_active()) + limits.idle;
    if now >= at {
        Err(Why::Idle)
    } else {
        Ok(at)
    }
}

/// Resolves once the phase is `Closing` (or the listener is gone).
async fn closing(phase: &mut watch::Receiver<Phase>) {
    let _ = phase.wait_for(|p| *p == Phase::Closing).await;
}

fn ended<E: std::fmt::Display>(r: Result<(), E>, peer: std::net::SocketAddr) {
    if let Err(e) = r {
        tracing::debug!(error = %e, %peer, "connection ended with error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::registry::Registry;
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    fn limits() -> Limits {
        Limits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(60),
            drain_idle: Duration::from_secs(1),
        }
    }

    #[tokio::test]
    async fn deadlines_follow_the_connection_state() {
        let registry = Arc::new(Registry::default());
        let e = registry.add(Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap());
        let t = e.tracker();
        let accepted = Instant::from_std(t.accepted());
        // Before the first request: the header-read deadline from accept, looked at every idle.
        assert_eq!(
            deadline(t, limits(), accepted),
            Ok(accepted + Duration::from_secs(10))
        );
        let short_idle = Limits {
            idle: Duration::from_secs(1),
            ..limits()
        };
        assert_eq!(
            deadline(t, short_idle, accepted),
            Ok(accepted + Duration::from_secs(1))
        );
        assert!(matches!(
            deadline(t, limits(), accepted + Duration::from_secs(10)),
            Err(Why::NoRequest)
        ));
        // A request in flight is never idle.
        let req = t.start(false);
        let later = accepted + Duration::from_secs(100);
        assert_eq!(
            deadline(t, limits(), later),
            Ok(later + Duration::from_secs(60))
        );
        drop(req);
        // Idle: from the end of the last request.
        let end = Instant::from_std(t.last_active());
        assert_eq!(
            deadline(t, limits(), end),
            Ok(end + Duration::from_secs(60))
        );
        assert!(matches!(
            deadline(t, limits(), end + Duration::from_secs(60)),
            Err(Why::Idle)
        ));
    }
}
