//! apicache: a caching reverse proxy for one HTTP JSON API.
//!
//! Map of the crate:
//! - [`config`]: TOML → validated [`config::Config`] (listener certificates loaded, log format),
//!   printed back for `--check-config`, and its start-time warnings; [`routes`]: the routes
//!   compiled once (most specific pattern wins)
//! - [`settings`]: one generation of settings (the config and what is compiled from it), which
//!   every request reads from start to end; [`reload`]: re-reading the file (SIGHUP,
//!   `POST /reload`), swapping the generation, and which keys need a restart
//! - [`normalize`]: request target → normalized URL, moved credentials, cache key
//! - [`rfc`]: HTTP caching decisions as pure functions (directives, HTTP-dates, storability,
//!   use-time freshness and stale rules, Vary, codings, ETags, conditionals and ranges, which
//!   stored response a 304 or HEAD updates, 206 parts, Cache-Status)
//! - [`cache`]: stored objects, the store (the only moka user), tag index, collapsing,
//!   hit-for-pass, background encodings
//! - [`proxy`]: the request path (context → decision → serve / fill / forward / reject → finish),
//!   with 304/HEAD refreshes, POST answers stored for GETs, kept 206 parts and the access log
//! - [`verify`]: credential verdicts of `shared-verified` routes (the origin decides who reads)
//! - [`forwarding`]: the host a request is for (trusted proxies, allowed hosts), the client a
//!   trusted proxy forwarded for, and the headers the origin gets; [`rewrite`]: origin URLs in
//!   response fields rewritten to that host
//! - [`request_id`]: `X-Request-Id`, kept from the client or generated; [`cors`]: cache fields
//!   exposed to browser code
//! - [`origin`]: the pooled client, HTTP/1.1 or HTTP/2, over TLS to `https` origins;
//!   [`compress`]: codecs; [`body`]: response bodies
//! - [`server`]: listeners (plain, or TLS with ALPN and reloadable certificates) and shutdown;
//!   [`admin`]: purge and reload API, stats; [`metrics`]: counters
//! - [`cluster`]: purges shared by several nodes through a Redis stream (heartbeats, gaps,
//!   the degraded mode while cut off)
//! - [`error`]: errors (and origin failure causes) and the one place they become responses;
//!   [`clock`]: injectable time

pub mod admin;
pub mod body;
pub mod cache;
pub mod clock;
pub mod cluster;
pub mod compress;
pub mod config;
pub mod cors;
pub mod error;
pub mod forwarding;
pub mod metrics;
pub mod normalize;
pub mod origin;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod rewrite;
pub mod rfc;
pub mod routes;
pub mod server;
pub mod settings;
pub mod verify;

pub use clock::Clock;
pub use config::Config;
pub use server::{start, Running};
