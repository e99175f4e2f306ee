//! The file as written: serde structs that reject unknown keys, and their validation into
//! [`Config`], with every error naming the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use http::uri::Scheme;
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: ServerConfig,
    origin: RawOrigin,
    #[serde(default)]
    cache: CacheConfig,
    #[serde(default)]
    normalize: NormalizeConfig,
    #[serde(default)]
    compression: CompressionConfig,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    log: LogConfig,
    #[serde(default)]
    cluster: Option<ClusterConfig>,
    #[serde(default)]
    routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawOrigin {
    url: String,
    #[serde(default = "d_connect_timeout", with = "humantime_serde")]
    connect_timeout: Duration,
    #[serde(default = "d_origin_timeout", with = "humantime_serde")]
    timeout: Duration,
    #[serde(default = "d_body_timeout", with = "humantime_serde")]
    body_timeout: Duration,
    #[serde(default = "d_pool_idle", with = "humantime_serde")]
    pool_idle_timeout: Duration,
    #[serde(default = "d_pool_max_idle")]
    pool_max_idle_per_host: usize,
    #[serde(
        default = "d_origin_header_size",
        serialize_with = "super::binary_size"
    )]
    max_header_size: ByteSize,
    #[serde(default)]
    preserve_host: bool,
    #[serde(default = "d_true")]
    rewrite_urls: bool,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    http2: Http2,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: SocketAddr,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    tls: Option<TlsConfig>,
}

fn d_connect_timeout() -> Duration {
    Duration::from_secs(2)
}
fn d_origin_timeout() -> Duration {
    Duration::from_secs(30)
}
fn d_body_timeout() -> Duration {
    Duration::from_secs(30)
}
/// Below common origin keep-alive timeouts (Node 5 s, gunicorn 2–5 s), so the pool rarely
/// reuses a connection the origin is closing.
fn d_pool_idle() -> Duration {
    Duration::from_secs(4)
}
fn d_pool_max_idle() -> usize {
    256
}
/// Each pooled connection keeps a read buffer up to this size: 200 connections at hyper's
/// ~400 KiB default held 80 MiB outside any budget.
fn d_origin_header_size() -> ByteSize {
    ByteSize::kib(64)
}

/// Parse and validate `text`, read from `file`.
pub(super) fn parse_named(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let invalid = |key: &str, reason: String| ConfigError::Invalid {
        file: file.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let de = toml::Deserializer::new(text);
    let mut raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let mut reason = e.inner().message().trim().replace('\n', "; ");
        if let Some(span) = e.inner().span() {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            reason = format!("{reason} (line {line})");
        }
        let key = if key == "." { "<root>".into() } else { key };
        invalid(&key, reason)
    })?;
    if let Some(ca) = &mut raw.origin.ca_file {
        *ca = origin_tls::resolve(ca, file);
    }
    let mut cfg = raw.validate(&invalid)?;
    cfg.source.hash = text_hash(text);
    Ok(cfg)
}

/// The first 16 hex digits of the text's sha256.
fn text_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    crate::normalize::hex(&digest[..8])
}

