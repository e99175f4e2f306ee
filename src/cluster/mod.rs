//! Several nodes, one purge log: purges reach every node through a Redis stream.
//!
//! Redis is the control plane, never an object store: each node keeps its own cache.
//! - [`entry`]: a purge as the stream carries it; [`resume`]: where a (re)connecting node picks
//!   up the log and whether it may have missed purges (pure decisions)
//! - `wire`: key names, Lua scripts (append, heartbeat, confirmations) and the stream read
//! - `follow`: the task that follows the log, applies purges, heartbeats, and reconnects
//! - [`state`]: what `/stats` and `/metrics` show
//!
//! A purge call appends to the log and waits until every live node (a current heartbeat) has
//! applied it. Its own node applies it the same way as the others, by reading the log.

pub mod entry;
mod follow;
pub mod resume;
pub mod state;
mod wire;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::Store;
use crate::config::ClusterConfig;
use entry::Purge;
use resume::{Gap, Position};
pub use state::ClusterState;
use wire::Keys;

/// How often a node heartbeats (and so how soon a purge call sees its progress).
const HEARTBEAT: Duration = Duration::from_millis(250);
/// The shortest time a heartbeat keeps a node live.
const LIVE_AT_LEAST: Duration = Duration::from_millis(1500);
/// Connecting to Redis, and any command but the blocking read.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one stream read blocks before it is issued again.
const BLOCK: Duration = Duration::from_millis(1000);
/// Entries read at a time.
const BATCH: usize = 256;
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// Purge counts kept for the calls waiting on them.
const KEPT_COUNTS: usize = 1024;

/// Why a purge call could not be answered as done.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Not connected to Redis: nothing was logged, no node applies it.
    #[error(
        "purge not applied: Redis is unreachable or refused it ({0}); no node purged anything, retry"
    )]
    Unreachable(String),
    /// Redis lost its data since this node connected; nothing was logged, and the node
    /// resynchronizes first.
    #[error("purge not applied: Redis lost its data and this node is resynchronizing; retry")]
    EpochChanged,
    /// Sent, but Redis did not answer: it may or may not have been logged (if it was, every
    /// node applies it). Purges are idempotent, so a retry is safe.
    #[error(
        "purge state unknown: Redis did not answer ({0}); it may have been logged, and then every node applies it; retrying is safe"
    )]
    Unknown(String),
}

/// What a logged purge achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Entries this node purged.
    pub purged: usize,
    /// The purge's number in the log.
    pub seq: u64,
    /// Live nodes when last asked.
    pub nodes: usize,
    /// How many of them had applied it.
    pub confirmed: usize,
    /// Whether this node applied it within the wait.
    pub applied_here: bool,
}

impl Outcome {
    /// This node and every live node applied it.
    pub fn complete(&self) -> bool {
        self.applied_here && self.nodes > 0 && self.confirmed >= self.nodes
    }
}

impl Purge {
    /// Apply to this node's store. Returns the entries affected.
    pub async fn apply(&self, store: &Store) -> usize {
        match &self.what {
            entry::What::All => store.purge_all(self.soft).await,
            entry::What::Tags(tags) => {
                let mut n = 0;
                for t in tags {
                    n += store.purge_tag(t, self.soft).await;
                }
                n
            }
        }
    }
}

/// A node's link to the cluster.
pub struct Cluster {
    cfg: ClusterConfig,
    node: String,
    keys: Keys,
    client: redis::Client,
    store: Store,
    shared: Mutex<Shared>,
    /// The last purge applied, for the purge calls waiting on it.
    applied: watch::Sender<u64>,
    /// A purge call found the epoch changed: the follower says hello again.
    resync: tokio::sync::Notify,
    counters: Counters,
}

/// What the follower and the purge calls share.
struct Shared {
    /// The command connection and the epoch it follows, while connected.
    link: Option<(MultiplexedConnection, String)>,
    /// How far the log was followed.
    position: Option<Position>,
    /// Last time Redis answered (store clock).
    contact: Instant,
    /// Out of contact since, while cut off (store clock).
    cut_since: Option<Instant>,
    /// Whether the first connect (at start) was tried.
    tried: bool,
    /// Whether "following purges" was logged since the last loss.
    announced: bool,
    /// Live nodes and what each applied, from the last heartbeat.
    live: Vec<(String, u64)>,
    /// Objects purged by recent entries this node sent, by seq.
    counts: VecDeque<(u64, usize)>,
}

#[derive(Default)]
struct Counters {
    from_peers: AtomicU64,
    disconnects: AtomicU64,
    gaps: [AtomicU64; Gap::ALL.len()],
}

