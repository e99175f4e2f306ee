//! `[log]`: how log lines are written. Read once at start: the subscriber is installed before
//! anything is served, so a reload cannot change it.

use serde::{Deserialize, Serialize};

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` (the default) or `json`: one JSON object per line, for log pipelines.
    pub format: LogFormat,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// `INFO apicache::access: method=GET path=/a status=200 …`
    #[default]
    Text,
    /// `{"timestamp":"…","level":"INFO","method":"GET","path":"/a","status":200,…,"target":"apicache::access"}`
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn format_parses_and_bad_values_name_the_key() {
        let base = "[origin]\nurl = \"http://a:1\"\n";
        // (the [log] section, the format, or the key an error names)
        let rows: [(&str, Result<LogFormat, &str>); 6] = [
            ("", Ok(LogFormat::Text)),
            ("[log]\n", Ok(LogFormat::Text)),
            ("[log]\nformat = \"text\"\n", Ok(LogFormat::Text)),
            ("[log]\nformat = \"json\"\n", Ok(LogFormat::Json)),
            ("[log]\nformat = \"JSON\"\n", Err("log.format")),
            ("[log]\nlevel = \"debug\"\n", Err("log")),
        ];
        for (section, want) in rows {
            let got = Config::parse(&format!("{base}{section}"));
            match (want, got) {
                (Ok(f), Ok(c)) => assert_eq!(c.log.format, f, "{section}"),
                (Err(key), Err(e)) => {
                    assert!(e.to_string().contains(&format!("`{key}")), "{section}: {e}")
                }
                (want, got) => panic!("{section}: want {want:?}, got {:?}", got.map(|c| c.log)),
            }
        }
    }
}
