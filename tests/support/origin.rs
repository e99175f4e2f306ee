//! The test origin: a real hyper server on 127.0.0.1:0 that records every request and answers with
//! a scripted [`Reply`] (replaceable at run time with [`Origin::set_handler`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
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
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let body_bytes = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Mutex<Handler>> = Arc::new(Mutex::new(Arc::new(handler)));
        let (r, b, s, h) = (
            requests.clone(),
            body_bytes.clone(),
            seen.clone(),
            handler.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let (r, b, s, h) = (r.clone(), b.clone(), s.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (r, b, s, h) = (r.clone(), b.clone(), s.clone(), h.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|c| c.to_bytes())
                                .unwrap_or_default();
                            let seen = Seen {
                                method: parts.method.to_string(),
                                path_and_query: parts
                                    .uri
                                    .path_and_query()
                                    .map(|p| p.to_string())
                                    .unwrap_or_default(),
                                headers: parts.headers,
                                body,
                            };
                            r.fetch_add(1, Ordering::SeqCst);
                            let handler = h.lock().unwrap().clone();
                            let reply = handler(&seen);
                            s.lock().unwrap().push(seen);
                            if !reply.delay.is_zero() {
                                tokio::time::sleep(reply.delay).await;
                            }
                            b.fetch_add(reply.body.len(), Ordering::SeqCst);
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
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Origin {
            addr,
            requests,
            body_bytes,
            seen,
            handler,
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

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