impl RawConfig {
    fn validate(
        self,
        invalid: &dyn Fn(&str, String) -> ConfigError,
    ) -> Result<Config, ConfigError> {
        let origin = validate_origin(self.origin, invalid)?;
        let cache = self.cache;
        if cache.max_size.as_u64() < 1024 {
            return Err(invalid("cache.max_size", "must be at least 1KiB".into()));
        }
        if cache.max_object_size.as_u64() == 0 || cache.max_object_size > cache.max_size {
            return Err(invalid(
                "cache.max_object_size",
                "must be between 1 byte and cache.max_size".into(),
            ));
        }
        if cache.max_variants == 0 {
            return Err(invalid("cache.max_variants", "must be at least 1".into()));
        }
        for (i, f) in cache.vary_normalize.iter().enumerate() {
            if http::HeaderName::from_bytes(f.as_bytes()).is_err() {
                return Err(invalid(
                    &format!("cache.vary_normalize[{i}]"),
                    format!("{f:?} is not a field name"),
                ));
            }
        }
        if self.server.max_header_size.as_u64() < 8192 {
            return Err(invalid(
                "server.max_header_size",
                "must be at least 8KiB (hyper's minimum buffer)".into(),
            ));
        }
        if self.server.max_connections == 0 {
            return Err(invalid(
                "server.max_connections",
                "must be at least 1".into(),
            ));
        }
        self.compression
            .validate()
            .map_err(|(key, why)| invalid(key, why))?;
        let n = &self.normalize;
        if !n.auth_params.is_empty() && http::HeaderValue::from_str(&n.auth_scheme).is_err()
            || n.auth_scheme.contains(' ')
            || n.auth_scheme.is_empty()
        {
            return Err(invalid(
                "normalize.auth_scheme",
                "must be a single token such as `api-token` or `Bearer`".into(),
            ));
        }
        validate_page(n, invalid)?;
        for (key, d) in [
            (
                "server.header_read_timeout",
                self.server.header_read_timeout,
            ),
            ("server.idle_timeout", self.server.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be more than 0".into()));
            }
        }
        if self.server.max_uri_length.as_u64() < 256 {
            return Err(invalid(
                "server.max_uri_length",
                "must be at least 256B".into(),
            ));
        }
        if cache
            .max_fill_memory
            .is_some_and(|m| m < cache.max_object_size)
        {
            return Err(invalid(
                "cache.max_fill_memory",
                "must be at least cache.max_object_size (one fill must fit)".into(),
            ));
        }
        let forwarding = crate::forwarding::Forwarding::compile(&self.server, &self.normalize)
            .map_err(|(key, why)| invalid(&key, why))?;
        let routes = crate::routes::Routes::compile(self.routes, &self.normalize)
            .map_err(|(key, why)| invalid(&key, why))?;
        tls::validate(self.server.tls.as_ref(), "server.tls", invalid)?;
        let admin = match self.admin {
            None => None,
            Some(a) => {
                let (token, token_env) = match (a.token, a.token_env) {
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            "admin.token",
                            "set either token or token_env, not both".into(),
                        ))
                    }
                    (Some(t), None) if t == REDACTED_TOKEN => {
                        return Err(invalid(
                            "admin.token",
                            format!(
                                "`{REDACTED_TOKEN}` is what --check-config prints instead of the \
                                 token: put the real token back, or use token_env"
                            ),
                        ))
                    }
                    (Some(t), None) => (Some(t), None),
                    (None, Some(env)) => match std::env::var(&env) {
                        Ok(t) if !t.is_empty() => (Some(t), Some(env)),
                        _ => {
                            return Err(invalid(
                                "admin.token_env",
                                format!("environment variable {env} is not set or empty"),
                            ))
                        }
                    },
                    (None, None) => (None, None),
                };
                if token.as_deref().is_some_and(|t| t.len() < 16) {
                    return Err(invalid(
                        "admin.token",
                        "must be at least 16 characters".into(),
                    ));
                }
                if a.listen == self.server.listen && a.listen.port() != 0 {
                    return Err(invalid(
                        "admin.listen",
                        "must differ from server.listen: purges never go on the public port".into(),
                    ));
                }
                tls::validate(a.tls.as_ref(), "admin.tls", invalid)?;
                Some(AdminConfig {
                    listen: a.listen,
                    token,
                    token_env,
                    tls: a.tls,
                })
            }
        };
        if let Some(c) = &self.cluster {
            c.validate(invalid)?;
        }
        Ok(Config {
            server: self.server,
            origin,
            cache,
            normalize: self.normalize,
            compression: self.compression,
            admin,
            log: self.log,
            cluster: self.cluster,
            routes,
            forwarding,
            source: super::Source::default(),
        })
    }
}

