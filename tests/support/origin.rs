//! The test origin: a real hyper server on 127.0.0.1:0 that records every request and answers with
//! a scripted [`Reply`] (replaceable at run time with [`Origin::set_handler`]); plain http, or
//! HTTPS ([`Origin::start_tls`]) recording the HTTP version and SNI each request came with.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// The Cache-Control of [`cacheable_origin`].
pub const CACHEABLE: &str = "public, max-age=60";

/// A Last-Modified date for validator tests.
pub const LAST_MODIFIED: &str = "Wed, 21 Oct 2015 07:28:00 GMT";

/// What the test origin saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The HTTP version the request came in.
    pub version: Version,
    /// The request's authority: HTTP/2's `:authority`, else the `Host` field ("" when none).
    pub authority: String,
    /// The name the client sent in TLS SNI (`None`: plain http, or no SNI).
    pub sni: Option<String>,
}

impl Seen {
    /// A request header as text ("" when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// What the test origin answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    /// 200 with `content-type: application/json`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    /// A bodiless 304 with exactly `headers` (no Content-Type).
    pub fn not_modified(headers: &[(&str, &str)]) -> Self {
        Reply {
            status: 304,
            headers: Vec::new(),
            body: Vec::new(),
            delay: Duration::ZERO,
        }
        .headers(headers)
    }
    pub fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn headers(self, headers: &[(&str, &str)]) -> Self {
        headers.iter().fold(self, |r, (k, v)| r.header(k, v))
    }
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

/// An in-process origin that records every request.
pub struct Origin {
    pub addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    body_bytes: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Mutex<Handler>>,
    /// TCP connections accepted.
    connections: Arc<AtomicUsize>,
    /// TLS handshakes that failed (the client rejected the certificate, say).
    failed_handshakes: Arc<AtomicUsize>,
    tls: bool,
    task: tokio::task::JoinHandle<()>,
}

/// What every connection of one origin shares.
#[derive(Clone)]
struct Shared {
    requests: Arc<AtomicUsize>,
    body_bytes: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Mutex<Handler>>,
}

impl Origin {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Origin {
        Origin::listen(None, handler).await
    }

    /// An HTTPS origin with these TLS settings (certificate, ALPN: see [`super::server_tls`]);
    /// HTTP/1.1 or HTTP/2, as the connection's first bytes say.
    pub async fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        Origin::listen(Some(tls), handler).await
    }

