//! The TOML configuration: a raw serde layer that rejects unknown keys ([`raw`]), validated into
//! [`Config`]; its printed form ([`print`]) and start-time warnings ([`warnings`]); the listeners'
//! certificates ([`tls`]), the origin's TLS keys ([`origin_tls`]) and the log format ([`log`]).

pub mod cluster;
mod compression;
pub mod log;
mod origin_tls;
mod print;
mod raw;
pub mod tls;
pub mod warnings;

pub use cluster::ClusterConfig;
pub use compression::CompressionConfig;
pub use log::{LogConfig, LogFormat};
pub use origin_tls::Http2;
pub use tls::TlsConfig;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use http::uri::{Authority, Scheme};
use serde::{Deserialize, Serialize};

/// Why a configuration could not be used; always names the file and, where known, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    /// The TOML did not parse or a value has the wrong type, an unknown key, a bad duration or size.
    #[error("{file}: key `{key}`: {reason}")]
    Invalid {
        file: PathBuf,
        key: String,
        reason: String,
    },
}

/// Where an in-memory configuration came from, for error messages.
const INLINE: &str = "<inline>";

/// `[server]`: the public listener.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the public listener.
    pub listen: SocketAddr,
    /// Time from accept to a complete first request head (slowloris and silent-socket protection); also bounds idle HTTP/1 keep-alive waits.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed (HTTP/2: GOAWAY); also the HTTP/2 ping interval.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest request head accepted; beyond it the client gets 431.
    #[serde(serialize_with = "binary_size")]
    pub max_header_size: ByteSize,
    /// Largest request body forwarded; beyond it the client gets 413.
    #[serde(serialize_with = "binary_size")]
    pub max_body_size: ByteSize,
    /// How long shutdown waits for in-flight requests before closing connections.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// During shutdown, how long an idle HTTP/1 keep-alive connection stays open so a request already on its way is answered (with `Connection: close`) instead of reset.
    #[serde(with = "humantime_serde")]
    pub shutdown_idle_wait: Duration,
    /// Most client connections served at once; at the limit the connection idle the longest is closed, and new ones wait only when all are busy.
    pub max_connections: usize,
    /// Value of the `Via` pseudonym this proxy adds.
    pub via: String,
    /// Hosts this proxy answers for (empty: any); a request for another host gets 421.
    pub hosts: Vec<String>,
    /// Peers (CIDRs or addresses) whose `X-Forwarded-*` / `Forwarded` fields are kept and appended to.
    pub trusted_proxies: Vec<String>,
    /// Longest request target accepted; beyond it the client gets 414.
    #[serde(serialize_with = "binary_size")]
    pub max_uri_length: ByteSize,
    /// `[server.tls]`: serve HTTPS instead of plain HTTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_header_size: ByteSize::kib(64),
            max_body_size: ByteSize::mib(16),
            shutdown_grace: Duration::from_secs(10),
            shutdown_idle_wait: Duration::from_secs(1),
            max_connections: 10_000,
            via: "apicache".into(),
            hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            max_uri_length: ByteSize::kib(8),
            tls: None,
        }
    }
}

/// `[origin]`, validated: the one API behind the proxy.
#[derive(Debug, Clone, Serialize)]
pub struct OriginConfig {
    /// The origin URL as configured.
    pub url: String,
    /// `http` or `https`.
    #[serde(skip)]
    pub scheme: Scheme,
    /// host[:port] of the origin (no port: the scheme's, 80 or 443).
    #[serde(skip)]
    pub authority: Authority,
    /// Path prefix from the URL, prepended to every forwarded path ("" when none).
    #[serde(skip)]
    pub base_path: String,
    /// TCP connect timeout (a failure answers 502).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time until the origin's response headers arrive (a timeout answers 504).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest gap between two body chunks from the origin.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Idle pooled connections kept for the origin.
    pub pool_max_idle_per_host: usize,
    /// Largest origin response head (a larger one answers 502); also caps each origin
    /// connection's read buffer.
    #[serde(serialize_with = "binary_size")]
    pub max_header_size: ByteSize,
    /// Send the client's host (as keyed) as `Host` instead of the origin's authority.
    pub preserve_host: bool,
    /// Rewrite `Location`, `Content-Location`, `Refresh` and `Link` URLs naming the origin to
    /// the client's public scheme and host.
    pub rewrite_urls: bool,
    /// `Host` (HTTP/2: `:authority`) sent instead of the URL's authority, for an origin reached
    /// by address or an internal name; normalized `host[:port]`. SNI still names the URL's host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// PEM bundle of CAs trusted for the origin's certificate, besides the platform's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// HTTP/2 to the origin: `auto` (ALPN), `never`, `always`.
    pub http2: Http2,
    /// Accept any origin certificate: for development only, warned about at every start.
    pub insecure_skip_verify: bool,
    /// The TLS client settings (`https` origins), built at load from the keys above.
    #[serde(skip)]
    pub tls: Option<crate::origin::tls::TlsClient>,
}

