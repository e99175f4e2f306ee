//! Certificates for HTTPS test origins, made with rcgen in the test and never checked in: a
//! private CA, leaves it signs for chosen names, the CA's PEM file for `origin.ca_file`, and the
//! rustls server settings of an origin ([`Origin::start_tls`](super::Origin::start_tls)).

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A private certificate authority; the PEM files it wrote go when it is dropped.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dirs: Mutex<Vec<PathBuf>>,
}

impl Drop for TestCa {
    fn drop(&mut self) {
        for dir in self.dirs.lock().unwrap().drain(..) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A leaf certificate (with the CA's certificate after it) and its key.
pub struct OriginLeaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        TestCa {
            issuer,
            dirs: Mutex::new(Vec::new()),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by this CA.
    pub fn leaf(&self, names: &[&str]) -> OriginLeaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        OriginLeaf {
            chain: vec![cert.der().clone(), self.issuer.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }

    /// The CA certificate as a PEM file in a directory of its own, for `origin.ca_file`.
    pub fn pem_file(&self) -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "apicache-ca-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        self.dirs.lock().unwrap().push(dir.clone());
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.issuer.pem()).unwrap();
        path
    }
}

/// The `[origin]` line that trusts `ca`.
pub fn ca_file_line(ca: &TestCa) -> String {
    format!("ca_file = {:?}", ca.pem_file().display().to_string())
}

/// An origin's TLS settings: `leaf`, offering `alpn` (`[]`: no ALPN, so HTTP/1.1).
pub fn server_tls(leaf: &OriginLeaf, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key.clone_key())
        .unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}
