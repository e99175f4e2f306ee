//! The cache's state: stored objects, the store (the only moka user), the surrogate-key index,
//! collapsed fills, hit-for-pass marks and the background encoder.
//!
//! - [`object`]: one stored response and how it ages
//! - [`store`]: Vary variants per key, byte budget, expiry, purges, swaps
//! - [`tags`]: surrogate keys and the tag → key index
//! - [`collapse`]: one origin fetch per key at a time; [`budget`]: bytes all fills may buffer
//! - [`pass`]: hit-for-pass memory
//! - [`purges`]: recent purges, so a fill that started earlier cannot undo one; [`floor`]: the
//!   point before which everything is soft-purged (a cluster node that may have missed purges)
//! - [`encode`]: gzip/brotli/zstd variants computed after storing

pub mod budget;
pub mod collapse;
pub mod encode;
pub mod floor;
pub mod object;
pub mod pass;
pub mod purges;
pub mod store;
pub mod tags;

pub use object::{CachedObject, NewObject};
pub use store::{Lookup, Store};
