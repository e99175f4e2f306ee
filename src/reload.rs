//! Config reload (SIGHUP, admin `POST /reload`): re-read the file the config came from, validate
//! it whole, and swap it in without touching the cache or requests in flight. Settings that
//! cannot change on a running process are kept at their running values and reported as needing
//! a restart; [`restart_needed`] decides which, as a pure function.

use std::sync::Arc;

use tokio::sync::{watch, Mutex};

use crate::config::{Config, ConfigError, ServerConfig};
use crate::proxy::Proxy;
use crate::server::tls::TlsHandles;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// The new config's hash (`/stats` `config.hash`).
    pub hash: String,
    /// Changed keys that were kept at their running values until a restart.
    pub restart_needed: Vec<&'static str>,
}

/// Why a reload did not happen; the running config is kept.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Started from a config that was not read from a file.
    #[error("nothing to reload: apicache was not started from a config file")]
    NoFile,
    /// The file could not be read or is invalid.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// The reload task itself failed (a bug): nothing was applied.
    #[error("reload failed: {0}")]
    Failed(String),
}

/// Re-reads and applies the config; one reload at a time.
pub struct Reloader {
    proxy: Arc<Proxy>,
    /// The running `[server]` and `[admin]` listener settings, watched by the listeners.
    server: watch::Sender<ServerConfig>,
    /// The listeners' certificates.
    tls: TlsHandles,
    lock: Mutex<()>,
}

impl Reloader {
    /// A reloader for `proxy`, publishing listener settings on `server`.
    pub fn new(proxy: Arc<Proxy>, server: watch::Sender<ServerConfig>, tls: TlsHandles) -> Self {
        Self {
            proxy,
            server,
            tls,
            lock: Mutex::new(()),
        }
    }

    /// The proxy whose settings this reloads.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// Re-read the config file, and apply it if it is valid. Logged and counted either way.
    ///
    /// Runs as its own task: a caller that goes away (an admin client disconnecting) neither
    /// cancels it halfway nor loses its log line.
    pub async fn reload(self: &Arc<Self>) -> Result<Reloaded, ReloadError> {
        let me = self.clone();
        match tokio::spawn(async move { me.reload_now().await }).await {
            Ok(r) => r,
            Err(e) => Err(ReloadError::Failed(e.to_string())),
        }
    }

    async fn reload_now(&self) -> Result<Reloaded, ReloadError> {
        let _one_at_a_time = self.lock.lock().await;
        let result = self.try_reload().await;
        self.proxy.metrics().reload(result.is_ok());
        match &result {
            Ok(r) => {
                for key in &r.restart_needed {
                    tracing::warn!(key, "config reload: `{key}` changed and needs a restart; the running value is kept");
                }
                tracing::info!(hash = %r.hash, "config reloaded");
            }
            Err(e) => tracing::error!("config reload rejected, the running config is kept: {e}"),
        }
        result
    }

    async fn try_reload(&self) -> Result<Reloaded, ReloadError> {
        let running = self.proxy.settings();
        let path = running.cfg.source.path.clone().ok_or(ReloadError::NoFile)?;
        // Reading and validating may touch several files (certificates, CA bundles).
        let mut new = tokio::task::spawn_blocking(move || Config::load(&path))
            .await
            .map_err(|e| ConfigError::Invalid {
                file: running.cfg.source.path.clone().unwrap_or_default(),
                key: "<root>".into(),
                reason: format!("loading failed: {e}"),
            })??;
        let restart_needed = restart_needed(&running.cfg, &new);
        keep_running(&running.cfg, &mut new)?;
        // Certificates are read again even when their paths did not change (a renewal); a pair
        // that does not load rejects the whole reload.
        self.tls.reload(&new, &restart_needed)?;
        let warnings = new.warnings();
        let applied = self.proxy.apply(new, restart_needed).await;
        for w in warnings {
            tracing::warn!("{w}");
        }
        self.server
            .send_replace(self.proxy.settings().cfg.server.clone());
        Ok(applied)
    }
}

/// The keys that differ between `old` and `new` but cannot change on a running process.
pub fn restart_needed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    let mut check = |key, changed: bool| {
        if changed {
            keys.push(key);
        }
    };
    check("server.listen", old.server.listen != new.server.listen);
    check(
        "server.max_connections",
        old.server.max_connections != new.server.max_connections,
    );
    check("admin", old.admin.is_some() != new.admin.is_some());
    check(
        "server.tls",
        old.server.tls.is_some() != new.server.tls.is_some(),
    );
    if let (Some(o), Some(n)) = (&old.admin, &new.admin) {
        check("admin.listen", o.listen != n.listen);
        check("admin.tls", o.tls.is_some() != n.tls.is_some());
    }
    check("cache.max_size", old.cache.max_size != new.cache.max_size);
    check("log.format", old.log.format != new.log.format);
    // The Redis connections, the node's name and its heartbeat start with the node.
    check("cluster", old.cluster != new.cluster);
    // The budget in effect: its default follows max_size and max_object_size.
    check(
        "cache.max_fill_memory",
        old.cache.fill_memory() != new.cache.fill_memory(),
    );
    check(
        "cache.max_verdict_memory",
        old.cache.max_verdict_memory != new.cache.max_verdict_memory,
    );
    keys
}