/// `[cache]`: the in-memory store.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Byte budget of the whole cache, every stored variant counted.
    #[serde(serialize_with = "binary_size")]
    pub max_size: ByteSize,
    /// Bodies larger than this stream through unstored.
    #[serde(serialize_with = "binary_size")]
    pub max_object_size: ByteSize,
    /// How long a key that produced an uncacheable response bypasses request collapsing.
    #[serde(with = "humantime_serde")]
    pub hit_for_pass: Duration,
    /// Upper bound on heuristic freshness (10% of the time since Last-Modified).
    #[serde(with = "humantime_serde")]
    pub heuristic_max: Duration,
    /// Store responses that set cookies (off: a Set-Cookie response is never shared).
    pub store_set_cookie: bool,
    /// Send `Surrogate-Key` on to clients instead of stripping it.
    pub expose_surrogate_keys: bool,
    /// On CORS answers, add `X-Cache`, `Cache-Status` and `Age` to
    /// `Access-Control-Expose-Headers`, so browser code can read them.
    pub expose_cache_headers_to_cors: bool,
    /// Most Vary variants kept per URL.
    pub max_variants: usize,
    /// How long a stale object with validators is kept for a conditional refresh (0: only stale windows).
    #[serde(with = "humantime_serde")]
    pub keep_for_revalidation: Duration,
    /// How long past its windows an object that may be served stale is kept, for a request's
    /// `max-stale` (objects without validators or stale windows would otherwise go at expiry).
    #[serde(with = "humantime_serde")]
    pub stale_grace: Duration,
    /// Request fields (beyond Accept, Accept-Language, Accept-Encoding) that Vary compares as
    /// weighted lists of case-insensitive members.
    pub vary_normalize: Vec<String>,
    /// How credentialed requests on paths no route matches are cached.
    pub credentialed: Credentialed,
    /// Byte budget of the credential verdicts of `shared-verified` routes (a quarter of it for
    /// rejections).
    #[serde(serialize_with = "binary_size")]
    pub max_verdict_memory: ByteSize,
    /// Byte budget of all fills buffering at once (default: a quarter of `max_size`); a fill
    /// beyond it streams through unstored.
    #[serde(
        serialize_with = "optional_binary_size",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_fill_memory: Option<ByteSize>,
}

impl CacheConfig {
    /// `max_fill_memory`, or its default: a quarter of `max_size`, at least one largest object.
    pub fn fill_memory(&self) -> u64 {
        self.max_fill_memory.map_or_else(
            || (self.max_size.as_u64() / 4).max(self.max_object_size.as_u64()),
            |b| b.as_u64(),
        )
    }
}

/// `cache.credentialed`: requests with credentials on paths that match no `[[routes]]` entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credentialed {
    /// RFC 9111 §3.5: shared only when the response says so (`public`, `s-maxage`, ...).
    #[default]
    Rfc,
    /// Each credential gets its own entries.
    PerCredential,
    /// Never cached: forwarded as they are.
    Pass,
}

