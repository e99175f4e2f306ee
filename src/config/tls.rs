//! `[server.tls]` and `[admin.tls]`: the PEM files a listener serves HTTPS with. They are loaded
//! once while the config is validated, so an unreadable, empty or mismatched pair fails at start
//! (and at `--check-config`) naming the key, instead of at the first handshake.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `[server.tls]` / `[admin.tls]`: with it, the listener speaks only HTTPS (TLS 1.2 and 1.3,
/// ALPN `h2` and `http/1.1`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first, as PEM `CERTIFICATE` blocks.
    pub cert_file: PathBuf,
    /// The leaf's private key as PEM: PKCS#8 (`PRIVATE KEY`), PKCS#1 (`RSA PRIVATE KEY`) or SEC1
    /// (`EC PRIVATE KEY`); RSA, ECDSA P-256/P-384 or Ed25519.
    pub key_file: PathBuf,
}

/// Load `tls` (if set) so that a bad pair fails now, naming `<section>.cert_file` or
/// `<section>.key_file`.
pub(super) fn validate(
    tls: Option<&TlsConfig>,
    section: &str,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let Some(tls) = tls else {
        return Ok(());
    };
    crate::server::tls::load(tls).map(drop).map_err(|e| {
        invalid(
            &format!("{section}.{}", e.field),
            format!("{}: {}", e.path.display(), e.reason),
        )
    })
}
