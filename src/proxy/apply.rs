//! A reloaded config put into effect: the parts of the shared state that follow the config are
//! updated, then the new settings generation is swapped in whole.

use std::sync::Arc;

use super::Proxy;
use crate::config::Config;
use crate::reload::Reloaded;
use crate::rfc::storable::Retention;
use crate::settings::Settings;
use crate::verify::VerifyPolicy;

impl Proxy {
    /// Make `new` the config of every request from now on; requests in flight finish under the
    /// one they started with, and nothing stored is dropped, except what the new config forbids
    /// serving (objects stored with `Set-Cookie` when `cache.store_set_cookie` is turned off).
    /// `new` has the running values of settings that need a restart
    /// ([`reload::keep_running`]); `restart_needed` names them.
    pub async fn apply(&self, new: Config, restart_needed: Vec<&'static str>) -> Reloaded {
        let old = self.settings();
        let c = &new.cache;
        let keep = Retention {
            revalidate: c.keep_for_revalidation,
            grace: c.stale_grace,
        };
        self.store.set_limits(c.max_variants, keep);
        self.encoder.set_levels(new.compression.stored_levels());
        // The origin's connection pool stays warm across a reload that leaves `[origin]` alone.
        // Not for TLS origins: the roots were read again (a replaced CA file keeps its path).
        let same = format!("{:?}", old.cfg.origin) == format!("{:?}", new.origin);
        let origin = (same && new.origin.tls.is_none()).then(|| old.origin.clone());
        let hash = new.source.hash.clone();
        let tightened_cookies = old.cfg.cache.store_set_cookie && !new.cache.store_set_cookie;
        let verify_changed = verify_policies(&old.cfg) != verify_policies(&new);
        self.settings.store(Arc::new(Settings::with_origin(
            new,
            &self.metrics,
            origin,
            &restart_needed,
        )));
        // After the swap, so nothing recorded under the old policies survives it.
        if verify_changed {
            let n = self.verdicts.clear();
            tracing::info!(
                dropped = n,
                "config reload: verification lifetimes changed, credential verdicts dropped"
            );
        }
        if tightened_cookies {
            // Which objects carry Set-Cookie is not indexed: every one goes.
            let n = self.store.purge_all(false).await;
            tracing::warn!(purged = n, "config reload: cache.store_set_cookie turned off, every stored object purged (some may carry Set-Cookie)");
        }
        Reloaded {
            hash,
            restart_needed,
        }
    }
}

/// Every route's pattern with its verdict lifetimes (`shared-verified` routes only).
fn verify_policies(cfg: &Config) -> Vec<(&str, VerifyPolicy)> {
    let mut v: Vec<_> = (cfg.routes.iter())
        .filter_map(|r| Some((r.config.path.as_str(), r.policy.verify?)))
        .collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}
