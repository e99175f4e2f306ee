//! What a node shows about the cluster in `/stats` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::metrics::{escape, family};

/// A node with a current heartbeat.
#[derive(Debug, Clone, Serialize)]
pub struct LiveNode {
    /// Its id.
    pub node: String,
    /// The last purge it applied.
    pub seq: u64,
}

/// The cluster as this node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterState {
    /// This node's id.
    pub node: String,
    /// The Redis URL, password redacted.
    pub redis: String,
    /// Connected to Redis and following the purge log.
    pub connected: bool,
    /// The Redis data set's epoch this node follows.
    pub epoch: String,
    /// The last purge applied.
    pub seq: u64,
    /// How long this node has been cut off from the log (0 while connected).
    pub lag_seconds: f64,
    /// Nodes with a current heartbeat, at the last one.
    pub live_nodes: Vec<LiveNode>,
    /// Purges sent to other nodes and applied here.
    pub purges_from_peers: u64,
    /// Times the connection to Redis was lost (or the first one failed).
    pub disconnects: u64,
    /// Times everything held was soft-purged because purges may have been missed, by reason.
    pub gap_flushes: BTreeMap<&'static str, u64>,
}

impl ClusterState {
    /// Append the Prometheus families.
    pub fn prometheus(&self, o: &mut String) {
        family(
            o,
            "apicache_cluster_info",
            "gauge",
            "This node's id in the cluster.",
        );
        let node = escape(&self.node);
        let _ = writeln!(o, "apicache_cluster_info{{node=\"{node}\"}} 1");
        let gauges = [
            (
                "apicache_cluster_connected",
                "1 while connected to Redis and following the purge log.",
                u64::from(self.connected).to_string(),
            ),
            (
                "apicache_cluster_applied_seq",
                "The last purge applied from the log.",
                self.seq.to_string(),
            ),
            (
                "apicache_cluster_lag_seconds",
                "How long this node has been cut off from the purge log (0 while connected).",
                format!("{:.3}", self.lag_seconds),
            ),
            (
                "apicache_cluster_live_nodes",
                "Nodes with a current heartbeat.",
                self.live_nodes.len().to_string(),
            ),
        ];
        for (name, help, v) in gauges {
            family(o, name, "gauge", help);
            let _ = writeln!(o, "{name} {v}");
        }
        for (name, help, v) in [
            (
                "apicache_cluster_peer_purges_total",
                "Purges sent to other nodes and applied here.",
                self.purges_from_peers,
            ),
            (
                "apicache_cluster_disconnects_total",
                "Connections to Redis lost (or a first one that failed).",
                self.disconnects,
            ),
        ] {
            family(o, name, "counter", help);
            let _ = writeln!(o, "{name} {v}");
        }
        family(
            o,
            "apicache_cluster_gap_flushes_total",
            "counter",
            "Everything held soft-purged because purges may have been missed, by reason.",
        );
        for (reason, v) in &self.gap_flushes {
            let _ = writeln!(
                o,
                "apicache_cluster_gap_flushes_total{{reason=\"{reason}\"}} {v}"
            );
        }
    }
}