/// `normalize.trailing_slash`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrailingSlash {
    /// `/a/` and `/a` stay different URLs.
    #[default]
    Keep,
    /// `/a/` becomes `/a` (key, routes and the forwarded path).
    Strip,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_size: ByteSize::mib(256),
            max_object_size: ByteSize::mib(8),
            hit_for_pass: Duration::from_secs(10),
            heuristic_max: Duration::from_secs(24 * 3600),
            store_set_cookie: false,
            expose_surrogate_keys: false,
            expose_cache_headers_to_cors: false,
            max_variants: 16,
            keep_for_revalidation: Duration::from_secs(3600),
            stale_grace: Duration::from_secs(10),
            vary_normalize: Vec::new(),
            credentialed: Credentialed::Rfc,
            max_verdict_memory: ByteSize::mib(4),
            max_fill_memory: None,
        }
    }
}

/// `[normalize]`: how a request becomes a cache key.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NormalizeConfig {
    /// Query parameter that carries the page number ("", the default: off). Setting it says
    /// that on this API no page parameter means `default_page`: every request without it is
    /// then keyed and forwarded with `page_param=default_page`.
    pub page_param: String,
    /// The page a request without `page_param` asks for.
    pub default_page: String,
    /// Sort query parameters by name so their order does not matter.
    pub sort_query: bool,
    /// Parameters dropped from the key and the forwarded URL; `*` globs at either end.
    pub ignore_params: Vec<String>,
    /// Parameters whose comma-separated values are a set: `fields=b,a` == `fields=a,b`.
    pub list_params: Vec<String>,
    /// Parameters that carry an API key: moved to the Authorization header, out of the key.
    pub auth_params: Vec<String>,
    /// Authorization scheme for a moved API key.
    pub auth_scheme: String,
    /// Request fields never forwarded: they let a GET act as another method or resource.
    pub strip_request_headers: Vec<String>,
    /// Never forward request fields with `_` in the name (CGI-style origins read `X_Forwarded_Host`
    /// as `X-Forwarded-Host`), as nginx does by default.
    pub drop_underscore_headers: bool,
    /// `//a///b` is `/a/b`.
    pub merge_slashes: bool,
    /// Whether `/a/` is `/a`.
    pub trailing_slash: TrailingSlash,
    /// Match `[[routes]]` paths ignoring ASCII case (the key and forwarded path keep the case).
    pub case_insensitive_paths: bool,
}

impl Default for NormalizeConfig {
    fn default() -> Self {
        Self {
            page_param: String::new(),
            default_page: "1".into(),
            sort_query: true,
            ignore_params: vec!["utm_*".into()],
            list_params: vec![],
            auth_params: vec!["apiKey".into(), "api_key".into()],
            auth_scheme: "api-token".into(),
            strip_request_headers: [
                "X-HTTP-Method-Override",
                "X-HTTP-Method",
                "X-Method-Override",
                "X-Original-URL",
                "X-Rewrite-URL",
            ]
            .map(String::from)
            .to_vec(),
            drop_underscore_headers: true,
            merge_slashes: true,
            trailing_slash: TrailingSlash::Keep,
            case_insensitive_paths: false,
        }
    }
}

/// `[admin]`, validated: the purge/metrics listener.
#[derive(Clone)]
pub struct AdminConfig {
    /// Address of the admin listener (keep it private).
    pub listen: SocketAddr,
    /// Bearer token every admin call must carry, if set.
    pub token: Option<String>,
    /// The environment variable the token was read from, so a printed config names it again.
    pub token_env: Option<String>,
    /// `[admin.tls]`: serve the admin API over HTTPS.
    pub tls: Option<TlsConfig>,
}

/// What a printed config shows instead of an inline admin token; loading it is refused.
pub const REDACTED_TOKEN: &str = "<redacted>";

impl Serialize for AdminConfig {
    /// The token itself is never written: `token_env` names its variable, and an inline token
    /// is written as [`REDACTED_TOKEN`].
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AdminConfig", 3)?;
        st.serialize_field("listen", &self.listen)?;
        match (&self.token_env, &self.token) {
            (Some(env), _) => st.serialize_field("token_env", env)?,
            (None, Some(_)) => st.serialize_field("token", REDACTED_TOKEN)?,
            (None, None) => st.skip_field("token")?,
        }
        match &self.tls {
            Some(tls) => st.serialize_field("tls", tls)?,
            None => st.skip_field("tls")?,
        }
        st.end()
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| REDACTED_TOKEN))
            .field("token_env", &self.token_env)
            .field("tls", &self.tls)
            .finish()
    }
}