/// `page_param` and `default_page` are written into every forwarded URL that lacks them, so
/// they must read back as themselves and not be removed again by another rule.
fn validate_page(
    n: &NormalizeConfig,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    if n.page_param.is_empty() {
        return Ok(());
    }
    let plain = |s: &str, extra: &[u8]| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b) || extra.contains(&b))
    };
    if !plain(&n.page_param, b"[]") {
        return Err(invalid(
            "normalize.page_param",
            format!(
                "{:?} must be a plain parameter name (letters, digits, - . _ ~ [ ])",
                n.page_param
            ),
        ));
    }
    if !plain(&n.default_page, b"") {
        return Err(invalid(
            "normalize.default_page",
            format!(
                "{:?} must be a plain value (letters, digits, - . _ ~)",
                n.default_page
            ),
        ));
    }
    if n.auth_params
        .iter()
        .any(|a| a.eq_ignore_ascii_case(&n.page_param))
    {
        return Err(invalid(
            "normalize.page_param",
            format!("{:?} is also in normalize.auth_params", n.page_param),
        ));
    }
    if let Some(i) = n
        .ignore_params
        .iter()
        .position(|g| crate::normalize::glob_match(g, &n.page_param))
    {
        return Err(invalid(
            "normalize.page_param",
            format!(
                "{:?} is also matched by normalize.ignore_params[{i}], which would drop it",
                n.page_param
            ),
        ));
    }
    Ok(())
}

/// The scheme, authority and base path of an `origin.url`.
fn parse_origin_url(
    url: &str,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(Scheme, http::uri::Authority, String), ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid("origin.url", format!("malformed URL {url:?}: {e}")))?;
    let scheme = match uri.scheme_str() {
        Some("http") => Scheme::HTTP,
        Some("https") => Scheme::HTTPS,
        Some(other) => {
            return Err(invalid(
                "origin.url",
                format!("scheme `{other}` is not supported (use http:// or https://)"),
            ))
        }
        None => {
            return Err(invalid(
                "origin.url",
                format!("{url:?} needs a scheme, e.g. http://127.0.0.1:9000"),
            ))
        }
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| invalid("origin.url", format!("{url:?} has no host")))?;
    if authority.as_str().contains('@') {
        return Err(invalid(
            "origin.url",
            "credentials in the origin URL are not supported".into(),
        ));
    }
    if uri.query().is_some() {
        return Err(invalid("origin.url", "must not have a query".into()));
    }
    Ok((
        scheme,
        authority,
        uri.path().trim_end_matches('/').to_string(),
    ))
}

impl Config {
    /// This configuration with `origin.url` replaced and every other setting kept, for
    /// `apicache demo --config`, which puts the demo API behind a user's file.
    pub fn with_origin_url(mut self, url: &str) -> Result<Config, ConfigError> {
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            file: Path::new(INLINE).to_path_buf(),
            key: key.to_string(),
            reason,
        };
        let (scheme, authority, base_path) = parse_origin_url(url, &invalid)?;
        let o = &self.origin;
        let checked = origin_tls::validate(
            origin_tls::Keys {
                scheme: &scheme,
                ca_file: o.ca_file.as_deref(),
                insecure_skip_verify: o.insecure_skip_verify,
                host: o.host.as_deref(),
                preserve_host: o.preserve_host,
                http2: o.http2,
            },
            &invalid,
        )?;
        self.origin = OriginConfig {
            url: url.to_string(),
            scheme,
            authority,
            base_path,
            tls: checked.tls,
            ..self.origin
        };
        Ok(self)
    }
}