impl Cluster {
    /// Connect (one bounded try, so a node that reaches Redis follows the log before it serves)
    /// and start following. `default_node` names the node when `node_id` is not set. The task
    /// stops, leaving the live set, when `shutdown` turns true.
    pub async fn start(
        cfg: ClusterConfig,
        default_node: String,
        store: Store,
        shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<(Arc<Cluster>, JoinHandle<()>)> {
        let client = redis::Client::open(cfg.redis_url.as_str())
            .map_err(|e| std::io::Error::other(format!("cluster.redis_url: {e}")))?;
        let now = store.clock().now();
        let c = Arc::new(Cluster {
            node: cfg.node_id.clone().unwrap_or(default_node),
            keys: Keys::new(&cfg.key_prefix),
            client,
            store,
            shared: Mutex::new(Shared {
                link: None,
                position: None,
                contact: now,
                cut_since: None,
                tried: false,
                announced: false,
                live: Vec::new(),
                counts: VecDeque::new(),
            }),
            applied: watch::channel(0).0,
            resync: tokio::sync::Notify::new(),
            counters: Counters::default(),
            cfg,
        });
        let first = c.connect().await;
        let task = tokio::spawn(c.clone().follow(first, shutdown));
        Ok((c, task))
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How long one heartbeat keeps this node live: at least as long as it may go on serving
    /// what it holds while cut off, so no purge call counts it out while it could still serve
    /// what that purge removes.
    fn live_for(&self) -> Duration {
        (self.cfg.max_purge_lag + HEARTBEAT).max(LIVE_AT_LEAST)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Log `purge` for every node, wait until this node applied it and every live node
    /// confirmed (up to `confirm_timeout`).
    pub async fn purge(&self, purge: Purge) -> Result<Outcome, ClusterError> {
        let link = self.lock().link.clone();
        let Some((mut con, epoch)) = link else {
            return Err(ClusterError::Unreachable("not connected".into()));
        };
        let published = tokio::time::timeout(
            COMMAND_TIMEOUT,
            wire::publish(
                &mut con,
                &self.keys,
                &epoch,
                &purge,
                &self.node,
                self.cfg.purge_log_length,
            ),
        )
        .await;
        let seq = match published {
            Ok(Ok(Some((seq, _)))) => seq,
            Ok(Ok(None)) => {
                self.resync.notify_one();
                return Err(ClusterError::EpochChanged);
            }
            // Redis answered with an error (a replica, the script's own checks): the script
            // checks before it writes, so nothing was logged.
            Ok(Err(e)) if matches!(e.kind(), redis::ErrorKind::Server(_)) => {
                return Err(ClusterError::Unreachable(e.to_string()))
            }
            Ok(Err(e)) => return Err(ClusterError::Unknown(e.to_string())),
            Err(_) => return Err(ClusterError::Unknown("no answer within 1s".into())),
        };
        let deadline = tokio::time::Instant::now() + self.cfg.confirm_timeout;
        let mut applied = self.applied.subscribe();
        // A `watch::Ref` is not `Send`: only whether it came is kept.
        let mine = matches!(
            tokio::time::timeout_at(deadline, applied.wait_for(|s| *s >= seq)).await,
            Ok(Ok(_))
        );
        let purged = if mine { self.purged_by(seq) } else { 0 };
        let (mut nodes, mut confirmed) = (0, 0);
        let mut wait = Duration::from_millis(1);
        loop {
            // Asked at least once, even when this node's own wait used the whole window.
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ask = wire::confirmed(&mut con, &self.keys, seq, &epoch);
            match tokio::time::timeout(left.max(Duration::from_millis(250)), ask).await {
                Ok(Ok((n, ok))) => (nodes, confirmed) = (n, ok),
                // Logged all the same: the answer says how many confirmed.
                _ => break,
            }
            if confirmed >= nodes || tokio::time::Instant::now() + wait >= deadline {
                break;
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_millis(16));
        }
        Ok(Outcome {
            purged,
            seq,
            nodes,
            confirmed,
            applied_here: mine,
        })
    }

    /// Objects this node purged for entry `seq` (one it sent).
    fn purged_by(&self, seq: u64) -> usize {
        let s = self.lock();
        s.counts
            .iter()
            .rev()
            .find(|(q, _)| *q == seq)
            .map_or(0, |(_, n)| *n)
    }

    /// The state `/stats` and `/metrics` show.
    pub fn state(&self) -> ClusterState {
        let s = self.lock();
        let now = self.store.clock().now();
        let c = &self.counters;
        ClusterState {
            node: self.node.clone(),
            redis: crate::config::cluster::redact(&self.cfg.redis_url),
            connected: s.link.is_some(),
            epoch: s
                .position
                .as_ref()
                .map(|p| p.epoch.clone())
                .unwrap_or_default(),
            seq: s.position.as_ref().map_or(0, |p| p.seq),
            lag_seconds: s
                .cut_since
                .map_or(0.0, |t| now.saturating_duration_since(t).as_secs_f64()),
            live_nodes: s
                .live
                .iter()
                .map(|(node, seq)| state::LiveNode {
                    node: node.clone(),
                    seq: *seq,
                })
                .collect(),
            purges_from_peers: c.from_peers.load(Ordering::Relaxed),
            disconnects: c.disconnects.load(Ordering::Relaxed),
            gap_flushes: Gap::ALL
                .iter()
                .map(|g| (g.label(), c.gaps[*g as usize].load(Ordering::Relaxed)))
                .collect(),
        }
    }
}
