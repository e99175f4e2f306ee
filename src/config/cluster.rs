//! `[cluster]`: purges shared with other nodes through Redis (`crate::cluster`). Setting
//! `redis_url` turns it on; without the table a node runs alone, exactly as before.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, REDACTED_TOKEN};

/// `[cluster]`.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `redis://[:password@]host:port/db`: the purge log, heartbeats and epoch live there.
    #[serde(serialize_with = "redacted_url")]
    pub redis_url: String,
    /// This node's name in heartbeats, `/stats` and logs; default `hostname:listen-port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Every Redis key apicache uses starts with this (several clusters can share a Redis).
    #[serde(default = "d_prefix")]
    pub key_prefix: String,
    /// Cut off from Redis longer than this, every cached object is revalidated before use (and
    /// soft-purged when the node reconnects); a heartbeat keeps a node live this long (+250ms).
    #[serde(default = "d_lag", with = "humantime_serde")]
    pub max_purge_lag: Duration,
    /// How long a purge call waits for the other live nodes to confirm.
    #[serde(default = "d_confirm", with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// Purges the Redis stream keeps; a node that falls further behind soft-purges everything.
    #[serde(default = "d_log_length")]
    pub purge_log_length: u64,
}

fn d_prefix() -> String {
    "apicache".into()
}
fn d_lag() -> Duration {
    Duration::from_secs(2)
}
fn d_confirm() -> Duration {
    Duration::from_secs(1)
}
fn d_log_length() -> u64 {
    10_000
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis_url", &redact(&self.redis_url))
            .field("node_id", &self.node_id)
            .field("key_prefix", &self.key_prefix)
            .field("max_purge_lag", &self.max_purge_lag)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("purge_log_length", &self.purge_log_length)
            .finish()
    }
}

/// Query parameters the Redis client reads a password from (`unix://…?pass=`).
const PASSWORD_PARAMS: [&str; 2] = ["pass", "password"];

/// The URL with its password (in the user part or a `pass` parameter) replaced by
/// [`REDACTED_TOKEN`]: for logs, `/stats` and printing.
pub fn redact(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return url.to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some(REDACTED_TOKEN));
    }
    if u.query_pairs()
        .any(|(k, _)| PASSWORD_PARAMS.contains(&k.as_ref()))
    {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if PASSWORD_PARAMS.contains(&k.as_ref()) {
                    REDACTED_TOKEN.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
        .replace("%3Credacted%3E", REDACTED_TOKEN)
        .replace("%3credacted%3e", REDACTED_TOKEN)
}

fn redacted_url<S: serde::Serializer>(v: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact(v))
}

