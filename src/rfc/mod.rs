//! HTTP caching decisions as pure functions: no I/O, no tokio, no moka; time is an argument.
//!
//! - [`directives`]: Cache-Control / Surrogate-Control / CDN-Cache-Control parsing
//! - [`storable`]: may a response be stored, and with what freshness (RFC 9111 §3, §4.2)
//! - [`usage`]: may a stored object answer a request now, stale or not (RFC 9111 §4, RFC 5861)
//! - [`vary`]: which stored variant a request selects
//! - [`coding`]: content-coding negotiation and compressible types
//! - [`conditional`]: ETags, If-None-Match / If-Modified-Since, ranges
//! - [`partial`]: 206 responses kept as parts of a representation
//! - [`cache_status`]: the typed Cache-Status, X-Cache and metrics result

pub mod cache_status;
pub mod coding;
pub mod conditional;
pub mod directives;
pub mod partial;
pub mod storable;
pub mod usage;
pub mod vary;
