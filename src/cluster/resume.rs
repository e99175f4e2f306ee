//! Where a node picks up the purge log, and whether it may have missed purges (a gap). Pure
//! decisions with table tests; `follow` acts on them.

use std::time::Duration;

use super::entry::StreamId;

/// How far a node has followed the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The epoch of the Redis data set it followed (a Redis that lost its data has a new one).
    pub epoch: String,
    /// The Redis server process it followed (a restart or a failover changes it).
    pub run_id: String,
    /// The last purge applied.
    pub seq: u64,
    /// The purge-all generation seen.
    pub gen: u64,
    /// The stream id of that purge: reading resumes after it.
    pub id: StreamId,
}

/// What Redis says when a node (re)connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The epoch (set by whichever node found none).
    pub epoch: String,
    /// The server's `run_id` (`INFO server`).
    pub run_id: String,
    /// The last purge logged.
    pub seq: u64,
    /// The purge-all generation.
    pub gen: u64,
    /// The newest stream entry (`0-0` when empty).
    pub last_id: StreamId,
    /// The `seq` of the entry at the node's own position, if the stream still has it.
    pub at_position: Option<u64>,
    /// The `seq` of the oldest entry the stream still has.
    pub first_seq: Option<u64>,
}

/// Why a node cannot be sure it saw every purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Purges it had not read were trimmed from the stream.
    Trimmed,
    /// Redis lost its data (restart without persistence, failover): a new epoch.
    Epoch,
    /// The log went backwards, or no longer holds what the node read: a failover to a replica
    /// that missed writes.
    Diverged,
    /// Cut off from Redis for longer than `max_purge_lag` (or never connected before serving).
    Disconnected,
    /// An entry this version cannot read (a newer node wrote it, or it was altered).
    Unreadable,
}

impl Gap {
    /// Label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Gap::Trimmed => "trimmed",
            Gap::Epoch => "epoch",
            Gap::Diverged => "diverged",
            Gap::Disconnected => "disconnected",
            Gap::Unreadable => "unreadable",
        }
    }

    /// Every label, for metrics.
    pub const ALL: [Gap; 5] = [
        Gap::Trimmed,
        Gap::Epoch,
        Gap::Diverged,
        Gap::Disconnected,
        Gap::Unreadable,
    ];
}

/// What a (re)connecting node does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// Read the log after this position.
    pub from: Position,
    /// Treat everything held as soft-purged first.
    pub gap: Option<Gap>,
    /// A purge-all was logged that the node never read: purge everything hard instead.
    pub missed_purge_all: bool,
}

/// Decide how a node resumes: `known` is its position (`None`: it never followed this log),
/// `cut_for` how long it went without contact (`None`: this is its first try at start).
pub fn on_connect(
    known: Option<&Position>,
    hello: &Hello,
    cut_for: Option<Duration>,
    lag: Duration,
) -> Resume {
    let end = Position {
        epoch: hello.epoch.clone(),
        run_id: hello.run_id.clone(),
        seq: hello.seq,
        gen: hello.gen,
        id: hello.last_id,
    };
    let too_long = cut_for.is_some_and(|d| d > lag);
    let Some(p) = known else {
        // A node that served before it could follow the log may hold what a purge meanwhile
        // removed; one that connects at start holds nothing.
        let gap = cut_for.is_some().then_some(Gap::Disconnected);
        return Resume {
            from: end,
            gap,
            missed_purge_all: false,
        };
    };
    let lost = |gap| Resume {
        missed_purge_all: hello.gen != p.gen,
        from: end.clone(),
        gap: Some(gap),
    };
    // Another data set, or another server process: a restart may have lost the last writes
    // (persistence is at best a second behind), a failover those not yet replicated.
    if p.epoch != hello.epoch || p.run_id != hello.run_id {
        return Resume {
            missed_purge_all: false,
            ..lost(Gap::Epoch)
        };
    }
    if hello.seq < p.seq || hello.gen < p.gen {
        return Resume {
            missed_purge_all: false,
            ..lost(Gap::Diverged)
        };
    }
    match hello.at_position {
        // Everything after the position is still there: replay it.
        Some(seq) if seq == p.seq => Resume {
            from: p.clone(),
            gap: too_long.then_some(Gap::Disconnected),
            missed_purge_all: false,
        },
        Some(_) => lost(Gap::Diverged),
        // The position is gone, but the oldest entry left is the next one (or nothing was
        // logged at all): nothing was lost.
        None if hello.first_seq == p.seq.checked_add(1) || p.seq == 0 && hello.seq == 0 => Resume {
            from: p.clone(),
            gap: too_long.then_some(Gap::Disconnected),
            missed_purge_all: false,
        },
        None => lost(Gap::Trimmed),
    }
}

/// What to do with the next entry read (always newer in the stream), after `last` was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The next one: apply it.
    Apply,
    /// Entries between were lost (trimmed): a gap, then apply it.
    Trimmed,
    /// The numbering went back (the counter key was lost, or a failover): a gap, then apply it
    /// and follow the numbers from there.
    Renumbered,
}

