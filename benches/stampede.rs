//! Stampede: 200 clients ask for the same uncached 32 KiB JSON at once, from an origin that takes
//! 20 ms. One request reaches the origin; every client's wait is measured and reported against
//! the origin-direct latency of the same run. The target is every waiter answered within origin
//! latency + 5 ms (the fill must not hold waiters while it compresses).
//!
//! Run: `cargo bench --bench stampede` (env CLIENTS=200, ROUNDS=10, DELAY_MS=20, SIZE=32768).
//! Only 127.0.0.1 is used; every server started here is stopped before it returns.

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

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn json(n: usize) -> Bytes {
    let mut s = String::from("{\"items\":[");
    let mut i = 0;
    while s.len() + 80 < n {
        s.push_str(&format!(
            "{{\"id\":\"T-{i:05}\",\"amount\":{}.25,\"label\":\"coffee #{i}\"}},",
            i % 97
        ));
        i += 1;
    }
    s.push_str("{}]}");
    Bytes::from(s)
}

/// An origin answering every path with `body` after `delay`; returns its address and request count.
async fn origin(body: Bytes, delay: Duration) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (body, c) = (body.clone(), c.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| {
                    let (body, c) = (body.clone(), c.clone());
                    async move {
                        c.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(delay).await;
                        let mut r = Response::new(Full::new(body));
                        let h = r.headers_mut();
                        h.insert("content-type", "application/json".parse().unwrap());
                        h.insert("cache-control", "public, max-age=600".parse().unwrap());
                        Ok::<_, Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, count)
}

/// Milliseconds of each of `clients` concurrent GETs of `url` (connections warmed first).
async fn burst(client: &reqwest::Client, url: &str, clients: usize) -> Vec<f64> {
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_string());
            tokio::spawn(async move {
                let r = client
                    .get(&url)
                    .header("accept-encoding", "gzip, br")
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                let _ = r.bytes().await.unwrap();
                start.elapsed().as_secs_f64() * 1e3
            })
        })
        .collect();
    let mut out = Vec::with_capacity(clients);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.sort_by(f64::total_cmp);
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let clients = env("CLIENTS", 200) as usize;
    let rounds = env("ROUNDS", 10) as usize;
    let delay = Duration::from_millis(env("DELAY_MS", 20));
    let size = env("SIZE", 32 * 1024) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (origin_addr, origin_count) = origin(json(size), delay).await;
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[origin]\nurl = \"http://{origin_addr}\"\n"
        );
        let proxy = apicache::start(apicache::Config::parse(&text).unwrap())
            .await
            .unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(clients * 2)
            .build()
            .unwrap();
        let base = format!("http://{}", proxy.addr);
        // Warm one connection per client, and the origin pool, on a key of its own.
        burst(&client, &format!("{base}/warm"), clients).await;

        // Origin directly, one request at a time: the latency a waiter cannot beat.
        let mut direct = Vec::new();
        for _ in 0..rounds.max(5) {
            let t = Instant::now();
            let r = client
                .get(format!("http://{origin_addr}/direct"))
                .send()
                .await
                .unwrap();
            let _ = r.bytes().await.unwrap();
            direct.push(t.elapsed().as_secs_f64() * 1e3);
        }
        direct.sort_by(f64::total_cmp);
        let origin_ms = pct(&direct, 0.5);

        let mut worst_over = f64::MIN;
        println!(
            "stampede: {clients} clients, {size} B JSON, origin delay {} ms, {rounds} rounds",
            delay.as_millis()
        );
        println!(
            "origin direct (median of {}): {origin_ms:.2} ms",
            direct.len()
        );
        println!("round  p50_ms  p99_ms  max_ms  max-origin_ms  origin_requests");
        for round in 0..rounds {
            let before = origin_count.load(Ordering::Relaxed);
            let lat = burst(&client, &format!("{base}/stampede/{round}"), clients).await;
            let fetched = origin_count.load(Ordering::Relaxed) - before;
            let max = lat[lat.len() - 1];
            worst_over = worst_over.max(max - origin_ms);
            println!(
                "{round:>5}  {:>6.2}  {:>6.2}  {max:>6.2}  {:>13.2}  {fetched:>15}",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                max - origin_ms
            );
        }
        println!(
            "worst waiter over origin latency: {worst_over:.2} ms (target <= 5 ms): {}",
            if worst_over <= 5.0 { "met" } else { "NOT met" }
        );
        proxy.shutdown().await;
    });
}
