//! HTTP caching decisions as pure functions: no I/O, no tokio, no moka; time is an argument.
//!
//! - [`date`]: HTTP-dates in all three formats
//! - [`directives`]: Cache-Control / Surrogate-Control / CDN-Cache-Control parsing
//! - [`storable`]: may a response be stored, and with what freshness (RFC 9111 §3, §4.2)
//! - [`usage`]: may a stored object answer a request now, stale or not (RFC 9111 §4, RFC 5861)
//! - [`vary`]: which stored variant a request selects
//! - [`coding`]: content-coding negotiation and compressible types
//! - [`etag`]: entity-tags as bytes: parsing, comparison, generated and per-coding tags
//! - [`conditional`]: If-None-Match / If-Modified-Since, ranges
//! - [`update`]: which stored response a 304 or a HEAD response updates
//! - [`partial`]: 206 responses kept as parts of a representation
//! - [`cache_status`]: the typed Cache-Status, X-Cache and metrics result

pub mod cache_status;
pub mod coding;
pub mod conditional;
pub mod date;
pub mod directives;
pub mod etag;
pub mod partial;
pub mod storable;
pub mod update;
pub mod usage;
pub mod vary;
