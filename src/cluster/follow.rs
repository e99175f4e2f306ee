//! The task that follows the purge log: connect (with backoff), decide where to resume, read
//! with a blocking `XREAD` on its own connection, apply each purge to the local store,
//! heartbeat, and treat anything it may have missed as a gap.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisError, RedisResult};
use tokio::sync::watch;

use super::entry::{Entry, StreamId, Unreadable, What};
use super::resume::{self, Gap, Step};
use super::{wire, Cluster};
use super::{BACKOFF_MAX, BACKOFF_MIN, BATCH, BLOCK, COMMAND_TIMEOUT, HEARTBEAT, KEPT_COUNTS};

/// A session that lasted this long was not a failure to connect: the backoff starts over.
const STABLE: Duration = Duration::from_secs(5);

/// The command connection and the dedicated one for the blocking read.
type Connections = (MultiplexedConnection, MultiplexedConnection);

/// How a session ended.
enum Ended {
    /// The server is stopping.
    Shutdown,
    /// Redis is reachable but follows another epoch.
    Resync,
    /// Redis went away (why).
    Lost(String),
}

impl Cluster {
    /// Follow the log until `shutdown`; `first` is the connect tried at start.
    pub(super) async fn follow(
        self: Arc<Self>,
        first: RedisResult<Connections>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut next = first;
        let mut backoff = BACKOFF_MIN;
        loop {
            let why = match next {
                Ok((cmd, read)) => {
                    let began = tokio::time::Instant::now();
                    match self.session(cmd, read, &mut shutdown).await {
                        Ended::Shutdown => break,
                        // Redis is there, under another epoch: say hello again at once, not
                        // as an outage.
                        Ended::Resync => {
                            self.lock().link = None;
                            // Bounded: an epoch that keeps changing must not spin.
                            if began.elapsed() < STABLE {
                                tokio::time::sleep(BACKOFF_MIN).await;
                            }
                            next = self.connect().await;
                            continue;
                        }
                        // A session that lasted resets the backoff; one that fails at once
                        // (a read the server refuses, say) must not spin.
                        Ended::Lost(why) if began.elapsed() > STABLE => {
                            backoff = BACKOFF_MIN;
                            why
                        }
                        Ended::Lost(why) => why,
                    }
                }
                Err(e) => e.to_string(),
            };
            self.lost(&why);
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.changed() => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
            // A dropped sender (the server gone without a shutdown) counts as one.
            if *shutdown.borrow() || shutdown.has_changed().is_err() {
                break;
            }
            next = self.connect().await;
        }
        self.leave().await;
    }

