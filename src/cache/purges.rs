//! Recent purges, so that a fill which started before a purge cannot store, as fresh, what the
//! purge was meant to remove. Bounded by count and bytes; a fill older than everything still
//! remembered is treated as hard-purged (losing a store is safe, serving purged data is not).

use std::collections::VecDeque;
use std::sync::Mutex;

/// Purges remembered at most.
const MAX_ENTRIES: usize = 4096;
/// Bytes of tag names remembered at most.
const MAX_BYTES: usize = 1 << 20;

/// What a purge removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Everything under a surrogate key (URL purges use the URL's tag).
    Tag(String),
    /// The whole cache.
    All,
}

/// A point in the purge sequence, taken when a fill starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// What happened to a fill's tags since its ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// Nothing: store as fresh.
    Nothing,
    /// Soft-purged: store, marked stale.
    Soft,
    /// Hard-purged: do not keep.
    Hard,
}

#[derive(Default)]
struct Log {
    /// Sequence number of the next purge.
    next: u64,
    /// Purges with a sequence number below this were forgotten.
    forgotten: u64,
    entries: VecDeque<(u64, Target, bool)>,
    bytes: usize,
}

/// The recent purges.
#[derive(Default)]
pub struct PurgeLog {
    log: Mutex<Log>,
}

impl PurgeLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current point in the sequence.
    pub fn ticket(&self) -> Ticket {
        Ticket(self.lock().next)
    }

    /// Remember a purge (before it marks anything, so a racing fill sees one or the other).
    pub fn record(&self, target: Target, soft: bool) {
        let mut log = self.lock();
        let seq = log.next;
        log.next += 1;
        log.bytes += cost(&target);
        log.entries.push_back((seq, target, soft));
        while log.entries.len() > MAX_ENTRIES || log.bytes > MAX_BYTES {
            let Some((seq, old, _)) = log.entries.pop_front() else {
                break;
            };
            log.bytes -= cost(&old);
            log.forgotten = seq + 1;
        }
    }

    /// Whether a purge since `ticket` touched any of `tags`.
    pub fn since(&self, ticket: Ticket, tags: &[String]) -> Since {
        let log = self.lock();
        if ticket.0 < log.forgotten {
            return Since::Hard;
        }
        let mut found = Since::Nothing;
        for (seq, target, soft) in log.entries.iter().rev() {
            if *seq < ticket.0 {
                break;
            }
            let hit = match target {
                Target::All => true,
                Target::Tag(t) => tags.iter().any(|x| x == t),
            };
            match (hit, soft) {
                (true, false) => return Since::Hard,
                (true, true) => found = Since::Soft,
                _ => {}
            }
        }
        found
    }
}

fn cost(t: &Target) -> usize {
    match t {
        Target::Tag(s) => s.len() + 48,
        Target::All => 48,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn purges_after_the_ticket_count() {
        let log = PurgeLog::default();
        log.record(Target::Tag("a".into()), false);
        let t = log.ticket();
        assert_eq!(log.since(t, &tags(&["a"])), Since::Nothing);
        log.record(Target::Tag("b".into()), true);
        assert_eq!(log.since(t, &tags(&["a"])), Since::Nothing);
        assert_eq!(log.since(t, &tags(&["a", "b"])), Since::Soft);
        log.record(Target::Tag("b".into()), false);
        assert_eq!(log.since(t, &tags(&["b"])), Since::Hard);
        let t2 = log.ticket();
        log.record(Target::All, true);
        assert_eq!(log.since(t2, &tags(&["x"])), Since::Soft);
        assert_eq!(log.since(log.ticket(), &tags(&["b"])), Since::Nothing);
    }

    #[test]
    fn a_forgotten_ticket_counts_as_purged() {
        let log = PurgeLog::default();
        let t = log.ticket();
        for i in 0..MAX_ENTRIES + 1 {
            log.record(Target::Tag(format!("t{i}")), true);
        }
        assert_eq!(log.since(t, &tags(&["unrelated"])), Since::Hard);
        let big = "x".repeat(MAX_BYTES);
        log.record(Target::Tag(big), true);
        assert!(log.lock().bytes <= MAX_BYTES);
        assert_eq!(log.since(log.ticket(), &tags(&["y"])), Since::Nothing);
    }
}
