//! The effective configuration as TOML (`--check-config`): every default written out, and
//! loading it again gives the same configuration. The admin token is never printed.

use super::{Config, REDACTED_TOKEN};

impl Config {
    /// This configuration as a TOML file that loads back to it, with its warnings as comments.
    /// An inline admin token is printed as `token = "<redacted>"` (with a comment): loading
    /// that is refused until the real token is put back, so the printed file can never start an
    /// admin API with another token or none. A token read from the environment stays `token_env`.
    pub fn effective_toml(&self) -> Result<String, toml::ser::Error> {
        let mut out = String::new();
        for w in self.warnings() {
            out.push_str("# warning: ");
            out.push_str(&w);
            out.push('\n');
        }
        let text = toml::to_string_pretty(self)?;
        let redacted = format!("\ntoken = \"{REDACTED_TOKEN}\"\n");
        let explained = format!(
            "\n# The admin token is not printed: replace {REDACTED_TOKEN} with it (or use \
             token_env) before loading this file.{redacted}"
        );
        out.push_str(&text.replacen(&redacted, &explained, 1));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every key set to something other than its default.
    const FULL: &str = r#"
[server]
listen = "127.0.0.1:18080"
header_read_timeout = "7s"
idle_timeout = "45s"
max_header_size = "32KiB"
max_body_size = "2MiB"
shutdown_grace = "3s"
shutdown_idle_wait = "250ms"
max_connections = 77
via = "edge-7"
hosts = ["api.example.com", "API.example.org:8443"]
trusted_proxies = ["10.0.0.0/8", "192.0.2.1"]
max_uri_length = "4KiB"

[origin]
url = "http://127.0.0.1:9000/v1/"
connect_timeout = "1s"
timeout = "12s"
body_timeout = "9s"
pool_idle_timeout = "3s"
pool_max_idle_per_host = 12
max_header_size = "16KiB"
preserve_host = true
rewrite_urls = false
http2 = "never"

[cache]
max_size = "64MiB"
max_object_size = "1500B"
hit_for_pass = "4s"
heuristic_max = "2h"
store_set_cookie = true
expose_surrogate_keys = true
max_variants = 5
keep_for_revalidation = "10m"
stale_grace = "0s"
vary_normalize = ["X-Flags"]
credentialed = "per-credential"
max_fill_memory = "8MiB"
max_verdict_memory = "1MiB"
expose_cache_headers_to_cors = true

[normalize]
page_param = "_page"
default_page = "0"
sort_query = false
ignore_params = ["utm_*", "fbclid"]
list_params = ["fields", "_sort"]
auth_params = ["key"]
auth_scheme = "Bearer"
strip_request_headers = ["X-HTTP-Method-Override"]
drop_underscore_headers = false
merge_slashes = false
trailing_slash = "strip"
case_insensitive_paths = true

[compression]
enabled = false
types = ["application/json"]
min_size = "2KiB"
gzip_level = 6
brotli_level = 5
zstd_level = 7
stream_gzip_level = 2
stream_brotli_level = 1
stream_zstd_level = 2
prefer = ["gzip", "zstd"]

[admin]
listen = "127.0.0.1:18081"
token_env = "APICACHE_PRINT_TEST_TOKEN"

[log]
format = "json"

[cluster]
redis_url = "redis://10.0.0.9:6380/2"
node_id = "edge-7a"
key_prefix = "shop-api"
max_purge_lag = "5s"
confirm_timeout = "300ms"
purge_log_length = 5000

[[routes]]
path = "/accounts/{id}"
ttl = "5m"
cache = true
auth = "per-credential"
tags = ["account-{id}"]
stale_while_revalidate = "30s"
stale_if_error = "10m"

[[routes]]
path = "/bookings/{*rest}"
cache = false

[[routes]]
path = "/products/{*rest}"
ttl = "1m"
auth = "shared-verified"
verify_ttl = "2m"
reject_ttl = "5s"
"#;

    /// The `[origin]` keys FULL cannot set with its `http://` URL and `preserve_host = true`:
    /// an https origin, its CA bundle (`{ca_file}`), and `host`, which contradicts
    /// `preserve_host`.
    const FULL_HTTPS: &str = r#"
[origin]
url = "https://api.internal:8443/v2"
host = "api.example.com"
ca_file = "{ca_file}"
insecure_skip_verify = true
"#;

    /// FULL_HTTPS with a real CA bundle, and the directory to remove after.
    fn full_https() -> (String, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("apicache-print-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ca = dir.join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        (
            FULL_HTTPS.replace("{ca_file}", &ca.display().to_string()),
            dir,
        )
    }

    fn set_token() {
        // Only this module's tests read this variable.
        std::env::set_var("APICACHE_PRINT_TEST_TOKEN", "0123456789abcdef-print");
    }

    /// The whole effective config, skipped and derived fields included (origin authority and
    /// base path, compiled forwarding and routes), as text; plus the token itself.
    fn effective(c: &Config) -> (String, Option<String>) {
        // Where the text came from is not part of the effective config.
        let c = &Config {
            source: Default::default(),
            ..c.clone()
        };
        (
            format!("{c:?}\n{}", toml::to_string(c).unwrap()),
            c.admin.as_ref().and_then(|a| a.token.clone()),
        )
    }

    /// The printed file's leaves, by dotted key.
    fn leaves(v: &toml::Value, at: String, out: &mut BTreeMap<String, toml::Value>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let at = if at.is_empty() {
                        k.clone()
                    } else {
                        format!("{at}.{k}")
                    };
                    leaves(v, at, out);
                }
            }
            v => {
                out.insert(at, v.clone());
            }
        }
    }

    /// FULL with `[server.tls]` and `[admin.tls]` pointing at freshly written pairs (they are
    /// loaded while validating).
    fn full_with_tls() -> String {
        let dir = crate::server::tls::tests::temp_dir("print");
        let server = crate::server::tls::tests::self_signed(&dir, "server");
        let admin = crate::server::tls::tests::self_signed(&dir, "admin");
        let mut text = FULL.to_string();
        for (section, tls) in [("server.tls", server), ("admin.tls", admin)] {
            text += &format!(
                "\n[{section}]\ncert_file = {:?}\nkey_file = {:?}\n",
                tls.cert_file.display().to_string(),
                tls.key_file.display().to_string()
            );
        }
        text
    }

    #[test]
    fn full_config_prints_and_loads_back_the_same() {
        set_token();
        let c = Config::parse(&full_with_tls()).unwrap();
        let printed = c.effective_toml().unwrap();
        assert!(!printed.contains("0123456789abcdef-print"), "{printed}");
        assert!(printed.contains("token_env = \"APICACHE_PRINT_TEST_TOKEN\""));
        assert!(printed.contains("# warning: normalize.list_params: `_sort`"));
        let again = Config::parse(&printed).unwrap();
        assert_eq!(effective(&again), effective(&c));
        assert_eq!(again.origin.base_path, "/v1");
        assert_eq!(again.effective_toml().unwrap(), printed);

        let (text, dir) = full_https();
        let https = Config::parse(&text).unwrap();
        let printed = https.effective_toml().unwrap();
        assert!(printed.contains("# warning: origin.insecure_skip_verify = true"));
        let again = Config::parse(&printed).unwrap();
        let _ = std::fs::remove_dir_all(dir);
        assert_eq!(effective(&again), effective(&https));
        assert_eq!(again.effective_toml().unwrap(), printed);

        // FULL (or, for the keys it cannot set, FULL_HTTPS) really sets every key the printer
        // writes to a non-default value, so a key added later without a place here fails this
        // test.
        let printed_leaves = |c: &Config| {
            let mut out = BTreeMap::new();
            leaves(&toml::Value::try_from(c).unwrap(), String::new(), &mut out);
            out
        };
        let full = printed_leaves(&c);
        let full_https = printed_leaves(&https);
        let default = printed_leaves(&Config::parse("[origin]\nurl = \"http://a:1\"\n").unwrap());
        for (key, v) in &default {
            assert!(
                full.get(key) != Some(v) || full_https.get(key) != Some(v),
                "{key} is at its default in FULL and FULL_HTTPS"
            );
        }
        let full: BTreeMap<_, _> = full_https.into_iter().chain(full).collect();
        for key in [
            "cache.max_fill_memory",
            "admin.token_env",
            "admin.listen",
            "server.tls.cert_file",
            "server.tls.key_file",
            "admin.tls.cert_file",
            "admin.tls.key_file",
            "log.format",
            "origin.host",
            "origin.ca_file",
            "origin.insecure_skip_verify",
        ] {
            assert!(full.contains_key(key), "{key}");
        }
    }

    #[test]
    fn inline_token_is_redacted_and_refused_until_put_back() {
        let text = "[origin]\nurl = \"http://a:1\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"inline-secret-123456\"\n";
        let c = Config::parse(text).unwrap();
        let printed = c.effective_toml().unwrap();
        assert!(!printed.contains("inline-secret"), "{printed}");
        assert!(
            printed.contains(
                "# The admin token is not printed: replace <redacted> with it (or use token_env) \
                 before loading this file.\ntoken = \"<redacted>\"\n"
            ),
            "{printed}"
        );
        assert!(!format!("{c:?}").contains("inline-secret"));
        let e = Config::parse(&printed).unwrap_err().to_string();
        assert!(
            e.contains("admin.token") && e.contains("put the real token back"),
            "{e}"
        );
        let restored = printed.replace("<redacted>", "inline-secret-123456");
        assert_eq!(effective(&Config::parse(&restored).unwrap()), effective(&c));
    }

    #[test]
    fn no_token_stays_no_token() {
        let text = "[origin]\nurl = \"http://a:1\"\n[admin]\nlisten = \"127.0.0.1:0\"\n";
        let c = Config::parse(text).unwrap();
        let printed = c.effective_toml().unwrap();
        assert!(printed.starts_with("# warning: admin API has no token"));
        assert!(!printed.contains("token ="), "{printed}");
        assert_eq!(effective(&Config::parse(&printed).unwrap()), effective(&c));
    }

    #[test]
    fn example_config_round_trips() {
        let c = Config::parse(include_str!("../../config/apicache.toml")).unwrap();
        let printed = c.effective_toml().unwrap();
        assert_eq!(effective(&Config::parse(&printed).unwrap()), effective(&c));
    }
}
