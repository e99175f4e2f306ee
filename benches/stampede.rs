//! Stampede: 200 clients ask for the same uncached 32 KiB JSON at once, from an origin that takes
//! 20 ms. One request reaches the origin; every client's wait is measured and reported against
//! the origin-direct latency of the same run. The target is every waiter answered within origin
//! latency + 5 ms (the fill must not hold waiters while it compresses).
//!
//! Each client has its own pre-opened keep-alive connection and each request is timed from its
//! own send, so connection setup and client-side dispatch are not counted against the proxy.
//!
//! Run: `cargo bench --bench stampede` (env CLIENTS=200, ROUNDS=10, DELAY_MS=20, SIZE=32768;
//! EXTRA_TOML appends config sections, `\n` for newlines).
//! As in load.sh, the origin and apicache run in a child process pinned to CPU 0 and the clients in
//! this one on CPU 1 (with `taskset`; unpinned without it). Proxy-side times come from the access
//! log's `total_us`: request arrival to answer, without the client's share of the machine;
//! `fill_ms` is the longest time a request spent in the fill (the leader's origin round trip).
//!
//! Only 127.0.0.1 is used; the server process ends when this one closes its stdin.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// `total_us` of every access-log event: how long the proxy took to answer each request, from
/// its arrival to its response head, without the client's share of the machine.
static SERVER_US: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// Longest `origin_ms` (time spent in the fill, leader or waiter) since the last report.
static MAX_ORIGIN_MS: Mutex<i64> = Mutex::new(-1);