/// Whether `seq` follows `last` in the log.
pub fn step(last: u64, seq: u64) -> Step {
    if seq <= last {
        Step::Renumbered
    } else if Some(seq) == last.checked_add(1) {
        Step::Apply
    } else {
        Step::Trimmed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(epoch: &str, seq: u64, gen: u64, id: u64) -> Position {
        Position {
            epoch: epoch.into(),
            run_id: "r1".into(),
            seq,
            gen,
            id: StreamId(id, 0),
        }
    }

    fn hello(epoch: &str, seq: u64, gen: u64, last: u64, at: Option<u64>) -> Hello {
        Hello {
            epoch: epoch.into(),
            run_id: "r1".into(),
            seq,
            gen,
            last_id: StreamId(last, 0),
            at_position: at,
            first_seq: (seq > 0).then_some(seq.saturating_sub(9).max(1)),
        }
    }

    #[test]
    fn on_connect_table() {
        let lag = Duration::from_secs(2);
        let short = Some(Duration::from_millis(500));
        let long = Some(Duration::from_secs(3));
        let p = pos("e1", 10, 1, 100);
        // (known, hello, cut for) → (resume from, gap, missed purge-all)
        type Row = (
            Option<Position>,
            Hello,
            Option<Duration>,
            Position,
            Option<Gap>,
            bool,
        );
        let mut rows: Vec<Row> = vec![
            // First connect at start: the end of the log, nothing held.
            (
                None,
                hello("e1", 10, 1, 100, None),
                None,
                p.clone(),
                None,
                false,
            ),
            // First connect after serving unconnected: whatever it holds is suspect.
            (
                None,
                hello("e1", 10, 1, 100, None),
                short,
                p.clone(),
                Some(Gap::Disconnected),
                false,
            ),
            // Reconnect, the position is still in the stream: replay from it.
            (
                Some(p.clone()),
                hello("e1", 14, 1, 140, Some(10)),
                short,
                p.clone(),
                None,
                false,
            ),
            // ... but cut off longer than the lag: replay, and soft-purge first.
            (
                Some(p.clone()),
                hello("e1", 14, 1, 140, Some(10)),
                long,
                p.clone(),
                Some(Gap::Disconnected),
                false,
            ),
            // The position was trimmed away.
            (
                Some(p.clone()),
                hello("e1", 30, 1, 300, None),
                short,
                pos("e1", 30, 1, 300),
                Some(Gap::Trimmed),
                false,
            ),
            // ... and a purge-all was among what was lost.
            (
                Some(p.clone()),
                hello("e1", 30, 2, 300, None),
                short,
                pos("e1", 30, 2, 300),
                Some(Gap::Trimmed),
                true,
            ),
            // Redis lost its data.
            (
                Some(p.clone()),
                hello("e2", 0, 0, 0, None),
                short,
                pos("e2", 0, 0, 0),
                Some(Gap::Epoch),
                false,
            ),
            // A replica that missed writes: the log went backwards.
            (
                Some(p.clone()),
                hello("e1", 8, 1, 80, None),
                short,
                pos("e1", 8, 1, 80),
                Some(Gap::Diverged),
                false,
            ),
            // ... or holds another entry at the position.
            (
                Some(p.clone()),
                hello("e1", 12, 1, 120, Some(9)),
                short,
                pos("e1", 12, 1, 120),
                Some(Gap::Diverged),
                false,
            ),
            // Nothing was ever logged: nothing to miss.
            (
                Some(pos("e1", 0, 0, 0)),
                hello("e1", 0, 0, 0, None),
                short,
                pos("e1", 0, 0, 0),
                None,
                false,
            ),
        ];
        // Same data set, another server process (restart, failover).
        let restarted = Hello {
            run_id: "r2".into(),
            ..hello("e1", 14, 1, 140, Some(10))
        };
        let after_restart = Position {
            run_id: "r2".into(),
            ..pos("e1", 14, 1, 140)
        };
        rows.push((
            Some(p.clone()),
            restarted,
            short,
            after_restart,
            Some(Gap::Epoch),
            false,
        ));
        for (i, (known, h, cut, from, gap, all)) in rows.iter().enumerate() {
            let got = on_connect(known.as_ref(), h, *cut, lag);
            assert_eq!(
                got,
                Resume {
                    from: from.clone(),
                    gap: *gap,
                    missed_purge_all: *all
                },
                "row {i}"
            );
        }
    }

    #[test]
    fn step_table() {
        for (last, seq, want) in [
            (4, 5, Step::Apply),
            (4, 4, Step::Renumbered),
            (4, 1, Step::Renumbered),
            (4, 6, Step::Trimmed),
            (0, 1, Step::Apply),
            (u64::MAX, 3, Step::Renumbered),
        ] {
            assert_eq!(step(last, seq), want, "{last} → {seq}");
        }
    }
}