/// How credentialed requests are cached on a route.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// RFC 9111 §3.5 decides whether a credentialed response may be shared.
    #[default]
    Shared,
    /// Each credential gets its own entries (the key holds a sha256 of it).
    PerCredential,
    /// One shared entry per URL, served only to credentials the origin accepted within
    /// `verify_ttl` (see [`crate::verify`]).
    SharedVerified,
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// matchit pattern: `/accounts/{id}`, `/bookings/{*rest}`.
    pub path: String,
    /// This proxy's freshness lifetime for the route, overriding the origin's.
    #[serde(default, with = "humantime_serde")]
    pub ttl: Option<Duration>,
    /// `false`: always forwarded, never stored.
    #[serde(default = "d_true")]
    pub cache: bool,
    /// `shared` (default), `per-credential` or `shared-verified`.
    #[serde(default)]
    pub auth: AuthMode,
    /// `shared-verified`: how long a credential the origin accepted is trusted (default 5m).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub verify_ttl: Option<Duration>,
    /// `shared-verified`: how long a credential the origin rejected (401/403) is answered
    /// locally (default 30s).
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub reject_ttl: Option<Duration>,
    /// Surrogate keys added to every object of the route; `{param}` takes a path parameter.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Serve stale this long while refreshing in the background.
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Option<Duration>,
    /// Serve stale this long when the origin fails.
    #[serde(default, with = "humantime_serde")]
    pub stale_if_error: Option<Duration>,
}

/// The validated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// Public listener.
    pub server: ServerConfig,
    /// The origin API.
    pub origin: OriginConfig,
    /// Cache store.
    pub cache: CacheConfig,
    /// Request normalization.
    pub normalize: NormalizeConfig,
    /// Compression.
    pub compression: CompressionConfig,
    /// Admin listener, if any.
    pub admin: Option<AdminConfig>,
    /// Log format (read at start only).
    pub log: LogConfig,
    /// Purges shared with other nodes through Redis, if set (read at start only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterConfig>,
    /// Per-route behaviour, compiled; the most specific pattern matching a path wins.
    pub routes: crate::routes::Routes,
    /// Allowed hosts, trusted proxies and stripped fields, compiled.
    #[serde(skip)]
    pub forwarding: crate::forwarding::Forwarding,
    /// The file this config was read from and a hash of its text (reload, `/stats`).
    #[serde(skip)]
    pub source: Source,
}

/// Where a config came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    /// The file, when read from one (`None`: inline text, which cannot be reloaded).
    pub path: Option<std::path::PathBuf>,
    /// sha256 of the text, hex (first 16 digits: enough to tell versions apart in `/stats`).
    pub hash: String,
}

/// Sizes print in binary units (`256MiB`), as they are usually written in the file, exactly.
fn binary_size<S: serde::Serializer>(v: &ByteSize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&exact_size(v.as_u64()))
}

/// A size in the largest binary unit that holds it exactly (`256MiB`, `1500B`), so a printed
/// config reads back to the same bytes.
fn exact_size(bytes: u64) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if bytes != 0 && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}B")
}

fn optional_binary_size<S: serde::Serializer>(
    v: &Option<ByteSize>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => binary_size(v, s),
        None => s.serialize_none(),
    }
}

fn d_true() -> bool {
    true
}
impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        let mut cfg = raw::parse_named(&text, path)?;
        cfg.source.path = Some(path.to_path_buf());
        Ok(cfg)
    }

    /// Validate TOML text (errors name `<inline>` as the file).
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        raw::parse_named(text, Path::new(INLINE))
    }

    /// A config for `origin_url` with every other key at its default.
    pub fn for_origin(origin_url: &str) -> Result<Config, ConfigError> {
        Self::parse(&format!("[origin]\nurl = {:?}\n", origin_url))
    }
}

#[cfg(test)]
mod tests;