    /// Open both connections, say hello, and resume (acting on a gap before anything else).
    pub(super) async fn connect(&self) -> RedisResult<Connections> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        let mut cmd = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        let read = self
            .client
            .get_multiplexed_async_connection_with_config(
                &config.set_response_timeout(Some(BLOCK + COMMAND_TIMEOUT)),
            )
            .await?;
        let known = self.lock().position.clone();
        let candidate = new_epoch(&self.node);
        let hello = wire::hello(
            &mut cmd,
            &self.keys,
            &candidate,
            known.as_ref().map(|p| p.id),
        )
        .await?;
        let cut_for = {
            let s = self.lock();
            let now = self.store.clock().now();
            s.tried
                .then(|| now.saturating_duration_since(s.cut_since.unwrap_or(s.contact)))
        };
        // A resync asked for before this hello is answered by it.
        let _ = futures_util::FutureExt::now_or_never(self.resync.notified());
        let r = resume::on_connect(known.as_ref(), &hello, cut_for, self.cfg.max_purge_lag);
        if known.as_ref().is_some_and(|p| p.epoch != r.from.epoch) {
            // Numbers and nodes of another data set: a purge call must not read their counts,
            // nor `/stats` show their heartbeats (cleared before the gap is counted).
            let mut s = self.lock();
            s.counts.clear();
            s.live.clear();
        }
        if let Some(gap) = r.gap {
            self.gap(gap, r.missed_purge_all).await;
        }
        {
            let mut s = self.lock();
            s.tried = true;
            s.link = Some((cmd.clone(), r.from.epoch.clone()));
            s.position = Some(r.from.clone());
            if r.gap.is_some() && s.cut_since.is_some() {
                // Everything held until now was just flushed: a session that fails before it
                // reads must not flush (and count) it again at the next try.
                let now = self.store.clock().now();
                s.cut_since = Some(now);
                self.store.set_cut_off(Some(now), self.cfg.max_purge_lag);
            }
        }
        self.applied.send_replace(r.from.seq);
        Ok((cmd, read))
    }

    /// The first read of a session succeeded: the node follows the log again. Logged once per
    /// change.
    fn following(&self) {
        let was_cut = {
            let mut s = self.lock();
            s.cut_since.take().is_some() || !s.announced
        };
        self.store.set_cut_off(None, self.cfg.max_purge_lag);
        if was_cut {
            self.lock().announced = true;
            tracing::info!(
                target: "apicache::cluster",
                node = %self.node,
                seq = *self.applied.borrow(),
                "connected to Redis: following purges"
            );
        }
    }

    /// Read, apply and heartbeat until an error, a changed epoch, or `shutdown`.
    async fn session(
        &self,
        mut cmd: MultiplexedConnection,
        read: MultiplexedConnection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Ended {
        match self.read_loop(&mut cmd, read, shutdown).await {
            Ok(ended) | Err(ended) => ended,
        }
    }

    async fn read_loop(
        &self,
        cmd: &mut MultiplexedConnection,
        read: MultiplexedConnection,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Ended, Ended> {
        let err = |e: RedisError| Ended::Lost(e.to_string());
        self.beat(cmd).await.map_err(err)??;
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reader = |from, block| wire::read(read.clone(), self.keys.clone(), from, block, BATCH);
        // The first read answers at once: what was missed is replayed before the node counts
        // as following again.
        let mut reading = Box::pin(reader(self.position_id(), None));
        let mut first = true;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return Ok(Ended::Shutdown),
                _ = self.resync.notified() => return Ok(Ended::Resync),
                _ = tick.tick() => self.beat(cmd).await.map_err(err)??,
                got = &mut reading => {
                    let entries = got.map_err(err)?;
                    if !entries.is_empty() {
                        self.apply(entries).await;
                        // Confirm at once: a purge call is waiting on it.
                        self.beat(cmd).await.map_err(err)??;
                    }
                    if first {
                        first = false;
                        self.following();
                    }
                    reading = Box::pin(reader(self.position_id(), Some(BLOCK)));
                }
            }
        }
    }

    fn position_id(&self) -> StreamId {
        self.lock()
            .position
            .as_ref()
            .map_or(StreamId::default(), |p| p.id)
    }

    /// Heartbeat with the last applied seq; learn the live nodes. `Err(Resync)` when the
    /// epoch changed under the node. The last heartbeat Redis took is where a cut-off starts:
    /// the node must stop trusting what it holds no later than its heartbeat runs out.
    async fn beat(&self, cmd: &mut MultiplexedConnection) -> RedisResult<Result<(), Ended>> {
        let seq = *self.applied.borrow();
        let Some(epoch) = self.lock().link.as_ref().map(|(_, e)| e.clone()) else {
            return Ok(Err(Ended::Resync));
        };
        let sent = self.store.clock().now();
        let live = wire::beat(cmd, &self.keys, &self.node, seq, self.live_for(), &epoch).await?;
        let Some(live) = live else {
            return Ok(Err(Ended::Resync));
        };
        let mut s = self.lock();
        s.live = live;
        s.contact = sent;
        Ok(Ok(()))
    }

    /// Apply entries in order; a missing number, numbers going back, or an unreadable entry is
    /// a gap.
    async fn apply(&self, entries: Vec<(StreamId, Result<Entry, Unreadable>)>) {
        for (id, entry) in entries {
            let (last, gen) = self
                .lock()
                .position
                .as_ref()
                .map_or((0, 0), |p| (p.seq, p.gen));
            let e = match entry {
                Ok(e) => e,
                Err(u) => {
                    tracing::warn!(target: "apicache::cluster", %id, why = u.why, "unreadable purge log entry");
                    self.gap(Gap::Unreadable, false).await;
                    self.advance(id, u.seq, None);
                    continue;
                }
            };
            let is_all = u64::from(e.purge.what == What::All);
            match resume::step(last, e.seq) {
                Step::Apply => {}
                // A purge-all among the lost entries: nothing held may stay.
                Step::Trimmed => self.gap(Gap::Trimmed, e.gen > gen + is_all).await,
                Step::Renumbered => {
                    self.gap(Gap::Diverged, false).await;
                    // The generation is numbered anew as well.
                    if let Some(p) = self.lock().position.as_mut() {
                        p.gen = e.gen;
                    }
                }
            }
            let n = e.purge.apply(&self.store).await;
            if e.node == self.node {
                let mut s = self.lock();
                s.counts.push_back((e.seq, n));
                if s.counts.len() > KEPT_COUNTS {
                    s.counts.pop_front();
                }
            } else {
                self.counters.from_peers.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "apicache::cluster", from = %e.node, seq = e.seq, purged = n, "purge applied");
            }
            self.advance(id, Some(e.seq), Some(e.gen));
            self.applied.send_replace(e.seq);
        }
    }

    /// Move the position past `id`, to `seq` and `gen` when known.
    fn advance(&self, id: StreamId, seq: Option<u64>, gen: Option<u64>) {
        let mut s = self.lock();
        if let Some(p) = s.position.as_mut() {
            p.id = p.id.max(id);
            if let Some(seq) = seq {
                p.seq = seq;
            }
            if let Some(gen) = gen {
                p.gen = p.gen.max(gen);
            }
        }
    }

    /// The node may have missed purges: everything it holds is soft-purged before the next
    /// hit, or purged outright when a purge-all is known to have been missed.
    async fn gap(&self, gap: Gap, missed_purge_all: bool) {
        let n = if missed_purge_all {
            self.store.purge_all(false).await as u64
        } else {
            self.store.soft_purge_everything()
        };
        self.counters.gaps[gap as usize].fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "apicache::cluster",
            node = %self.node,
            reason = gap.label(),
            entries = n,
            hard = missed_purge_all,
            "may have missed purges: everything cached is revalidated before use"
        );
    }

    /// Redis went away (or was never reached): stop taking purges, start the degraded clock.
    /// Logged once per change, not per retry.
    fn lost(&self, why: &str) {
        let newly = {
            let mut s = self.lock();
            s.link = None;
            s.tried = true;
            // Still cut off since an earlier loss when a session failed before it read anything.
            let newly = s.cut_since.is_none();
            if newly {
                s.cut_since = Some(s.contact);
                self.store
                    .set_cut_off(Some(s.contact), self.cfg.max_purge_lag);
            }
            newly
        };
        if newly {
            self.counters.disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "apicache::cluster",
                node = %self.node,
                error = why,
                max_purge_lag = ?self.cfg.max_purge_lag,
                "cut off from Redis: purges answer 503 and peers' purges are not received; \
                 objects older than max_purge_lag are revalidated once this lasts longer"
            );
        }
    }

    /// Leave the live set, so purge calls stop waiting for this node (bounded).
    async fn leave(&self) {
        let link = self.lock().link.take();
        if let Some((mut cmd, epoch)) = link {
            let seq = *self.applied.borrow();
            let bye = wire::beat(
                &mut cmd,
                &self.keys,
                &self.node,
                seq,
                Duration::ZERO,
                &epoch,
            );
            let _ = tokio::time::timeout(Duration::from_millis(300), bye).await;
        }
    }
}

/// A fresh epoch candidate: unique enough that two Redis data sets never share one.
fn new_epoch(node: &str) -> String {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    node.hash(&mut h);
    std::time::SystemTime::now().hash(&mut h);
    format!("{:016x}", h.finish())
}