fn validate_origin(
    raw: RawOrigin,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<OriginConfig, ConfigError> {
    let (scheme, authority, base_path) = parse_origin_url(&raw.url, invalid)?;
    if raw.timeout.is_zero() {
        return Err(invalid("origin.timeout", "must be more than 0".into()));
    }
    if raw.max_header_size.as_u64() < 8192 {
        return Err(invalid(
            "origin.max_header_size",
            "must be at least 8KiB (hyper's minimum buffer)".into(),
        ));
    }
    if raw.connect_timeout.is_zero() {
        return Err(invalid(
            "origin.connect_timeout",
            "must be more than 0".into(),
        ));
    }
    let checked = origin_tls::validate(
        origin_tls::Keys {
            scheme: &scheme,
            ca_file: raw.ca_file.as_deref(),
            insecure_skip_verify: raw.insecure_skip_verify,
            host: raw.host.as_deref(),
            preserve_host: raw.preserve_host,
            http2: raw.http2,
        },
        invalid,
    )?;
    Ok(OriginConfig {
        url: raw.url,
        scheme,
        authority,
        base_path,
        connect_timeout: raw.connect_timeout,
        timeout: raw.timeout,
        body_timeout: raw.body_timeout,
        pool_idle_timeout: raw.pool_idle_timeout,
        pool_max_idle_per_host: raw.pool_max_idle_per_host,
        max_header_size: raw.max_header_size,
        preserve_host: raw.preserve_host,
        rewrite_urls: raw.rewrite_urls,
        host: checked.host,
        ca_file: raw.ca_file,
        http2: raw.http2,
        insecure_skip_verify: raw.insecure_skip_verify,
        tls: checked.tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_settings_are_validated() {
        let base = "[origin]\nurl = \"http://a:1\"\n[normalize]\n";
        // (settings, Some(key named in the error) or None: valid)
        let rows = [
            ("", None),
            ("page_param = \"\"\ndefault_page = \"\"\n", None),
            ("page_param = \"page\"\n", None),
            ("page_param = \"_page\"\ndefault_page = \"0\"\n", None),
            ("page_param = \"page[number]\"\n", None),
            ("page_param = \"pa ge\"\n", Some("normalize.page_param")),
            ("page_param = \"p&q\"\n", Some("normalize.page_param")),
            ("page_param = \"p%41\"\n", Some("normalize.page_param")),
            (
                "page_param = \"page\"\ndefault_page = \"\"\n",
                Some("normalize.default_page"),
            ),
            (
                "page_param = \"page\"\ndefault_page = \"1#\"\n",
                Some("normalize.default_page"),
            ),
            ("page_param = \"apikey\"\n", Some("normalize.page_param")),
            ("page_param = \"utm_page\"\n", Some("normalize.page_param")),
        ];
        for (settings, want) in rows {
            let got = Config::parse(&format!("{base}{settings}"));
            match (want, got) {
                (None, Ok(_)) => {}
                (Some(key), Err(e)) => assert!(e.to_string().contains(key), "{settings}: {e}"),
                (want, got) => panic!("{settings}: want {want:?}, got {:?}", got.err()),
            }
        }
    }

    fn parse(cache: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("[origin]\nurl = \"http://a:1\"\n[cache]\n{cache}"))
    }

    #[test]
    fn stale_grace_and_vary_normalize() {
        let c = parse("").unwrap();
        assert!(!c.cache.expose_cache_headers_to_cors);
        assert!(
            parse("expose_cache_headers_to_cors = true\n")
                .unwrap()
                .cache
                .expose_cache_headers_to_cors
        );
        assert_eq!(c.cache.stale_grace, Duration::from_secs(10));
        assert!(c.cache.vary_normalize.is_empty());
        let c = parse("stale_grace = \"0s\"\nvary_normalize = [\"X-Flags\"]\n").unwrap();
        assert_eq!(c.cache.stale_grace, Duration::ZERO);
        assert_eq!(c.cache.vary_normalize, ["X-Flags"]);
        let again = Config::parse(&toml::to_string(&c).unwrap()).unwrap();
        assert_eq!(again.cache.vary_normalize, ["X-Flags"]);
        assert_eq!(again.cache.stale_grace, Duration::ZERO);
        // (setting, key named in the error)
        let rows = [
            ("stale_grace = \"soon\"\n", "cache.stale_grace"),
            (
                "vary_normalize = [\"ok\", \"a b\"]\n",
                "cache.vary_normalize[1]",
            ),
            ("vary_normalize = [\"\"]\n", "cache.vary_normalize[0]"),
            ("vary_normalize = \"accept\"\n", "cache.vary_normalize"),
            (
                "expose_cache_headers_to_cors = \"yes\"\n",
                "cache.expose_cache_headers_to_cors",
            ),
        ];
        for (setting, key) in rows {
            let e = parse(setting).unwrap_err().to_string();
            assert!(e.contains(key), "{setting}: {e}");
        }
    }
}