struct AccessTimes;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AccessTimes {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct TotalUs(Option<u64>, i64);
        impl tracing::field::Visit for TotalUs {
            fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
                if f.name() == "total_us" {
                    self.0 = Some(v);
                }
            }
            fn record_i64(&mut self, f: &tracing::field::Field, v: i64) {
                if f.name() == "origin_ms" {
                    self.1 = v;
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        if event.metadata().target() == "apicache::access" {
            let mut v = TotalUs(None, -1);
            event.record(&mut v);
            if let Some(us) = v.0 {
                SERVER_US.lock().unwrap().push(us);
                let mut m = MAX_ORIGIN_MS.lock().unwrap();
                *m = (*m).max(v.1);
            }
        }
    }
}

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

/// One client: its own keep-alive HTTP/1.1 connection, opened before the stampede so that
/// connection setup is not measured.
type Conn = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Conn {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

/// GET `path` on `conn`, reading the whole body; returns the milliseconds from this request's
/// own send to its last byte.
async fn get(conn: &mut Conn, authority: &str, path: &str) -> f64 {
    conn.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", authority)
        .header("accept-encoding", "gzip, br")
        .body(Empty::new())
        .unwrap();
    let t = Instant::now();
    let resp = conn.send_request(req).await.unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    let _ = resp.into_body().collect().await.unwrap();
    t.elapsed().as_secs_f64() * 1e3
}

/// Every connection GETs `path` at once; each request's own latency, sorted.
async fn burst(conns: &mut Vec<Conn>, authority: &str, path: &str) -> Vec<f64> {
    let tasks: Vec<_> = conns
        .drain(..)
        .map(|mut c| {
            let (authority, path) = (authority.to_string(), path.to_string());
            tokio::spawn(async move {
                let ms = get(&mut c, &authority, &path).await;
                (c, ms)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (c, ms) = t.await.unwrap();
        conns.push(c);
        out.push(ms);
    }
    out.sort_by(f64::total_cmp);
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The server role: the origin and apicache, in a process of their own. It prints
/// `ready <proxy> <origin>`, then answers each `stats` line on stdin with the proxy-side answer
/// times (µs) and origin request count since the last one, and stops at end of input.
fn serve(delay: Duration, size: usize) {
    use tracing_subscriber::layer::SubscriberExt;
    let only_access = tracing_subscriber::filter::Targets::new()
        .with_target("apicache::access", tracing::Level::INFO);
    let subscriber = tracing_subscriber::registry().with(tracing_subscriber::Layer::with_filter(
        AccessTimes,
        only_access,
    ));
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (origin_addr, origin_count) = origin(json(size), delay).await;
        let extra = std::env::var("EXTRA_TOML")
            .unwrap_or_default()
            .replace("\\n", "\n");
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[origin]\nurl = \"http://{origin_addr}\"\n{extra}\n"
        );
        let proxy = apicache::start(apicache::Config::parse(&text).unwrap())
            .await
            .unwrap();
        println!("ready {} {origin_addr}", proxy.addr);
        // Between rounds the proxy finishes its background work (the last round's encodings),
        // so each stampede starts on a quiet server.
        let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
        let mut seen = 0;
        while let Ok(Some(line)) = lines.next_line().await {
            if line.trim() != "stats" {
                break;
            }
            proxy.settle().await;
            let times: Vec<String> = std::mem::take(&mut *SERVER_US.lock().unwrap())
                .iter()
                .map(u64::to_string)
                .collect();
            let count = origin_count.load(Ordering::Relaxed);
            let fill_ms = std::mem::replace(&mut *MAX_ORIGIN_MS.lock().unwrap(), -1);
            println!("{} {fill_ms} {}", count - seen, times.join(" "));
            seen = count;
        }
        proxy.shutdown().await;
    });
}

/// Pin this process (and the threads it starts later) to `cpu`, if `taskset` is there.
fn pin_self(cpu: u32) -> bool {
    std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &cpu.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn main() {
    let clients = env("CLIENTS", 200) as usize;
    let rounds = env("ROUNDS", 10) as usize;
    let delay = Duration::from_millis(env("DELAY_MS", 20));
    let size = env("SIZE", 32 * 1024) as usize;
    if std::env::args().any(|a| a == "--serve") {
        return serve(delay, size);
    }
    // As load.sh: the servers on CPU 0, the load generator on CPU 1, in separate processes.
    use std::io::{BufRead, BufReader, Write};
    let exe = std::env::current_exe().unwrap();
    let pinned = pin_self(1);
    let mut cmd = if pinned {
        let mut c = std::process::Command::new("taskset");
        c.arg("-c").arg("0").arg(&exe);
        c
    } else {
        std::process::Command::new(&exe)
    };
    let mut child = cmd
        .arg("--serve")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server process");
    let mut to_server = child.stdin.take().unwrap();
    let mut from_server = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = from_server.next().unwrap().unwrap();
    let mut words = ready.split_whitespace().skip(1);
    let proxy_addr: std::net::SocketAddr = words.next().unwrap().parse().unwrap();
    let origin_addr: std::net::SocketAddr = words.next().unwrap().parse().unwrap();
    // (origin requests, longest time in the fill, proxy-side answer times) since the last call.
    let mut server_stats = move || -> (usize, i64, Vec<f64>) {
        writeln!(to_server, "stats").unwrap();
        let line = from_server.next().unwrap().unwrap();
        let mut it = line.split_whitespace();
        let fetched = it.next().unwrap().parse().unwrap();
        let fill_ms = it.next().unwrap().parse().unwrap();
        let mut ms: Vec<f64> = it.map(|us| us.parse::<f64>().unwrap() / 1e3).collect();
        ms.sort_by(f64::total_cmp);
        (fetched, fill_ms, ms)
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let authority = proxy_addr.to_string();
        let mut conns = Vec::with_capacity(clients);
        for _ in 0..clients {
            conns.push(connect(proxy_addr).await);
        }
        // Warm every connection, and the proxy's origin pool, on a key of its own.
        burst(&mut conns, &authority, "/warm").await;

        // Origin directly, one request at a time: the latency a waiter cannot beat.
        let mut origin_conn = connect(origin_addr).await;
        let mut direct = Vec::new();
        for _ in 0..rounds.max(5) {
            direct.push(get(&mut origin_conn, &origin_addr.to_string(), "/direct").await);
        }
        direct.sort_by(f64::total_cmp);
        let origin_ms = pct(&direct, 0.5);
        let _ = server_stats();

        println!(
            "stampede: {clients} clients, {size} B JSON, origin delay {} ms, {rounds} rounds, {}",
            delay.as_millis(),
            if pinned { "server on CPU 0, client on CPU 1" } else { "unpinned (no taskset)" }
        );
        println!("origin direct (median of {}): {origin_ms:.2} ms", direct.len());
        println!("         client-side (own send to last byte)    proxy-side (arrival to answer)");
        println!("round  p50_ms  p99_ms  max_ms  max-origin_ms  p50_ms  max_ms  max-origin_ms  fill_ms  origin_requests");
        let (mut worst_client, mut worst_server, mut met) = (f64::MIN, f64::MIN, 0);
        for round in 0..rounds {
            let lat = burst(&mut conns, &authority, &format!("/stampede/{round}")).await;
            let (fetched, fill_ms, server) = server_stats();
            let max = lat[lat.len() - 1];
            let smax = server.last().copied().unwrap_or(f64::NAN);
            worst_client = worst_client.max(max - origin_ms);
            worst_server = worst_server.max(smax - origin_ms);
            met += usize::from(smax - origin_ms <= 5.0);
            println!(
                "{round:>5}  {:>6.2}  {:>6.2}  {max:>6.2}  {:>13.2}  {:>6.2}  {smax:>6.2}  {:>13.2}  {fill_ms:>7}  {fetched:>15}",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                max - origin_ms,
                pct(&server, 0.5),
                smax - origin_ms,
            );
        }
        println!(
            "proxy-side: last waiter within origin + 5 ms in {met} of {rounds} rounds; worst round + {worst_server:.2} ms"
        );
        println!("client-side: worst last waiter over origin latency + {worst_client:.2} ms");
    });
    let _ = child.wait();
}
