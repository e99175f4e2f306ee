//! TLS to an `https://` origin: the rustls client settings (trusted roots, or the development-only
//! verifier that accepts any certificate), and the ALPN list each `origin.http2` mode offers.
//!
//! Always the ring provider, given explicitly: the process-default provider panics when two are
//! compiled in.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::Http2;

/// ALPN identifiers.
const H2: &[u8] = b"h2";
const HTTP11: &[u8] = b"http/1.1";

/// The TLS client settings of one origin, built when the config is loaded (so a bad root set
/// fails the load, not the first request) and cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    /// Roots or verifier, no ALPN yet (it depends on `origin.http2`).
    config: Arc<ClientConfig>,
    /// Trusted roots (0 when any certificate is accepted), for Debug and logs.
    roots: usize,
    /// False for `insecure_skip_verify`.
    verifies: bool,
}

impl std::fmt::Debug for TlsClient {
    /// A summary: rustls' own Debug is long and not stable between builds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("roots", &self.roots)
            .field("verifies", &self.verifies())
            .finish()
    }
}

impl TlsClient {
    /// Verify origin certificates against `roots` (names checked against the URL's host).
    pub fn verifying(roots: RootCertStore) -> Result<Self, rustls::Error> {
        let n = roots.len();
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
            roots: n,
            verifies: true,
        })
    }

    /// Accept any origin certificate (`origin.insecure_skip_verify`): handshake signatures are
    /// still checked, so the peer holds the key of the certificate it sent, but nothing says
    /// that certificate is the origin's.
    pub fn accepting_any() -> Result<Self, rustls::Error> {
        let provider = provider();
        let verifier = Arc::new(AcceptAnyCertificate(provider.clone()));
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(TlsClient {
            config: Arc::new(config),
            roots: 0,
            verifies: false,
        })
    }

    /// Whether certificates are verified (false: `insecure_skip_verify`).
    pub fn verifies(&self) -> bool {
        self.verifies
    }

    /// Trusted roots (platform's and `origin.ca_file`'s).
    pub fn roots(&self) -> usize {
        self.roots
    }

    /// The client settings with the ALPN list of `mode`.
    pub fn config(&self, mode: Http2) -> Arc<ClientConfig> {
        let mut c = (*self.config).clone();
        c.alpn_protocols = alpn(mode);
        Arc::new(c)
    }
}

/// The ring provider, with its default cipher suites and key exchanges.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What the client offers in ALPN: `auto` lets the origin pick h2, `always` offers only h2,
/// `never` only HTTP/1.1 (said explicitly, so an h2-capable origin does not have to guess).
pub fn alpn(mode: Http2) -> Vec<Vec<u8>> {
    let protocols: &[&[u8]] = match mode {
        Http2::Auto => &[H2, HTTP11],
        Http2::Always => &[H2],
        Http2::Never => &[HTTP11],
    };
    protocols.iter().map(|p| p.to_vec()).collect()
}

/// `origin.insecure_skip_verify`: any certificate chain and name pass; the handshake signature
/// is verified with the provider's algorithms as usual.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_lists_per_mode() {
        let rows: [(Http2, &[&[u8]]); 3] = [
            (Http2::Auto, &[b"h2", b"http/1.1"]),
            (Http2::Always, &[b"h2"]),
            (Http2::Never, &[b"http/1.1"]),
        ];
        for (mode, want) in rows {
            assert_eq!(alpn(mode), want, "{mode:?}");
        }
    }

    #[test]
    fn settings_carry_the_mode_s_alpn_and_say_whether_they_verify() {
        let any = TlsClient::accepting_any().unwrap();
        assert!(!any.verifies());
        assert_eq!(any.config(Http2::Never).alpn_protocols, [b"http/1.1"]);
        assert_eq!(
            format!("{any:?}"),
            "TlsClient { roots: 0, verifies: false }"
        );
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".to_string()]).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let verifying = TlsClient::verifying(roots).unwrap();
        assert!(verifying.verifies());
        assert_eq!(verifying.roots(), 1);
        assert_eq!(verifying.config(Http2::Always).alpn_protocols, [b"h2"]);
    }
}
