//! API-key traffic (issue 13, item 1): KEYS partner keys each read the same URLS URLs READS times
//! in all, through apicache on one route, in three modes from the same run:
//! - `shared` (RFC 9111 §3.5: a credentialed answer without `public` is never shared),
//! - `per-credential` (one entry per key and URL),
//! - `shared-verified` (one entry per URL, served to keys the origin accepted).
//!
//! Reported: origin requests, the hit ratio, and origin requests per 1,000 reads. The target is
//! `shared-verified` ≈ URLS + KEYS origin requests (each key verified once, each URL filled once).
//! Then the origin revokes one key (answers 401), the clock moves past `verify_ttl`, and the
//! revoked key must be refused.
//!
//! Run: `cargo bench --bench verified_keys` (env KEYS=100, READS=1000, URLS=20, CLIENTS=32).
//! Only 127.0.0.1 is used.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An origin that accepts `api-token k<N>` except the revoked key, and counts requests.
async fn origin(count: Arc<AtomicUsize>, revoked: Arc<AtomicUsize>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (count, revoked) = (count.clone(), revoked.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    count.fetch_add(1, Ordering::Relaxed);
                    let auth = req
                        .headers()
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let gone = format!("api-token k{}", revoked.load(Ordering::Relaxed));
                    let ok = auth.starts_with("api-token k") && auth != gone;
                    let body = format!("{{\"path\":\"{}\",\"price\":12.5}}", req.uri().path());
                    let resp = Response::builder()
                        .status(if ok { 200 } else { 401 })
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

struct Run {
    origin_requests: usize,
    hits: usize,
    reads: usize,
    secs: f64,
}

async fn run(auth: &str, keys: usize, reads: usize, urls: usize, clients: usize) -> Run {
    let count = Arc::new(AtomicUsize::new(0));
    let revoked = Arc::new(AtomicUsize::new(usize::MAX));
    let addr = origin(count.clone(), revoked.clone()).await;
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[origin]\nurl = \"http://{addr}\"\n\
         [[routes]]\npath = \"/products/{{*rest}}\"\nttl = \"1h\"\nauth = \"{auth}\"\n"
    );
    let p = apicache::start(apicache::Config::parse(&toml).unwrap())
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let (hits, next) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let total = keys * reads;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, hits, next, base) = (
            client.clone(),
            hits.clone(),
            next.clone(),
            format!("http://{}", p.addr),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                // Round-robin over keys, each key walking the URLs.
                let (key, read) = (i % keys, i / keys);
                let url = format!("{base}/products/{}?apiKey=k{key}", (key + read) % urls);
                let r = client.get(url).send().await.unwrap();
                assert_eq!(r.status(), 200);
                if r.headers().get("x-cache").is_some_and(|v| v == "HIT") {
                    hits.fetch_add(1, Ordering::Relaxed);
                }
                r.bytes().await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let origin_requests = count.load(Ordering::Relaxed);
    if auth == "shared-verified" {
        // Revoke k0: still served until verify_ttl (5m) passes, refused after.
        revoked.store(0, Ordering::Relaxed);
        let get = |path: &str| client.get(format!("http://{}{path}", p.addr)).send();
        let before = get("/products/0?apiKey=k0").await.unwrap().status();
        p.proxy.clock().advance(Duration::from_secs(301));
        let after = get("/products/0?apiKey=k0").await.unwrap().status();
        let again = get("/products/0?apiKey=k0").await.unwrap();
        println!(
            "revoked key: {before} before verify_ttl, {after} after, then {} ({})",
            again.status(),
            again
                .headers()
                .get("cache-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        );
        assert_eq!(after, 401);
        assert_eq!(again.status(), 401);
    }
    p.shutdown().await;
    Run {
        origin_requests,
        hits: hits.load(Ordering::Relaxed),
        reads: total,
        secs,
    }
}

#[tokio::main]
async fn main() {
    let (keys, reads, urls, clients) = (
        env("KEYS", 100),
        env("READS", 1000),
        env("URLS", 20),
        env("CLIENTS", 32),
    );
    println!("{keys} keys x {reads} reads over {urls} URLs, {clients} concurrent clients");
    println!(
        "{:<16} {:>16} {:>10} {:>16} {:>8}",
        "auth", "origin requests", "hit ratio", "origin / 1000", "secs"
    );
    for auth in ["shared", "per-credential", "shared-verified"] {
        let r = run(auth, keys, reads, urls, clients).await;
        println!(
            "{:<16} {:>16} {:>9.1}% {:>16.2} {:>8.1}",
            auth,
            r.origin_requests,
            100.0 * r.hits as f64 / r.reads as f64,
            1000.0 * r.origin_requests as f64 / r.reads as f64,
            r.secs
        );
    }
    println!(
        "target for shared-verified: about {} origin requests (URLs + keys)",
        urls + keys
    );
}
