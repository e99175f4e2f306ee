//! `[compression]`: which responses are encoded, at which levels, and which coding wins a tie in
//! the client's Accept-Encoding; validated with the key at fault named.

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

use super::binary_size;
use crate::compress::{Levels, ZSTD_LEVELS};
use crate::rfc::coding::{Coding, Preference};

/// `[compression]`: content codings produced by the proxy.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Master switch.
    pub enabled: bool,
    /// Media types worth compressing (`text/*`, `+json` and exact types).
    pub types: Vec<String>,
    /// Bodies smaller than this are sent as they are.
    #[serde(serialize_with = "binary_size")]
    pub min_size: ByteSize,
    /// gzip level for stored variants (paid once per object).
    pub gzip_level: u32,
    /// brotli quality for stored variants (paid once per object).
    pub brotli_level: u32,
    /// zstd level for stored variants (paid once per object).
    pub zstd_level: u32,
    /// gzip level for streamed, uncached responses.
    pub stream_gzip_level: u32,
    /// brotli quality for streamed, uncached responses.
    pub stream_brotli_level: u32,
    /// zstd level for streamed, uncached responses.
    pub stream_zstd_level: u32,
    /// Which coding wins when the client's Accept-Encoding gives several the same q-value, first
    /// wins; unlisted codings come after, in the default order `br`, `zstd`, `gzip`.
    pub prefer: Vec<Coding>,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            types: crate::rfc::coding::default_types(),
            min_size: ByteSize::kib(1),
            gzip_level: 9,
            brotli_level: 9,
            // Measured on JSON API bodies (4–87 KiB): level 3 comes out 3–6 % larger than the
            // gzip 9 variant stored beside it, which the default tie order would then serve in its
            // place; 9 is 3–8 % smaller than gzip 9 at half its CPU, as small as brotli 9 at a
            // tenth of its, and adds under a tenth to an object's encoding time.
            zstd_level: 9,
            stream_gzip_level: 1,
            stream_brotli_level: 3,
            // On the fly: level 1 is smaller than gzip 1 and about brotli 3's size, at a third of
            // gzip 1's time and with a 512 KiB window per response.
            stream_zstd_level: 1,
            prefer: Preference::DEFAULT_ORDER.to_vec(),
        }
    }
}

impl CompressionConfig {
    /// The levels of stored variants.
    pub fn stored_levels(&self) -> Levels {
        Levels {
            gzip: self.gzip_level,
            brotli: self.brotli_level,
            zstd: self.zstd_level,
        }
    }

    /// The levels of answers compressed on the fly.
    pub fn stream_levels(&self) -> Levels {
        Levels {
            gzip: self.stream_gzip_level,
            brotli: self.stream_brotli_level,
            zstd: self.stream_zstd_level,
        }
    }

    /// The tie order `prefer` sets.
    pub fn preference(&self) -> Preference {
        Preference::new(&self.prefer)
    }

    /// The first invalid key and why: levels out of their codec's range, `prefer` naming
    /// identity or a coding twice.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let levels: [(&'static str, u32, std::ops::RangeInclusive<u32>, &str); 6] = [
            (
                "compression.gzip_level",
                self.gzip_level,
                0..=9,
                "gzip levels",
            ),
            (
                "compression.stream_gzip_level",
                self.stream_gzip_level,
                0..=9,
                "gzip levels",
            ),
            (
                "compression.brotli_level",
                self.brotli_level,
                0..=11,
                "brotli qualities",
            ),
            (
                "compression.stream_brotli_level",
                self.stream_brotli_level,
                0..=11,
                "brotli qualities",
            ),
            (
                "compression.zstd_level",
                self.zstd_level,
                ZSTD_LEVELS,
                "zstd levels",
            ),
            (
                "compression.stream_zstd_level",
                self.stream_zstd_level,
                ZSTD_LEVELS,
                "zstd levels",
            ),
        ];
        for (key, level, range, what) in levels {
            if !range.contains(&level) {
                return Err((
                    key,
                    format!(
                        "{level} is out of range: {what} are {}..={}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        for (i, c) in self.prefer.iter().enumerate() {
            if *c == Coding::Identity {
                return Err((
                    "compression.prefer",
                    "lists codings to break ties between (br, zstd, gzip); identity always comes last".into(),
                ));
            }
            if self.prefer[..i].contains(c) {
                return Err(("compression.prefer", format!("lists {c} twice")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn err(extra: &str) -> String {
        let text = format!("[origin]\nurl = \"http://a:1\"\n[compression]\n{extra}\n");
        Config::parse(&text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_tie_order() {
        let c = Config::parse("[origin]\nurl = \"http://a:1\"\n").unwrap();
        let z = &c.compression;
        assert_eq!((z.zstd_level, z.stream_zstd_level), (9, 1));
        assert_eq!(z.prefer, crate::rfc::coding::Preference::DEFAULT_ORDER);
        assert_eq!(z.stored_levels().zstd, 9);
        assert_eq!(z.stream_levels().gzip, 1);
        let c = Config::parse(
            "[origin]\nurl = \"http://a:1\"\n[compression]\nprefer = [\"gzip\", \"ZSTD\"]\nzstd_level = 19\n",
        )
        .unwrap();
        use crate::rfc::coding::{Coding, Preference};
        assert_eq!(c.compression.prefer, [Coding::Gzip, Coding::Zstd]);
        assert_eq!(
            c.compression.preference(),
            Preference::new(&[Coding::Gzip, Coding::Zstd, Coding::Br])
        );
        let empty = Config::parse("[origin]\nurl = \"http://a:1\"\n[compression]\nprefer = []\n");
        assert_eq!(
            empty.unwrap().compression.preference(),
            Preference::default()
        );
    }

    #[test]
    fn invalid_values_name_the_key_and_why() {
        // (setting, key named, words in the reason)
        let rows: &[(&str, &str, &str)] = &[
            (
                "zstd_level = 0",
                "compression.zstd_level",
                "zstd levels are 1..=19",
            ),
            (
                "zstd_level = 20",
                "compression.zstd_level",
                "20 is out of range",
            ),
            ("zstd_level = -1", "compression.zstd_level", "invalid value"),
            (
                "stream_zstd_level = 22",
                "compression.stream_zstd_level",
                "1..=19",
            ),
            (
                "gzip_level = 10",
                "compression.gzip_level",
                "gzip levels are 0..=9",
            ),
            (
                "stream_gzip_level = 10",
                "compression.stream_gzip_level",
                "0..=9",
            ),
            ("brotli_level = 12", "compression.brotli_level", "0..=11"),
            (
                "stream_brotli_level = 12",
                "compression.stream_brotli_level",
                "0..=11",
            ),
            (
                "prefer = [\"deflate\"]",
                "compression.prefer",
                "unknown content coding \"deflate\"",
            ),
            (
                "prefer = [\"br\", \"br\"]",
                "compression.prefer",
                "lists br twice",
            ),
            (
                "prefer = [\"gzip\", \"x-gzip\"]",
                "compression.prefer",
                "lists gzip twice",
            ),
            (
                "prefer = [\"identity\"]",
                "compression.prefer",
                "identity always comes last",
            ),
            ("prefer = \"br\"", "compression.prefer", "invalid type"),
        ];
        for (extra, key, why) in rows {
            let e = err(extra);
            assert!(e.contains("<inline>"), "{extra}: {e}");
            assert!(e.contains(key), "{extra}: {e}");
            assert!(e.contains(why), "{extra}: {e}");
        }
    }
}
