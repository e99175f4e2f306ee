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