impl ClusterConfig {
    /// Check every key; errors name it.
    pub(super) fn validate(
        &self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<(), ConfigError> {
        let url = url::Url::parse(&self.redis_url)
            .map_err(|e| invalid("cluster.redis_url", format!("not a URL: {e}")))?;
        match url.scheme() {
            "redis" | "redis+unix" | "unix" => {}
            "rediss" => {
                return Err(invalid(
                    "cluster.redis_url",
                    "rediss:// (TLS to Redis) is not supported yet: use redis:// on a private \
                     network or through a local TLS tunnel"
                        .into(),
                ))
            }
            s => {
                return Err(invalid(
                    "cluster.redis_url",
                    format!("scheme {s:?} is not redis://"),
                ))
            }
        }
        let redacted_param = url
            .query_pairs()
            .any(|(k, v)| PASSWORD_PARAMS.contains(&k.as_ref()) && v == REDACTED_TOKEN);
        if url.password() == Some(REDACTED_TOKEN)
            || url.password() == Some("%3Credacted%3E")
            || redacted_param
        {
            return Err(invalid(
                "cluster.redis_url",
                format!(
                    "`{REDACTED_TOKEN}` is what --check-config prints instead of the password: \
                     put the real one back"
                ),
            ));
        }
        if redis::Client::open(self.redis_url.as_str()).is_err() {
            return Err(invalid(
                "cluster.redis_url",
                "not a Redis URL the client accepts".into(),
            ));
        }
        let token = |s: &str| {
            !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'"')
        };
        if let Some(id) = &self.node_id {
            if !token(id) {
                return Err(invalid(
                    "cluster.node_id",
                    "must be 1-128 printable characters without spaces, `*` or `\"`".into(),
                ));
            }
        }
        if !token(&self.key_prefix) {
            return Err(invalid(
                "cluster.key_prefix",
                "must be 1-128 printable characters without spaces, `*` or `\"`".into(),
            ));
        }
        if self.max_purge_lag < Duration::from_millis(500) {
            return Err(invalid(
                "cluster.max_purge_lag",
                "must be at least 500ms (nodes heartbeat every 250ms)".into(),
            ));
        }
        if self.confirm_timeout.is_zero() || self.confirm_timeout > Duration::from_secs(60) {
            return Err(invalid(
                "cluster.confirm_timeout",
                "must be between 1ms and 60s".into(),
            ));
        }
        if !(10..=10_000_000).contains(&self.purge_log_length) {
            return Err(invalid(
                "cluster.purge_log_length",
                "must be between 10 and 10000000".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn keys_are_checked_and_errors_name_them() {
        let base = "[origin]\nurl = \"http://a:1\"\n[cluster]\n";
        // (the rest of [cluster], the key an error names or "" for valid)
        let rows = [
            ("redis_url = \"redis://127.0.0.1:6379/0\"\n", ""),
            ("redis_url = \"redis://:pw@127.0.0.1:6379/0\"\n", ""),
            (
                "redis_url = \"rediss://127.0.0.1:6379/0\"\n",
                "cluster.redis_url",
            ),
            (
                "redis_url = \"http://127.0.0.1:6379/0\"\n",
                "cluster.redis_url",
            ),
            ("redis_url = \"not a url\"\n", "cluster.redis_url"),
            (
                "redis_url = \"redis://:<redacted>@127.0.0.1:6379/0\"\n",
                "cluster.redis_url",
            ),
            ("node_id = \"a\"\n", "cluster"),
            (
                "redis_url = \"redis://h:1\"\nnode_id = \"two words\"\n",
                "cluster.node_id",
            ),
            (
                "redis_url = \"redis://h:1\"\nkey_prefix = \"\"\n",
                "cluster.key_prefix",
            ),
            (
                "redis_url = \"redis://h:1\"\nmax_purge_lag = \"100ms\"\n",
                "cluster.max_purge_lag",
            ),
            (
                "redis_url = \"redis://h:1\"\nconfirm_timeout = \"0s\"\n",
                "cluster.confirm_timeout",
            ),
            (
                "redis_url = \"redis://h:1\"\npurge_log_length = 3\n",
                "cluster.purge_log_length",
            ),
            ("redis_url = \"redis://h:1\"\nnodes = 3\n", "cluster"),
        ];
        for (rest, key) in rows {
            let got = Config::parse(&format!("{base}{rest}"));
            match (key, got) {
                ("", Ok(c)) => assert!(c.cluster.is_some(), "{rest}"),
                ("", Err(e)) => panic!("{rest}: {e}"),
                (key, Err(e)) => {
                    assert!(e.to_string().contains(&format!("`{key}")), "{rest}: {e}")
                }
                (key, Ok(_)) => panic!("{rest}: accepted, want an error naming {key}"),
            }
        }
    }

    #[test]
    fn the_password_is_redacted() {
        assert_eq!(
            super::redact("redis://user:s3cret@10.0.0.5:6379/2"),
            "redis://user:<redacted>@10.0.0.5:6379/2"
        );
        assert_eq!(
            super::redact("redis://10.0.0.5:6379/2"),
            "redis://10.0.0.5:6379/2"
        );
        let unix = super::redact("redis+unix:///run/redis.sock?db=1&pass=s3cret");
        assert!(!unix.contains("s3cret") && unix.contains("db=1"), "{unix}");
        let text =
            "[origin]\nurl = \"http://a:1\"\n[cluster]\nredis_url = \"redis://:s3cret@h:1/0\"\n";
        let c = crate::config::Config::parse(text).unwrap();
        assert!(!format!("{:?}", c.cluster).contains("s3cret"));
        let printed = c.effective_toml().unwrap();
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(
            crate::config::Config::parse(&printed).is_err(),
            "a printed password is refused"
        );
    }
}
