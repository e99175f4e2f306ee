//! One generation of configuration: the validated config and everything compiled from it that
//! the request path reads (normalizer, origin client, Vary list fields, the origin's address for
//! URL rewriting, the routes' metric series). A reload builds a new generation and swaps it in
//! whole; a request keeps the generation it started with until it ends, so no request ever sees
//! half of two configs.

use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::metrics::{ConfigState, Metrics, RouteMetrics};
use crate::normalize::Normalizer;
use crate::origin::Origin;
use crate::rewrite::OriginAddr;
use crate::rfc::storable::CachePolicy;
use crate::rfc::vary::ListFields;

/// The settings requests are answered under.
pub struct Settings {
    /// The validated config.
    pub cfg: Config,
    /// Request normalization compiled from `cfg.normalize`.
    pub normalizer: Normalizer,
    /// The origin client and its connection pool (a reload starts a new pool; requests under
    /// the old settings finish on the old one).
    pub origin: Arc<Origin>,
    /// Request fields Vary compares as normalized lists.
    pub vary_lists: ListFields,
    /// The origin's address, as response fields name it (URL rewriting, invalidation).
    pub origin_addr: OriginAddr,
    /// Per-route counters, indexed by this config's route ids.
    pub routes: RouteMetrics,
    /// When this generation took effect.
    pub loaded_at: SystemTime,
    /// Keys of the file that differ from what runs until a restart.
    pub restart_pending: Vec<&'static str>,
}

impl Settings {
    /// Compile `cfg`; `metrics` hands out the route series (kept across reloads by pattern).
    pub fn new(cfg: Config, metrics: &Metrics) -> Self {
        Self::with_origin(cfg, metrics, None, &[])
    }

    /// As [`Settings::new`], reusing `origin` (a pool for the same `[origin]`) when given, with
    /// the keys a reload left for a restart.
    pub fn with_origin(
        cfg: Config,
        metrics: &Metrics,
        origin: Option<Arc<Origin>>,
        restart_pending: &[&'static str],
    ) -> Self {
        Self {
            normalizer: Normalizer::new(&cfg.normalize),
            origin: origin.unwrap_or_else(|| Arc::new(Origin::new(&cfg.origin))),
            vary_lists: ListFields::with(
                (cfg.cache.vary_normalize.iter())
                    .filter_map(|f| http::HeaderName::from_bytes(f.as_bytes()).ok()),
            ),
            origin_addr: OriginAddr::new(
                cfg.origin.scheme.as_str(),
                &cfg.origin.authority,
                &cfg.origin.base_path,
            )
            .with_host(cfg.origin.host.as_deref()),
            routes: metrics.routes(cfg.routes.iter().map(|r| r.config.path.clone())),
            loaded_at: SystemTime::now(),
            restart_pending: restart_pending.to_vec(),
            cfg,
        }
    }

    /// The `[cache]` settings storability depends on.
    pub fn cache_policy(&self) -> CachePolicy {
        CachePolicy {
            heuristic_max: self.cfg.cache.heuristic_max,
            store_set_cookie: self.cfg.cache.store_set_cookie,
        }
    }

    /// `cache.max_object_size` in bytes.
    pub fn max_object_size(&self) -> usize {
        usize::try_from(self.cfg.cache.max_object_size.as_u64()).unwrap_or(usize::MAX)
    }

    /// What `/stats` says about this config (the reload counts are the metrics').
    pub fn state(&self) -> ConfigState {
        let unix = self
            .loaded_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        ConfigState {
            file: (self.cfg.source.path.as_ref()).map(|p| p.display().to_string()),
            hash: self.cfg.source.hash.clone(),
            loaded_at: humantime::format_rfc3339_seconds(self.loaded_at).to_string(),
            loaded_unix: unix,
            restart_pending: self.restart_pending.clone(),
            ..ConfigState::default()
        }
    }
}