/// `new` with every setting that needs a restart put back to its running value, so the config
/// in effect (and what `/stats` and the admin token say) is what actually runs. Fails when the
/// rest of `new` does not fit those running values (an object larger than the running cache).
pub fn keep_running(old: &Config, new: &mut Config) -> Result<(), ConfigError> {
    let running_budget = old.cache.fill_memory();
    let max_object = new.cache.max_object_size;
    if max_object > old.cache.max_size || max_object.as_u64() > running_budget {
        return Err(ConfigError::Invalid {
            file: new.source.path.clone().unwrap_or_default(),
            key: "cache.max_object_size".into(),
            reason: format!(
                "{max_object} does not fit the running cache (max_size {}, fill memory {}); \
                 those change only at a restart",
                old.cache.max_size,
                bytesize::ByteSize(running_budget)
            ),
        });
    }
    new.server.listen = old.server.listen;
    new.server.max_connections = old.server.max_connections;
    // A listener cannot switch between plain and TLS live; certificates can change.
    if old.server.tls.is_some() != new.server.tls.is_some() {
        new.server.tls = old.server.tls.clone();
    }
    match (&old.admin, &mut new.admin) {
        (Some(o), Some(n)) => {
            n.listen = o.listen;
            if o.tls.is_some() != n.tls.is_some() {
                n.tls = o.tls.clone();
            }
        }
        // An admin listener cannot be started or stopped live: keep the running one's settings,
        // or none.
        (o, n) => *n = o.clone(),
    }
    new.cache.max_size = old.cache.max_size;
    // The log subscriber is set up once, before the first line.
    new.log.format = old.log.format;
    new.cluster = old.cluster.clone();
    new.cache.max_fill_memory = Some(bytesize::ByteSize(running_budget));
    new.cache.max_verdict_memory = old.cache.max_verdict_memory;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        Config::parse(&format!("[origin]\nurl = \"http://127.0.0.1:9\"\n{extra}")).unwrap()
    }

    #[test]
    fn only_listeners_and_memory_bounds_need_a_restart() {
        let base =
            cfg("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8081\"\n");
        let rows: [(&str, &[&str]); 10] = [
            ("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8081\"\n", &[]),
            ("[server]\nlisten = \"127.0.0.1:9090\"\n[admin]\nlisten = \"127.0.0.1:8081\"\n", &["server.listen"]),
            ("[server]\nlisten = \"127.0.0.1:8080\"\n", &["admin"]),
            ("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:9091\"\n", &["admin.listen"]),
            ("[server]\nlisten = \"127.0.0.1:8080\"\nmax_connections = 5\n[admin]\nlisten = \"127.0.0.1:8081\"\n", &["server.max_connections"]),
            ("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8081\"\n[cache]\nmax_size = \"1MiB\"\nmax_object_size = \"1KiB\"\n", &["cache.max_size", "cache.max_fill_memory"]),
            // Live: timeouts, TTLs, routes, tokens.
            ("[server]\nlisten = \"127.0.0.1:8080\"\nidle_timeout = \"3s\"\n[admin]\nlisten = \"127.0.0.1:8081\"\ntoken = \"0123456789abcdef\"\n[cache]\nhit_for_pass = \"9s\"\n", &[]),
            ("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8081\"\n[[routes]]\npath = \"/a\"\nttl = \"1s\"\n", &[]),
            ("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8081\"\n[log]\nformat = \"json\"\n", &["log.format"]),
            ("[server]\nlisten = \"127.0.0.1:8080\"\n[admin]\nlisten = \"127.0.0.1:8081\"\n[cluster]\nredis_url = \"redis://127.0.0.1:1/0\"\n", &["cluster"]),
        ];
        for (text, want) in rows {
            let new = cfg(text);
            assert_eq!(restart_needed(&base, &new), want, "{text}");
            let mut kept = new.clone();
            keep_running(&base, &mut kept).unwrap();
            assert!(restart_needed(&base, &kept).is_empty(), "{text}");
        }
    }

    #[test]
    fn an_admin_section_cannot_appear_or_vanish_live() {
        let without = cfg("");
        let mut with = cfg("[admin]\nlisten = \"127.0.0.1:8081\"\n");
        keep_running(&without, &mut with).unwrap();
        assert!(with.admin.is_none());
    }

    #[test]
    fn what_no_longer_fits_the_running_cache_is_refused() {
        let small = cfg("[cache]\nmax_size = \"64MiB\"\nmax_object_size = \"8MiB\"\n");
        // Valid on its own, but its objects are larger than the running cache's fill budget.
        let mut big = cfg("[cache]\nmax_size = \"1GiB\"\nmax_object_size = \"512MiB\"\n");
        assert_eq!(
            restart_needed(&small, &big),
            ["cache.max_size", "cache.max_fill_memory"]
        );
        let e = keep_running(&small, &mut big).unwrap_err().to_string();
        assert!(
            e.contains("cache.max_object_size") && e.contains("restart"),
            "{e}"
        );
        // Within the running budget: kept, with the budget that runs.
        let mut ok = cfg("[cache]\nmax_size = \"1GiB\"\nmax_object_size = \"16MiB\"\n");
        keep_running(&small, &mut ok).unwrap();
        assert_eq!(ok.cache.fill_memory(), small.cache.fill_memory());
        assert_eq!(ok.cache.max_size, small.cache.max_size);
    }
}
