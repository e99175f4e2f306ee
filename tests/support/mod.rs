//! Test harness: a real origin on 127.0.0.1:0 that counts requests, and apicache started in-process.
#![allow(dead_code)]

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
    pub fn ok(body: impl Into<Vec<u8>>) -> Self {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }
    pub fn status(mut self, s: u16) -> Self {
        self.status = s;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
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
    pub requests: Arc<AtomicUsize>,
    pub body_bytes: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Mutex<Handler>>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Origin {
        Self::start_on("127.0.0.1:0".parse().unwrap(), handler).await
    }

    pub async fn start_on(
        addr: SocketAddr,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Origin {
        let listener = TcpListener::bind(addr).await.unwrap();
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

    /// Replace the handler (e.g. make the origin start failing).
    pub fn set_handler(&self, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    pub fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
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

    /// Stop listening (existing connections die with their tasks).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start apicache in front of `origin_url`; `extra` is appended TOML (sections after [origin]).
pub async fn proxy(origin_url: &str, extra: &str) -> apicache::Running {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n[origin]\nurl = \"{origin_url}\"\ntimeout = \"1s\"\nconnect_timeout = \"1s\"\n{extra}"
    );
    let cfg = apicache::Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    apicache::start(cfg).await.unwrap()
}

/// A client that does not decompress or follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

pub fn url(p: &apicache::Running, path: &str) -> String {
    format!("http://{}{}", p.addr, path)
}

/// GET and return (status, headers, body).
pub async fn get(p: &apicache::Running, path: &str) -> (u16, HeaderMap, Bytes) {
    get_with(p, path, &[]).await
}

pub async fn get_with(
    p: &apicache::Running,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Bytes) {
    send(p, reqwest::Method::GET, path, headers).await
}

pub async fn head_with(
    p: &apicache::Running,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Bytes) {
    send(p, reqwest::Method::HEAD, path, headers).await
}

/// Send `method path` with `headers` to the public port; return (status, headers, body).
pub async fn send(
    p: &apicache::Running,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, Bytes) {
    let mut rb = client().request(method, url(p, path));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    (status, h, body)
}

pub fn xcache(h: &HeaderMap) -> &str {
    h.get("x-cache").map(|v| v.to_str().unwrap()).unwrap_or("")
}

/// A JSON body of about `n` bytes.
pub fn json_body(n: usize, seed: &str) -> Vec<u8> {
    let mut s = format!("{{\"seed\":\"{seed}\",\"items\":[");
    let mut i = 0;
    while s.len() + 40 < n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!("{{\"id\":{i},\"name\":\"item-{i}\"}}"));
        i += 1;
    }
    s.push_str("]}");
    s.into_bytes()
}

/// Counts by path (for tests that need per-URL numbers).
pub fn counts(origin: &Origin) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for s in origin.seen.lock().unwrap().iter() {
        *m.entry(s.path_and_query.clone()).or_insert(0) += 1;
    }
    m
}
