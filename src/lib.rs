//! apicache: a caching reverse proxy for one HTTP JSON API.
//!
//! Map of the crate:
//! - [`config`]: TOML → validated [`config::Config`]
//! - [`normalize`]: request target → normalized URL, moved credentials, cache key
//! - [`policy`]: RFC 9111 storability, freshness, Age (pure)
//! - [`store`]: moka store, byte budget, expiry; [`tags`]: surrogate-key index
//! - [`compress`], [`conditional`]: codings, ETags, 304s and ranges (pure)
//! - [`proxy`]: the request path; [`respond`]: answers built from stored objects; [`origin`]: the pooled client; [`server`]: listeners
//! - [`admin`]: purge API, metrics

pub mod admin;
pub mod body;
pub mod compress;
pub mod conditional;
pub mod config;
pub mod error;
pub mod metrics;
pub mod normalize;
pub mod origin;
pub mod policy;
pub mod proxy;
pub mod respond;
pub mod server;
pub mod store;
pub mod tags;

pub use config::Config;
pub use server::{start, Running};
