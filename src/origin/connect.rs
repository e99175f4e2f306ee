//! The origin's connector: every connection goes to `origin.url`'s address, over TLS for
//! `https` (SNI and the certificate's name from the URL's host), whatever authority a request
//! names. So `origin.host` can be the requests' authority (HTTP/1 `Host`, HTTP/2 `:authority`,
//! one pool) while the connection goes where the URL says, and no request target can ever
//! send the proxy elsewhere.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::Uri;
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::body::BoxError;
use crate::config::OriginConfig;

/// A stream to the origin: plain TCP, or TLS over it.
pub type OriginStream = MaybeHttpsStream<TokioIo<TcpStream>>;

type Connecting = Pin<Box<dyn Future<Output = Result<OriginStream, BoxError>> + Send>>;

/// Connects to the configured origin, ignoring the address it is asked for.
#[derive(Clone)]
pub struct OriginConnector {
    /// `scheme://authority/` of `origin.url`.
    target: Uri,
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Plain(HttpConnector),
    Tls(HttpsConnector<HttpConnector>),
}

impl OriginConnector {
    /// TCP to `origin.url`'s address (with the TCP settings of `tcp`), TLS when it is `https`.
    pub fn new(cfg: &OriginConfig, mut tcp: HttpConnector) -> Self {
        let target = Uri::builder()
            .scheme(cfg.scheme.clone())
            .authority(cfg.authority.clone())
            .path_and_query("/")
            .build()
            // Typed parts from a validated URL: cannot fail. Were it to, every connect would
            // fail with "missing scheme" rather than the process panic.
            .unwrap_or_default();
        let transport = match &cfg.tls {
            Some(tls) if cfg.scheme == http::uri::Scheme::HTTPS => {
                // The https URI is the TLS layer's to handle; TCP must accept it.
                tcp.enforce_http(false);
                Transport::Tls(HttpsConnector::from((tcp, tls.config(cfg.http2_mode()))))
            }
            _ => Transport::Plain(tcp),
        };
        OriginConnector { target, transport }
    }
}

impl Service<Uri> for OriginConnector {
    type Response = OriginStream;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match &mut self.transport {
            Transport::Plain(c) => c.poll_ready(cx).map_err(Into::into),
            Transport::Tls(c) => c.poll_ready(cx),
        }
    }

    fn call(&mut self, _requested: Uri) -> Connecting {
        let target = self.target.clone();
        match &mut self.transport {
            Transport::Plain(c) => {
                let connecting = c.call(target);
                Box::pin(async move { Ok(MaybeHttpsStream::Http(connecting.await?)) })
            }
            Transport::Tls(c) => c.call(target),
        }
    }
}
