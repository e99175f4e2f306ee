//! Request collapsing: at most one origin fetch per key at a time. The first caller leads: its
//! fetch runs as a spawned task (so a client that disconnects does not abort it for the others)
//! and it gets the task's full result from the task handle. Every other caller waits for a
//! clonable summary of that result.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::oneshot;

type Flight<S> = Shared<BoxFuture<'static, Option<S>>>;

/// How a caller took part in a flight.
#[derive(Debug)]
pub enum Joined<T, S> {
    /// This caller started the fetch and gets its full result.
    Leader(T),
    /// Another caller's fetch was running; this is its summary.
    Waiter(S),
    /// The fetch task died (panicked) before it finished.
    Lost,
}

/// The in-flight fetches, by key.
pub struct Collapser<S> {
    inflight: Arc<Mutex<HashMap<String, Flight<S>>>>,
}

impl<S> Default for Collapser<S> {
    fn default() -> Self {
        Self {
            inflight: Arc::default(),
        }
    }
}

/// Removes the key when the fetch task ends, even by panic.
struct Landing<S> {
    inflight: Arc<Mutex<HashMap<String, Flight<S>>>>,
    key: String,
}

impl<S> Drop for Landing<S> {
    fn drop(&mut self) {
        lock(&self.inflight).remove(&self.key);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<S: Clone + Send + Sync + 'static> Collapser<S> {
    /// Whether a fetch for `key` is running.
    pub fn is_running(&self, key: &str) -> bool {
        lock(&self.inflight).contains_key(key)
    }

    /// Number of fetches running.
    pub fn len(&self) -> usize {
        lock(&self.inflight).len()
    }

    /// Whether no fetch is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lead the fetch for `key` with `fetch()`, or wait for the one already running (then `fetch`
    /// is never called: a waiter builds nothing). The leader's result is published to waiters as
    /// `summarize(&result)`; the key leaves the in-flight map before waiters are released, after
    /// whatever the fetch stored.
    pub async fn run<T, F>(
        &self,
        key: &str,
        fetch: impl FnOnce() -> F,
        summarize: fn(&T) -> S,
    ) -> Joined<T, S>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let started = {
            let mut map = lock(&self.inflight);
            match map.get(key) {
                Some(flight) => Err(flight.clone()),
                None => {
                    let (tx, rx) = oneshot::channel();
                    map.insert(key.to_string(), rx.map(Result::ok).boxed().shared());
                    Ok(tx)
                }
            }
        };
        let tx = match started {
            Ok(tx) => tx,
            Err(flight) => {
                return match flight.await {
                    Some(s) => Joined::Waiter(s),
                    None => Joined::Lost,
                }
            }
        };
        let landing = Landing {
            inflight: self.inflight.clone(),
            key: key.to_string(),
        };
        let fetch = fetch();
        let handle = tokio::spawn(async move {
            let full = fetch.await;
            let summary = summarize(&full);
            drop(landing);
            let _ = tx.send(summary);
            full
        });
        match handle.await {
            Ok(full) => Joined::Leader(full),
            Err(_) => Joined::Lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn one_fetch_many_waiters() {
        let c = Arc::new(Collapser::<u32>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (c, runs) = (c.clone(), runs.clone());
            tasks.push(tokio::spawn(async move {
                let fetch = async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    String::from("full")
                };
                match c.run("k", || fetch, |s: &String| s.len() as u32).await {
                    Joined::Leader(s) => (1, s.len() as u32),
                    Joined::Waiter(n) => (0, n),
                    Joined::Lost => (9, 0),
                }
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (led, n) = t.await.unwrap();
            leaders += led;
            assert_eq!(n, 4);
        }
        assert_eq!((leaders, runs.load(Ordering::SeqCst)), (1, 1));
        assert!(c.is_empty());
    }

    #[tokio::test]
    async fn leader_that_leaves_does_not_abort_the_fetch() {
        let c = Arc::new(Collapser::<u32>::default());
        let (done_tx, done_rx) = oneshot::channel::<()>();
        // The test decides when the fetch ends, so a slow machine cannot end it before the
        // waiter has joined (the waiter would then lead a fetch of its own).
        let (release_tx, release_rx) = oneshot::channel::<()>();
        let leader = {
            let c = c.clone();
            tokio::spawn(async move {
                let fetch = async move {
                    let _ = release_rx.await;
                    let _ = done_tx.send(());
                    7u32
                };
                c.run("k", || fetch, |n| *n).await
            })
        };
        for _ in 0..5000 {
            if c.is_running("k") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert!(c.is_running("k"));
        let waiter = c.run("k", || async { 0u32 }, |n| *n);
        tokio::pin!(waiter);
        // One poll joins the flight (and cannot finish: the fetch is held).
        tokio::select! {
            biased;
            _ = &mut waiter => panic!("the waiter finished before the fetch"),
            _ = std::future::ready(()) => {}
        }
        leader.abort();
        let _ = release_tx.send(());
        done_rx
            .await
            .expect("the fetch finished although its leader left");
        assert!(matches!(waiter.await, Joined::Waiter(7)));
        assert!(!c.is_running("k"));
    }

    #[tokio::test]
    async fn a_panicking_fetch_releases_everyone() {
        let c = Arc::new(Collapser::<u32>::default());
        let fetch = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("fetch failed")
        };
        let leader = {
            let c = c.clone();
            tokio::spawn(async move { c.run("k", || fetch, |n: &u32| *n).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let waiter = c.run("k", || async { 1u32 }, |n| *n).await;
        assert!(matches!(waiter, Joined::Lost));
        assert!(matches!(leader.await.unwrap(), Joined::Lost));
        assert!(c.is_empty());
    }
}
