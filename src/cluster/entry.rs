//! One purge as the Redis stream carries it, and stream entry ids. Pure: encoded and decoded
//! here, table-tested, so the I/O code only moves fields.

use std::fmt;

/// What a purge removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// Everything under these surrogate keys (a URL purge names the URL's tag).
    Tags(Vec<String>),
    /// The whole cache: a generation bump every node observes.
    All,
}

/// A purge call, as every node applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purge {
    /// What it removes.
    pub what: What,
    /// Soft: mark stale (revalidate, stale-if-error still applies) instead of removing.
    pub soft: bool,
}

/// A purge read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its place in the log: consecutive, so a missing number is a gap.
    pub seq: u64,
    /// The purge-all generation once this purge was logged.
    pub gen: u64,
    /// The purge.
    pub purge: Purge,
    /// The node it was sent to.
    pub node: String,
}

/// Most bytes of tag names one entry may carry (`POST /purge` takes at most 256 keys).
pub const MAX_TARGET_BYTES: usize = 64 << 10;

impl Purge {
    /// The `kind` field.
    pub fn kind(&self) -> &'static str {
        match self.what {
            What::Tags(_) => "tags",
            What::All => "all",
        }
    }

    /// The `targets` field: tags one per line (a URL's tag holds a space; no tag holds a line
    /// break, as neither header values nor normalized URLs can).
    pub fn targets(&self) -> String {
        match &self.what {
            What::Tags(t) => t.join("\n"),
            What::All => String::new(),
        }
    }
}

/// An entry that could not be read: its number when that much was readable, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// The `seq` field, if it was a number.
    pub seq: Option<u64>,
    /// What was wrong.
    pub why: String,
}

/// Build an entry from the stream's fields (`field(name)` gives the value, if present).
pub fn decode<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Result<Entry, Unreadable> {
    let seq = field("seq").and_then(|v| v.parse().ok());
    decode_fields(field).map_err(|why| Unreadable { seq, why })
}

fn decode_fields<'a>(field: impl Fn(&str) -> Option<&'a str>) -> Result<Entry, String> {
    let num = |name: &str| -> Result<u64, String> {
        let v = field(name).ok_or_else(|| format!("no `{name}` field"))?;
        v.parse()
            .map_err(|_| format!("`{name}` is not a number: {v:?}"))
    };
    let seq = num("seq")?;
    let gen = num("gen")?;
    let soft = match field("soft") {
        Some("1") => true,
        Some("0") => false,
        other => return Err(format!("`soft` is {other:?}")),
    };
    let what = match field("kind") {
        Some("all") => What::All,
        Some("tags") => {
            let t = field("targets").unwrap_or_default();
            if t.len() > MAX_TARGET_BYTES {
                return Err(format!("`targets` is {} bytes", t.len()));
            }
            let tags: Vec<String> = t
                .split('\n')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
            if tags.is_empty() {
                return Err("`targets` is empty".into());
            }
            What::Tags(tags)
        }
        other => return Err(format!("`kind` is {other:?}")),
    };
    let node = field("node").unwrap_or_default().to_string();
    Ok(Entry {
        seq,
        gen,
        purge: Purge { what, soft },
        node,
    })
}

/// A stream entry id, `<ms>-<n>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u64, pub u64);

impl StreamId {
    /// Parse `123-4` (a bare `123` is `123-0`).
    pub fn parse(s: &str) -> Option<StreamId> {
        let (ms, n) = s.split_once('-').unwrap_or((s, "0"));
        Some(StreamId(ms.parse().ok()?, n.parse().ok()?))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(
        pairs: &'a [(&'static str, &'static str)],
    ) -> impl Fn(&str) -> Option<&'static str> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    #[test]
    fn decode_table() {
        let tags = |t: &[&str]| What::Tags(t.iter().map(|s| s.to_string()).collect());
        let ok = |seq, what, soft| {
            Ok::<_, ()>(Entry {
                seq,
                gen: 2,
                purge: Purge { what, soft },
                node: "n1".into(),
            })
        };
        let base = [("seq", "7"), ("gen", "2"), ("node", "n1"), ("soft", "0")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            for (k, val) in extra {
                v.retain(|(kk, _)| kk != k);
                v.push((*k, *val));
            }
            v
        };
        type Row<'a> = (Vec<(&'a str, &'a str)>, Result<Entry, ()>);
        let rows: Vec<Row> = vec![
            (
                with(&[("kind", "tags"), ("targets", "a\nurl /b")]),
                ok(7, tags(&["a", "url /b"]), false),
            ),
            (
                with(&[("kind", "tags"), ("targets", "\na\n\n")]),
                ok(7, tags(&["a"]), false),
            ),
            (
                with(&[("kind", "all"), ("soft", "1")]),
                ok(7, What::All, true),
            ),
            (with(&[("kind", "tags"), ("targets", "")]), Err(())),
            (with(&[("kind", "tags")]), Err(())),
            (with(&[("kind", "url"), ("targets", "a")]), Err(())),
            (with(&[("kind", "all"), ("seq", "x")]), Err(())),
            (with(&[("kind", "all"), ("soft", "yes")]), Err(())),
            (vec![("kind", "all"), ("soft", "0"), ("gen", "1")], Err(())),
        ];
        for (i, (f, want)) in rows.iter().enumerate() {
            let got = decode(fields(f)).map_err(|_| ());
            assert_eq!(&got, want, "row {i}");
        }
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        for p in [
            Purge {
                what: What::Tags(vec!["product-1".into(), "url /a?b=1".into()]),
                soft: true,
            },
            Purge {
                what: What::All,
                soft: false,
            },
        ] {
            let (kind, targets, soft) = (p.kind(), p.targets(), if p.soft { "1" } else { "0" });
            let f = |name: &str| match name {
                "seq" => Some("3"),
                "gen" => Some("0"),
                "kind" => Some(kind),
                "targets" => Some(targets.as_str()),
                "soft" => Some(soft),
                "node" => Some("x"),
                _ => None,
            };
            assert_eq!(decode(f).unwrap().purge, p);
        }
    }

    #[test]
    fn stream_ids_order_as_redis_does() {
        assert_eq!(
            StreamId::parse("1700000000000-3"),
            Some(StreamId(1_700_000_000_000, 3))
        );
        assert_eq!(StreamId::parse("5"), Some(StreamId(5, 0)));
        assert_eq!(StreamId::parse("a-1"), None);
        assert!(StreamId(2, 0) > StreamId(1, 9));
        assert!(StreamId(2, 10) > StreamId(2, 9));
        assert_eq!(StreamId(12, 3).to_string(), "12-3");
    }
}