    async fn listen(
        tls: Option<Arc<rustls::ServerConfig>>,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handler: Handler = Arc::new(handler);
        let shared = Shared {
            requests: Arc::new(AtomicUsize::new(0)),
            body_bytes: Arc::new(AtomicUsize::new(0)),
            seen: Arc::new(Mutex::new(Vec::new())),
            handler: Arc::new(Mutex::new(handler)),
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let (sh, conns, failed, acceptor) = (
            shared.clone(),
            connections.clone(),
            failed_handshakes.clone(),
            tls.clone().map(tokio_rustls::TlsAcceptor::from),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let (sh, failed, acceptor) = (sh.clone(), failed.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let Some(acceptor) = acceptor else {
                        return serve(stream, None, sh).await;
                    };
                    let accepting = acceptor.accept(stream);
                    match tokio::time::timeout(Duration::from_secs(10), accepting).await {
                        Ok(Ok(tls)) => {
                            let sni = tls.get_ref().1.server_name().map(String::from);
                            serve(tls, sni, sh).await
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        Origin {
            addr,
            requests: shared.requests,
            body_bytes: shared.body_bytes,
            seen: shared.seen,
            handler: shared.handler,
            connections,
            failed_handshakes,
            tls: tls.is_some(),
            task,
        }
    }

    /// An origin that always answers 200 with `body`, `content-type: application/json` and `headers`.
    pub async fn fixed(body: &[u8], headers: &[(&str, &str)]) -> Origin {
        let reply = Reply::ok(body.to_vec()).headers(headers);
        Origin::start(move |_| reply.clone()).await
    }

    /// Replace the handler (e.g. make the origin start failing).
    pub fn set_handler(&self, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    /// Requests seen so far.
    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests seen so far for exactly this path and query.
    pub fn count_for(&self, path_and_query: &str) -> usize {
        self.counts().get(path_and_query).copied().unwrap_or(0)
    }

    /// Requests seen so far, by path and query.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for s in self.seen.lock().unwrap().iter() {
            *m.entry(s.path_and_query.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Body bytes the origin has sent so far.
    pub fn bytes_sent(&self) -> usize {
        self.body_bytes.load(Ordering::SeqCst)
    }

    /// Every request seen so far, oldest first.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("origin saw a request")
    }

    /// `http://127.0.0.1:port`, or for a TLS origin `https://localhost:port` (the name its
    /// certificate usually carries).
    pub fn url(&self) -> String {
        match self.tls {
            false => format!("http://{}", self.addr),
            true => format!("https://localhost:{}", self.addr.port()),
        }
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// TLS handshakes that failed so far.
    pub fn failed_handshakes(&self) -> usize {
        self.failed_handshakes.load(Ordering::SeqCst)
    }

    /// Stop listening and wait (bounded) until the address refuses connections.
    /// Existing connections die with their tasks.
    pub async fn stop(&self) {
        self.task.abort();
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(self.addr).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "origin {} still accepts connections after stop()",
            self.addr
        );
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serve one connection (plain or TLS) with the origin's handler, recording each request.
async fn serve<I>(io: I, sni: Option<String>, sh: Shared)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let (sh, sni) = (sh.clone(), sni.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let authority = match (parts.uri.authority(), parts.headers.get(http::header::HOST)) {
                (Some(a), _) => a.to_string(),
                (None, Some(h)) => h.to_str().unwrap_or_default().to_string(),
                (None, None) => String::new(),
            };
            let seen = Seen {
                method: parts.method.to_string(),
                path_and_query: parts
                    .uri
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default(),
                headers: parts.headers,
                body,
                version: parts.version,
                authority,
                sni,
            };
            sh.requests.fetch_add(1, Ordering::SeqCst);
            let handler = sh.handler.lock().unwrap().clone();
            let reply = handler(&seen);
            sh.seen.lock().unwrap().push(seen);
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            sh.body_bytes.fetch_add(reply.body.len(), Ordering::SeqCst);
            let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
            *resp.status_mut() = StatusCode::from_u16(reply.status).unwrap();
            for (k, v) in reply.headers {
                resp.headers_mut().append(
                    http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    http::HeaderValue::from_str(&v).unwrap(),
                );
            }
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

/// An origin that answers every path with `{"path":"<path>"}` and [`CACHEABLE`].
pub async fn cacheable_origin() -> Origin {
    Origin::start(|s| {
        Reply::ok(format!("{{\"path\":\"{}\"}}", s.path_and_query))
            .header("cache-control", CACHEABLE)
    })
    .await
}

/// Origin pages for a small shop: what each page carries as surrogate keys.
pub fn shop_reply(s: &Seen) -> Reply {
    let path = s.path_and_query.as_str();
    let keys = match path {
        "/products/12345" => "prod-12345",
        "/categories/17?page=2" => "cat-17 prod-12345 prod-999",
        "/search?q=x" => "search prod-12345",
        "/products/999" => "prod-999",
        "/a" => "a",
        "/b" => "b",
        "/ab" => "a b",
        "/c" => "c",
        _ => "other",
    };
    Reply::ok(shop_page(path))
        .header("cache-control", "max-age=300")
        .header("surrogate-key", keys)
}

/// The body [`shop_reply`] gives for `path`.
pub fn shop_page(path: &str) -> String {
    format!("{{\"page\":\"{path}\"}}")
}
