//! `[origin]`'s TLS and authority keys (`ca_file`, `insecure_skip_verify`, `http2`, `host`),
//! validated when the config is loaded: the trusted roots are read then, so a missing or empty
//! CA bundle, or a machine without CA certificates, fails the load (and a reload) whole, never
//! the first request.

use std::path::{Path, PathBuf};

use http::uri::Scheme;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use serde::{Deserialize, Serialize};

use super::{ConfigError, OriginConfig};
use crate::origin::tls::TlsClient;

/// `origin.http2`: whether requests to the origin use HTTP/2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Http2 {
    /// Over TLS, HTTP/2 when the origin picks it in ALPN (`h2, http/1.1` offered); over plain
    /// http, HTTP/1.1.
    #[default]
    Auto,
    /// HTTP/1.1 only (ALPN `http/1.1`).
    Never,
    /// HTTP/2 only: ALPN `h2` over TLS, prior knowledge (h2c) over plain http.
    Always,
}

impl OriginConfig {
    /// `http2` as used: `auto` is HTTP/1.1 with `preserve_host`, whose `Host` would disagree
    /// with HTTP/2's `:authority` (the URL's; most HTTP/2 servers believe `:authority`).
    pub fn http2_mode(&self) -> Http2 {
        match self.http2 {
            Http2::Auto if self.preserve_host => Http2::Never,
            mode => mode,
        }
    }
}

/// The keys as written (`ca_file` already resolved against the config file's directory).
pub(super) struct Keys<'a> {
    pub scheme: &'a Scheme,
    pub ca_file: Option<&'a Path>,
    pub insecure_skip_verify: bool,
    pub host: Option<&'a str>,
    pub preserve_host: bool,
    pub http2: Http2,
}

/// What they validate into.
pub(super) struct Validated {
    /// `origin.host`, normalized (lowercase, the scheme's default port dropped).
    pub host: Option<String>,
    /// The TLS client settings, for an `https` origin.
    pub tls: Option<TlsClient>,
}

/// A relative `ca_file` is relative to the config file's directory (a service's working
/// directory is rarely where its config is).
pub(super) fn resolve(ca_file: &Path, config_file: &Path) -> PathBuf {
    match config_file.parent() {
        Some(dir) => dir.join(ca_file),
        None => ca_file.to_path_buf(),
    }
}

/// Validate the keys and, for `https`, build the TLS settings: the platform's roots plus
/// `ca_file`'s, or (`insecure_skip_verify`) a verifier that accepts any certificate.
pub(super) fn validate(
    keys: Keys<'_>,
    invalid: &dyn Fn(&str, String) -> ConfigError,
) -> Result<Validated, ConfigError> {
    let host = match keys.host {
        None => None,
        Some(_) if keys.preserve_host => {
            return Err(invalid(
                "origin.host",
                "contradicts origin.preserve_host = true (which sends the client's host): set \
                 one of them"
                    .into(),
            ))
        }
        Some(h) => Some(
            crate::forwarding::normalize_host(h, keys.scheme.as_str()).ok_or_else(|| {
                invalid(
                    "origin.host",
                    format!("{h:?} is not a host[:port] (e.g. api.internal or 10.0.0.5:8443)"),
                )
            })?,
        ),
    };
    if keys.preserve_host && keys.http2 == Http2::Always {
        return Err(invalid(
            "origin.http2",
            "\"always\" contradicts origin.preserve_host = true: over HTTP/2 the origin is told \
             its own authority in :authority and the client's host in Host; use \"auto\" \
             (HTTP/1.1 with preserve_host) or \"never\""
                .into(),
        ));
    }
    // Read even where it has no effect (warned about): a bad file is refused either way.
    let extra = match keys.ca_file {
        Some(path) => read_ca_file(path).map_err(|why| invalid("origin.ca_file", why))?,
        None => Vec::new(),
    };
    let tls = match (keys.scheme == &Scheme::HTTPS, keys.insecure_skip_verify) {
        (false, _) => None,
        (true, true) => Some(TlsClient::accepting_any()),
        (true, false) => {
            let roots = roots(
                rustls_native_certs::load_native_certs(),
                extra,
                keys.ca_file,
            )
            .map_err(|why| invalid("origin.ca_file", why))?;
            Some(TlsClient::verifying(roots))
        }
    };
    let tls = tls
        .transpose()
        .map_err(|e| invalid("origin.url", format!("cannot set up TLS: {e}")))?;
    Ok(Validated { host, tls })
}

/// The certificates of a PEM bundle; other blocks (a key, say) are skipped. Err: why the file
/// cannot serve as one, naming it.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown} is not a PEM file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "{shown} holds no certificate (want PEM `-----BEGIN CERTIFICATE-----` blocks)"
        ));
    }
    Ok(certs)
}

/// The trusted roots: whatever the platform's store holds that parses, and every certificate of
/// `ca_file`, each of which must be usable as a trust anchor. Err: why, when nothing is trusted
/// or a `ca_file` certificate is not a CA certificate.
fn roots(
    platform: rustls_native_certs::CertificateResult,
    extra: Vec<CertificateDer<'static>>,
    ca_file: Option<&Path>,
) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(platform.certs);
    for (i, cert) in extra.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            let file = ca_file.map(|p| p.display().to_string()).unwrap_or_default();
            format!("certificate {} of {file} is not usable as a CA: {e}", i + 1)
        })?;
    }
    if roots.is_empty() {
        let why = (platform.errors.first()).map_or(String::new(), |e| format!(" ({e})"));
        return Err(format!(
            "no trusted CA certificates: the platform's certificate store is empty or \
             unreadable{why}. Install the system's CA certificates (ca-certificates), or set \
             origin.ca_file to a PEM bundle of the CAs that sign the origin's certificate"
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests;
