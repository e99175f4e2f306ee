//! HTTPS on a listener: the certificate chain and key read from PEM files, the rustls server
//! config (ring, TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`), a certificate that can be replaced
//! while the listener runs ([`CertResolver::reload`]: renewals need no restart), and the handshake,
//! run in the connection's own task and bounded by the connection's deadlines.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::conn::{Limits, Phase};
use super::registry::Tracker;
use crate::config::{Config, ConfigError, TlsConfig};

/// Largest PEM file read: a chain is a few KiB, and a path pointing at a device or a huge file
/// by mistake must fail instead of filling memory.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The ALPN protocols offered, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a certificate/key pair could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// `cert_file` or `key_file`: the key of `[*.tls]` at fault.
    pub field: &'static str,
    /// The file that was read.
    pub path: PathBuf,
    /// What is wrong with it.
    pub reason: String,
}

/// The crypto provider every TLS config here is built with (never the process default: two
/// providers compiled in make that one panic).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Read and check a certificate chain and its private key: both parse, the key type is
/// supported, and the key belongs to the first (leaf) certificate.
pub fn load(tls: &TlsConfig) -> Result<Arc<CertifiedKey>, LoadError> {
    let cert_err = |reason: String| LoadError {
        field: "cert_file",
        path: tls.cert_file.clone(),
        reason,
    };
    let key_err = |reason: String| LoadError {
        field: "key_file",
        path: tls.key_file.clone(),
        reason,
    };
    let pem = read_pem(&tls.cert_file).map_err(cert_err)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(format!("not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(cert_err("no CERTIFICATE block in it".into()));
    }
    let pem = read_pem(&tls.key_file).map_err(key_err)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        key_err(match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no unencrypted private key in it \
                 (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)"
                .into(),
            e => format!("not valid PEM: {e}"),
        })
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| {
            key_err(format!(
                "unsupported or malformed key ({e}); RSA, ECDSA P-256/P-384 and Ed25519 keys are supported"
            ))
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key that cannot tell its public half (none of ring's) cannot be checked: accept it.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(key_err(format!(
                "does not match the first certificate in {}",
                tls.cert_file.display()
            )))
        }
        Err(e) => {
            return Err(cert_err(format!(
                "the first certificate is not usable: {e}"
            )))
        }
    }
    Ok(Arc::new(certified))
}

/// The bytes of `path`, at most [`MAX_PEM_BYTES`].
fn read_pem(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_PEM_BYTES {
        return Err(format!("larger than {MAX_PEM_BYTES} bytes"));
    }
    if buf.iter().all(u8::is_ascii_whitespace) {
        return Err("empty".into());
    }
    Ok(buf)
}

/// The certificate a listener presents, replaceable while it runs: each handshake takes the
/// current one, and connections already open keep theirs.
#[derive(Debug)]
pub struct CertResolver {
    /// `server.tls` or `admin.tls`, for errors.
    section: &'static str,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// A resolver serving the pair in `tls`.
    pub fn new(section: &'static str, tls: &TlsConfig) -> Result<Self, ConfigError> {
        Ok(CertResolver {
            section,
            current: RwLock::new(load(tls).map_err(|e| error(section, e))?),
        })
    }

    /// Read the pair in `tls` again (a renewed certificate, or new paths) and serve it to new
    /// connections. On any error the current pair stays; the error names the PEM file as its
    /// file and `<section>.cert_file` / `key_file` as its key.
    pub fn reload(&self, tls: &TlsConfig) -> Result<(), ConfigError> {
        let fresh = load(tls).map_err(|e| error(self.section, e))?;
        self.set(fresh);
        Ok(())
    }

    /// The pair handshakes use now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A load error as a config error whose file is the PEM file.
fn error(section: &str, e: LoadError) -> ConfigError {
    ConfigError::Invalid {
        file: e.path,
        key: format!("{section}.{}", e.field),
        reason: e.reason,
    }
}

/// The rustls config of a listener presenting `resolver`'s certificate.
pub(crate) fn acceptor(resolver: Arc<CertResolver>) -> Result<TlsAcceptor, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// The certificate handles of a running apicache's listeners, for a reload to swap.
#[derive(Debug, Clone, Default)]
pub struct TlsHandles {
    /// The public listener's, when `[server.tls]` is set.
    pub server: Option<Arc<CertResolver>>,
    /// The admin listener's, when `[admin.tls]` is set.
    pub admin: Option<Arc<CertResolver>>,
}

impl TlsHandles {
    /// Resolvers for the listeners of `cfg` that have TLS.
    pub fn new(cfg: &Config) -> Result<Self, ConfigError> {
        let server = match &cfg.server.tls {
            Some(t) => Some(Arc::new(CertResolver::new("server.tls", t)?)),
            None => None,
        };
        let admin = match cfg.admin.as_ref().and_then(|a| a.tls.as_ref()) {
            Some(t) => Some(Arc::new(CertResolver::new("admin.tls", t)?)),
            None => None,
        };
        Ok(TlsHandles { server, admin })
    }

    /// Read the certificates `cfg` names and serve them to new connections: all or nothing, so a
    /// bad admin pair leaves the public one unchanged too. Turning TLS on or off on a listener
    /// needs a restart, and is an error here. Sections named in `keep` (a reload's
    /// restart-needed keys: the file turned that listener's TLS on or off) keep their running
    /// certificate unread: their files may be gone.
    pub fn reload(&self, cfg: &Config, keep: &[&str]) -> Result<(), ConfigError> {
        let admin_tls = cfg.admin.as_ref().and_then(|a| a.tls.as_ref());
        let pairs = [
            ("server.tls", &self.server, cfg.server.tls.as_ref()),
            ("admin.tls", &self.admin, admin_tls),
        ];
        let kept = |section: &str| {
            keep.contains(&section) || (section == "admin.tls" && keep.contains(&"admin"))
        };
        let mut fresh = Vec::new();
        for (section, resolver, tls) in pairs {
            if kept(section) {
                continue;
            }
            match (resolver, tls) {
                (Some(r), Some(t)) => fresh.push((r, load(t).map_err(|e| error(section, e))?)),
                (None, None) => {}
                (running, _) => {
                    return Err(ConfigError::Invalid {
                        file: PathBuf::from("<reload>"),
                        key: section.into(),
                        reason: format!(
                            "TLS is {} on the running listener: turning it {} needs a restart",
                            if running.is_some() { "on" } else { "off" },
                            if running.is_some() { "off" } else { "on" },
                        ),
                    })
                }
            }
        }
        for (r, key) in fresh {
            r.set(key);
        }
        Ok(())
    }
}

/// Complete the TLS handshake of a connection accepted at `t.accepted()`, within the header-read
/// deadline counted from accept (a silent or slow client is dropped like a plain one that sends
/// no request), and unless the connection is evicted or shutdown begins. `None`: closed.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    t: &Tracker,
    limits: Limits,
    phase: &mut watch::Receiver<Phase>,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let deadline = Instant::from_std(t.accepted()) + limits.header_read;
    let why = tokio::select! {
        r = acceptor.accept(stream) => match r {
            Ok(s) => return Some(s),
            // Scanners and clients that distrust the certificate: routine, not a warning.
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return None;
            }
        },
        _ = sleep_until(deadline) => "no TLS handshake within server.header_read_timeout",
        _ = t.evict.notified() => "evicted during the TLS handshake",
        _ = phase.wait_for(|p| *p != Phase::Serving) => "shutdown during the TLS handshake",
    };
    tracing::debug!(%peer, why, "closing connection");
    None
}

#[cfg(test)]
pub(crate) mod tests;
