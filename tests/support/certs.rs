//! Test certificates, made with rcgen in the test and never checked in: a private CA and leaves
//! for `localhost` and 127.0.0.1 with each key type and PEM form apicache reads, and HTTPS
//! clients (reqwest, raw rustls) that trust that CA only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apicache::config::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
    SanType,
};
use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A leaf's key type and the PEM form its key file is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA P-256 as SEC1 (`EC PRIVATE KEY`, as `openssl ecparam -genkey` writes it).
    EcdsaP256Sec1,
    /// ECDSA P-384 as PKCS#8 (`PRIVATE KEY`).
    EcdsaP384,
    /// RSA 2048 as PKCS#1 (`RSA PRIVATE KEY`).
    RsaPkcs1,
    /// RSA 2048 as PKCS#8.
    RsaPkcs8,
    /// Ed25519 as PKCS#8.
    Ed25519,
}

/// A private certificate authority, with a directory for its leaves' files.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Where the leaves' files are written.
    pub dir: PathBuf,
}

/// A leaf certificate written as PEM files.
pub struct Leaf {
    /// Its files, as `[server.tls]` names them.
    pub tls: TlsConfig,
    /// The certificate, to compare with what a client was shown.
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// `tls = { cert_file = "…", key_file = "…" }`, for `[server]` or `[admin]`.
    pub fn toml_line(&self) -> String {
        format!(
            "tls = {{ cert_file = {:?}, key_file = {:?} }}",
            self.tls.cert_file.display().to_string(),
            self.tls.key_file.display().to_string()
        )
    }
}

impl Ca {
    /// A new CA whose files live in a fresh temp directory named after `name`.
    pub fn new(name: &str) -> Ca {
        let dir =
            std::env::temp_dir().join(format!("apicache-certs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "apicache test CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer, dir }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf for `localhost` and 127.0.0.1 with common name `name`, written to
    /// `dir/<name>.crt` and `dir/<name>.key` (again with the same name: a renewal in place).
    pub fn leaf(&self, name: &str, kind: KeyKind) -> Leaf {
        let (key, key_pem) = key_pair(kind);
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let tls = TlsConfig {
            cert_file: self.dir.join(format!("{name}.crt")),
            key_file: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&tls.cert_file, cert.pem()).unwrap();
        std::fs::write(&tls.key_file, key_pem).unwrap();
        Leaf {
            tls,
            der: cert.der().clone(),
        }
    }

    /// A reqwest client trusting this CA only, sending `localhost` to `addr`; HTTP/1.1 only
    /// (ALPN `http/1.1`) or offering `h2` too. No redirects, no decompression.
    pub fn client(&self, addr: SocketAddr, http1_only: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.pem().as_bytes()).unwrap())
            .resolve("localhost", addr)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if http1_only {
            b = b.http1_only();
        }
        b.build().unwrap()
    }

    /// A rustls client config trusting this CA only, offering `alpn` and TLS 1.2 and 1.3 (or
    /// TLS 1.2 alone).
    pub fn rustls_config(&self, alpn: &[&[u8]], tls12_only: bool) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        let b = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ));
        let b = if tls12_only {
            b.with_protocol_versions(&[&rustls::version::TLS12])
        } else {
            b.with_safe_default_protocol_versions()
        };
        let mut cfg = b
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

impl Drop for Ca {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `https://localhost:<port><path>` (the clients of [`Ca::client`] send it to the right address).
pub fn https_url(addr: SocketAddr, path: &str) -> String {
    format!("https://localhost:{}{path}", addr.port())
}

/// A TLS connection to `addr` as `localhost` with `cfg` (handshake done).
pub async fn tls_connect(
    addr: SocketAddr,
    cfg: rustls::ClientConfig,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let connect = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp);
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("handshake within 10 s")
        .unwrap()
}

/// Send `request` over `s` and read until the server closes (send `Connection: close`); bounded
/// by 10 s.
pub async fn tls_exchange(
    s: &mut tokio_rustls::client::TlsStream<TcpStream>,
    request: &str,
) -> String {
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out));
    // A peer closing without close_notify is an error here, after the whole response arrived.
    let _ = read.await.expect("response within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// A new key of `kind`, and its key file's text.
fn key_pair(kind: KeyKind) -> (KeyPair, String) {
    match kind {
        KeyKind::EcdsaP256Sec1 => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let sec1 = p256_pkcs8_to_sec1(key.serialized_der());
            (key, pem("EC PRIVATE KEY", &sec1))
        }
        KeyKind::EcdsaP384 => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
            let text = key.serialize_pem();
            (key, text)
        }
        KeyKind::Ed25519 => {
            let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
            let text = key.serialize_pem();
            (key, text)
        }
        KeyKind::RsaPkcs1 | KeyKind::RsaPkcs8 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            // ring cannot generate RSA keys; rcgen signs with one made here.
            let rsa = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
            let der = rsa.to_pkcs8_der().unwrap();
            let key = KeyPair::from_pkcs8_der_and_sign_algo(
                &PrivatePkcs8KeyDer::from(der.as_bytes().to_vec()),
                &rcgen::PKCS_RSA_SHA256,
            )
            .unwrap();
            let text = if kind == KeyKind::RsaPkcs1 {
                rsa.to_pkcs1_pem(LineEnding::LF).unwrap().to_string()
            } else {
                rsa.to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
            };
            (key, text)
        }
    }
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

/// One DER element of `b`: (whole element, its content, what follows).
fn tlv(b: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let (len, head) = match b[1] {
        n if n < 0x80 => (n as usize, 2),
        n => {
            let k = (n & 0x7f) as usize;
            let len = b[2..2 + k].iter().fold(0usize, |a, &x| a << 8 | x as usize);
            (len, 2 + k)
        }
    };
    (&b[..head + len], &b[head..head + len], &b[head + len..])
}

/// A P-256 PKCS#8 key (as ring writes it) as SEC1 `ECPrivateKey` with the curve named, the form
/// OpenSSL writes.
fn p256_pkcs8_to_sec1(pkcs8: &[u8]) -> Vec<u8> {
    let (_, seq, _) = tlv(pkcs8);
    let (_, _, rest) = tlv(seq); // version
    let (_, _, rest) = tlv(rest); // algorithm
    let (_, inner, _) = tlv(rest); // OCTET STRING holding ECPrivateKey
    let (_, ec, _) = tlv(inner);
    let (version, _, rest) = tlv(ec);
    let (private, _, rest) = tlv(rest);
    let mut public = rest;
    while !public.is_empty() && public[0] != 0xa1 {
        public = tlv(public).2;
    }
    let prime256v1 = [
        0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07,
    ];
    let content = [version, private, &prime256v1, public].concat();
    assert!(content.len() < 0x80);
    [&[0x30, content.len() as u8][..], &content].concat()
}
