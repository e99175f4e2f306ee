//! Memory under attacker-chosen sizes: is the proxy's resident memory bounded by
//! `1.3 × cache.max_size + 32 MiB` in each workload of the "memory bounded by bytes" issue?
//!
//! | id | workload |
//! |----|----------|
//! | 1  | 100,000 distinct cacheable URLs, each tagged with 50 distinct surrogate keys, small bodies |
//! | 2d | 10,000 distinct cacheable 30 KB URLs, default `server.max_uri_length` (expect 414s) |
//! | 2  | the same with `max_uri_length = "64KiB"`, `max_header_size = "128KiB"` (accepted, cached) |
//! | 3  | 10,000 requests to one cacheable `Vary: User-Agent` URL, each a distinct 30 KB User-Agent (the default `max_header_size`, 64 KiB, accepts them) |
//! | 4d | 10,000 distinct 30 KB URLs answered `no-store`, default `max_uri_length` (expect 414s) |
//! | 4  | the same, accepted: every answer marks a hit-for-pass key |
//! | 5  | 200 concurrent cold fills of 200 distinct 4 MiB cacheable JSON bodies (Content-Length), headers delayed 200 ms so they overlap |
//! | 5c | the same, bodies chunked (no Content-Length) |
//! | 6  | one 1 GiB gzip bomb (~1 MiB of gzip, `no-store`) to a client with `Accept-Encoding: identity`, read to the end at full speed |
//! | 6s | the same bomb read by a slow client (4 MiB/s for 5 s, then it hangs up) |
//!
//! Each workload gets a fresh release `apicache --config` child process (so the RSS is the
//! proxy's alone, and VmHWM is the workload's own peak) in front of an origin in this process.
//! Max size 32 MiB, except 5 and 5c: 64 MiB with `max_object_size = "8MiB"` (fill budget
//! 16 MiB). After the workload the bench waits `SETTLE_MS`, reads `/stats` (which runs moka's
//! pending evictions), then reads VmRSS and VmHWM from `/proc/<pid>/status`; then it purges
//! everything and reads VmRSS again after `SETTLE_MS` ("purged": settled minus purged is what
//! the cache's entries held, to compare with `stats.bytes`).
//! Verdict: `PASS` when VmRSS and VmHWM are both within the bound, `OVER(peak)` when only the
//! peak is over, `OVER` when VmRSS after the workload is over. It never exits non-zero because
//! of a number, only when setup fails.
//!
//! Run: `cargo build --release && cargo bench --bench memory_attacks`
//! (or `MODE=attacks benches/memory.sh`).
//! Env: `BIN` (the apicache binary; default the one cargo built next to this bench),
//! `WORKLOADS` (comma-separated ids, default all), `CONCURRENCY` (32), `SETTLE_MS` (3000),
//! `KEY_OBJECTS` (100000), `KEYS_PER_OBJECT` (50), `URLS` (10000), `URL_LEN` (30000),
//! `UAS` (10000), `UA_LEN` (30000), `NOSTORE` (10000), `FILLS` (200), `FILL_SIZE` (4194304),
//! `FILL_DELAY_MS` (200), `BOMB_SIZE` (1073741824), `SLOW_RATE` (bytes/s, 4194304),
//! `SLOW_SECS` (5), `CLIENT_IDLE` (idle keep-alive connections the client keeps, 256),
//! `FILL_TYPE` (Content-Type of the fill bodies, `application/json`),
//! `EXTRA_TOML` (sections appended to every config, `\n` for newlines, e.g.
//! `[compression]\nenabled = false`), `KEEP_TMP=1` (keep configs and the proxy's logs).
//!
//! Only 127.0.0.1 is used; every request has a timeout; the proxy child is killed when its
//! workload ends (and on panic, by `Drop`).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const MIB: f64 = 1024.0 * 1024.0;
const TOKEN: &str = "memory-attacks-bench-token";

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Workload sizes, from the environment.
struct Sizes {
    concurrency: usize,
    settle: Duration,
    key_objects: usize,
    keys_per_object: usize,
    urls: usize,
    url_len: usize,
    uas: usize,
    ua_len: usize,
    nostore: usize,
    fills: usize,
    fill_size: usize,
    fill_delay: Duration,
    bomb_size: u64,
    slow_rate: u64,
    slow_secs: u64,
}

impl Sizes {
    fn from_env() -> Self {
        Self {
            concurrency: env("CONCURRENCY", 32).max(1) as usize,
            settle: Duration::from_millis(env("SETTLE_MS", 3000)),
            key_objects: env("KEY_OBJECTS", 100_000) as usize,
            keys_per_object: env("KEYS_PER_OBJECT", 50) as usize,
            urls: env("URLS", 10_000) as usize,
            url_len: env("URL_LEN", 30_000) as usize,
            uas: env("UAS", 10_000) as usize,
            ua_len: env("UA_LEN", 30_000) as usize,
            nostore: env("NOSTORE", 10_000) as usize,
            fills: env("FILLS", 200).max(1) as usize,
            fill_size: env("FILL_SIZE", 4 << 20) as usize,
            fill_delay: Duration::from_millis(env("FILL_DELAY_MS", 200)),
            bomb_size: env("BOMB_SIZE", 1 << 30),
            slow_rate: env("SLOW_RATE", 4 << 20).max(1),
            slow_secs: env("SLOW_SECS", 5),
        }
    }
}

// ------------------------------------------------------------------------------------ origin

/// What the origin serves, built once.
struct OriginData {
    keys_per_object: usize,
    fill_body: Bytes,
    /// Content-Type of the fill bodies (`FILL_TYPE`).
    fill_type: String,
    fill_delay: Duration,
    /// `bomb_size` zeros, gzip level 9; built only when a bomb workload runs.
    bomb: OnceLock<Bytes>,
    requests: AtomicU64,
}

type OriginBody = BoxBody<Bytes, Infallible>;

fn full(b: impl Into<Bytes>) -> OriginBody {
    Full::new(b.into()).boxed()
}

/// A JSON body of exactly `n` bytes (compressible, like an API's).
fn json_body(n: usize) -> Bytes {
    let mut s = String::with_capacity(n + 128);
    s.push_str("{\"items\":[");
    let mut i = 0u64;
    while s.len() + 80 < n {
        s.push_str(&format!(
            "{{\"id\":\"T-{i:07}\",\"amount\":{}.25,\"label\":\"coffee #{}\"}},",
            i % 97,
            i.wrapping_mul(2_654_435_761) % 100_000
        ));
        i += 1;
    }
    s.push_str("{}]}");
    while s.len() < n {
        s.push(' ');
    }
    Bytes::from(s)
}

fn gzip_bomb(size: u64) -> Bytes {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        enc.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    Bytes::from(enc.finish().unwrap())
}

/// Routes: `/sk/N` (cacheable, N's surrogate keys), `/long/…` (cacheable), `/vary` (cacheable,
/// `Vary: User-Agent`), `/nostore/…` (`no-store`), `/big/N` and `/bigc/N` (the fill body after
/// the fill delay, with Content-Length / chunked), `/bomb` (the gzip bomb, `no-store`).
async fn origin_answer(data: Arc<OriginData>, req: Request<Incoming>) -> Response<OriginBody> {
    data.requests.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_string();
    let small = "{\"ok\":true}";
    let mut r = Response::new(full(small));
    let h = r.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("cache-control", "public, max-age=3600".parse().unwrap());
    if let Some(n) = path.strip_prefix("/sk/") {
        // 50 distinct keys per object, 15-16 bytes each: "o0012345-k07".
        let keys: Vec<String> = (0..data.keys_per_object)
            .map(|j| format!("o{n:0>7}-k{j:02}"))
            .collect();
        h.insert("surrogate-key", keys.join(" ").parse().unwrap());
    } else if path == "/vary" {
        h.insert("vary", "User-Agent".parse().unwrap());
    } else if path.starts_with("/nostore/") {
        h.insert("cache-control", "no-store".parse().unwrap());
    } else if path.starts_with("/big/") || path.starts_with("/bigc/") {
        tokio::time::sleep(data.fill_delay).await;
        let body = data.fill_body.clone();
        h.insert("content-type", data.fill_type.parse().unwrap());
        *r.body_mut() = if path.starts_with("/bigc/") {
            let chunks: Vec<Result<Frame<Bytes>, Infallible>> = (0..body.len())
                .step_by(64 * 1024)
                .map(|i| Ok(Frame::data(body.slice(i..(i + 64 * 1024).min(body.len())))))
                .collect();
            StreamBody::new(futures_util::stream::iter(chunks)).boxed()
        } else {
            full(body)
        };
    } else if path == "/bomb" {
        let bomb = data.bomb.get().cloned().unwrap_or_default();
        h.insert("cache-control", "no-store".parse().unwrap());
        h.insert("content-encoding", "gzip".parse().unwrap());
        *r.body_mut() = full(bomb);
    } else if !path.starts_with("/long/") {
        *r.status_mut() = http::StatusCode::NOT_FOUND;
    }
    r
}

async fn start_origin(data: Arc<OriginData>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let data = data.clone();
                    async move { Ok::<_, Infallible>(origin_answer(data, req).await) }
                });
                let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                b.http1().max_buf_size(256 * 1024);
                let _ = b.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    addr
}

// ------------------------------------------------------------------------------------- proxy

/// The release binary: `BIN`, else the one cargo built with this bench.
fn binary() -> PathBuf {
    if let Ok(b) = std::env::var("BIN") {
        return PathBuf::from(b);
    }
    PathBuf::from(env!("CARGO_BIN_EXE_apicache"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| setup_failure(&format!("no free port: {e}")))
}

fn setup_failure(msg: &str) -> ! {
    eprintln!("memory_attacks: setup failure: {msg}");
    std::process::exit(1);
}

/// A running `apicache --config` child; killed when dropped.
struct ProxyProcess {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
    stderr: PathBuf,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ProxyProcess {
    async fn start(
        dir: &Path,
        id: &str,
        origin: SocketAddr,
        max_size_mib: u64,
        extra: &Extra,
    ) -> Self {
        let (port, admin_port) = (free_port(), free_port());
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{}\n\
             [origin]\nurl = \"http://{origin}\"\ntimeout = \"60s\"\nbody_timeout = \"60s\"\n\n\
             [cache]\nmax_size = \"{max_size_mib}MiB\"\n{}\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{TOKEN}\"\n\n{}\n",
            extra.server,
            extra.cache,
            std::env::var("EXTRA_TOML")
                .unwrap_or_default()
                .replace("\\n", "\n")
        );
        let config = dir.join(format!("apicache-{id}.toml"));
        std::fs::write(&config, text)
            .unwrap_or_else(|e| setup_failure(&format!("{config:?}: {e}")));
        let stderr = dir.join(format!("proxy-{id}.err"));
        let bin = binary();
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                setup_failure(&format!(
                    "cannot run {bin:?}: {e} (cargo build --release, or set BIN)"
                ))
            });
        let mut p = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            stderr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                let err = std::fs::read_to_string(&p.stderr).unwrap_or_default();
                setup_failure(&format!("apicache exited at start ({status}): {err}"));
            }
            let up = tokio::net::TcpStream::connect(p.addr).await.is_ok()
                && tokio::net::TcpStream::connect(p.admin).await.is_ok();
            if up {
                return p;
            }
            if Instant::now() > deadline {
                drop(p); // process::exit skips destructors: stop the child first
                setup_failure("apicache did not start listening within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (VmRSS, VmHWM) in bytes.
    fn memory(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    async fn purge_all(&self, client: &reqwest::Client) {
        let _ = client
            .post(format!("http://{}/purge-all", self.admin))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
    }

    async fn stats(&self, client: &reqwest::Client) -> serde_json::Value {
        let r = client
            .get(format!("http://{}/stats", self.admin))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        match r {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        }
    }
}

/// Config lines added to `[server]` and `[cache]`.
#[derive(Default)]
struct Extra {
    server: String,
    cache: String,
}

// ------------------------------------------------------------------------------------ client

/// What the client saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    first_error: Option<String>,
    received: u64,
}

impl Tally {
    fn add(&mut self, r: Result<(u16, u64), String>) {
        self.sent += 1;
        match r {
            Ok((status, bytes)) => {
                *self.statuses.entry(status).or_default() += 1;
                self.received += bytes;
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }

    fn statuses(&self) -> String {
        let mut s: Vec<String> = self
            .statuses
            .iter()
            .map(|(k, v)| format!("{v}×{k}"))
            .collect();
        if self.errors > 0 {
            s.push(format!("{}×err", self.errors));
        }
        s.join(" ")
    }
}

/// GET and read the body to the end; (status, body bytes).
async fn fetch(req: reqwest::RequestBuilder) -> Result<(u16, u64), String> {
    let mut resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let mut n = 0u64;
    while let Some(c) = resp.chunk().await.map_err(|e| format!("{e:?}"))? {
        n += c.len() as u64;
    }
    Ok((status, n))
}

/// `n` requests, `concurrency` at a time; `make(i)` builds request `i`.
async fn drive<F>(n: usize, concurrency: usize, make: F) -> Tally
where
    F: Fn(usize) -> reqwest::RequestBuilder,
{
    let mut tally = Tally::default();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        while tasks.len() >= concurrency {
            if let Some(r) = tasks.join_next().await {
                tally.add(r.unwrap_or_else(|e| Err(e.to_string())));
            }
        }
        tasks.spawn(fetch(make(i)));
    }
    while let Some(r) = tasks.join_next().await {
        tally.add(r.unwrap_or_else(|e| Err(e.to_string())));
    }
    tally
}

/// Read the bomb at about `rate` bytes/s for `secs` seconds, then hang up.
async fn slow_read(
    req: reqwest::RequestBuilder,
    rate: u64,
    secs: u64,
) -> Result<(u16, u64), String> {
    let mut resp = req.send().await.map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < Duration::from_secs(secs) {
        match resp.chunk().await.map_err(|e| format!("{e:?}"))? {
            Some(c) => n += c.len() as u64,
            None => break,
        }
        let due = Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(t0.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    Ok((status, n))
}

// --------------------------------------------------------------------------------- workloads

struct Workload {
    id: &'static str,
    what: &'static str,
    max_size_mib: u64,
    extra: Extra,
}

fn workloads() -> Vec<Workload> {
    let long_uris = || Extra {
        server: "max_uri_length = \"64KiB\"\nmax_header_size = \"128KiB\"\n".into(),
        cache: String::new(),
    };
    let fills = || Extra {
        server: String::new(),
        cache: "max_object_size = \"8MiB\"\n".into(),
    };
    vec![
        Workload {
            id: "1",
            what: "surrogate keys ×50 per object",
            max_size_mib: 32,
            extra: Extra::default(),
        },
        Workload {
            id: "2d",
            what: "30 KB URLs, default max_uri_length",
            max_size_mib: 32,
            extra: Extra::default(),
        },
        Workload {
            id: "2",
            what: "30 KB URLs, max_uri_length 64KiB",
            max_size_mib: 32,
            extra: long_uris(),
        },
        Workload {
            id: "3",
            what: "30 KB User-Agents, Vary: User-Agent",
            max_size_mib: 32,
            extra: Extra::default(),
        },
        Workload {
            id: "4d",
            what: "30 KB no-store URLs, default max_uri_length",
            max_size_mib: 32,
            extra: Extra::default(),
        },
        Workload {
            id: "4",
            what: "30 KB no-store URLs (hit-for-pass), 64KiB",
            max_size_mib: 32,
            extra: long_uris(),
        },
        Workload {
            id: "5",
            what: "concurrent 4 MiB cold fills (Content-Length)",
            max_size_mib: 64,
            extra: fills(),
        },
        Workload {
            id: "5c",
            what: "concurrent 4 MiB cold fills (chunked)",
            max_size_mib: 64,
            extra: fills(),
        },
        Workload {
            id: "6",
            what: "1 GiB gzip bomb, identity client, full speed",
            max_size_mib: 32,
            extra: Extra::default(),
        },
        Workload {
            id: "6s",
            what: "1 GiB gzip bomb, identity client, slow reader",
            max_size_mib: 32,
            extra: Extra::default(),
        },
    ]
}

/// Send workload `id`'s requests through the proxy at `base`.
async fn run_workload(id: &str, base: &str, client: &reqwest::Client, s: &Sizes) -> Tally {
    let c = s.concurrency;
    let get = |path: String| client.get(format!("{base}{path}"));
    match id {
        "1" => drive(s.key_objects, c, |i| get(format!("/sk/{i}"))).await,
        "2" | "2d" => {
            let pad = "x".repeat(s.url_len.saturating_sub(16));
            drive(s.urls, c, |i| get(format!("/long/{i:08}/{pad}"))).await
        }
        "3" => {
            let pad = "u".repeat(s.ua_len.saturating_sub(16));
            drive(s.uas, c, |i| {
                get("/vary".into()).header("user-agent", format!("Bot/{i:08}-{pad}"))
            })
            .await
        }
        "4" | "4d" => {
            let pad = "x".repeat(s.url_len.saturating_sub(16));
            drive(s.nostore, c, |i| get(format!("/nostore/{i:08}/{pad}"))).await
        }
        "5" => drive(s.fills, s.fills, |i| get(format!("/big/{i}"))).await,
        "5c" => drive(s.fills, s.fills, |i| get(format!("/bigc/{i}"))).await,
        "6" => {
            drive(1, 1, |_| {
                get("/bomb".into()).header("accept-encoding", "identity")
            })
            .await
        }
        "6s" => {
            let mut t = Tally::default();
            let req = get("/bomb".into()).header("accept-encoding", "identity");
            t.add(slow_read(req, s.slow_rate, s.slow_secs).await);
            t
        }
        _ => unreachable!(),
    }
}

/// Run workload `w` against a fresh proxy: its table row and notes.
async fn measure(
    w: &Workload,
    origin: SocketAddr,
    data: &OriginData,
    client: &reqwest::Client,
    s: &Sizes,
    dir: &Path,
) -> (String, Vec<String>) {
    let mut notes = Vec::new();
    let mut proxy = ProxyProcess::start(dir, w.id, origin, w.max_size_mib, &w.extra).await;
    let (idle_rss, _) = proxy.memory();
    let before = data.requests.load(Ordering::Relaxed);
    eprintln!(
        "== workload {}: {} (apicache pid {}, max_size {} MiB)",
        w.id,
        w.what,
        proxy.pid(),
        w.max_size_mib
    );
    let t = Instant::now();
    let tally = run_workload(w.id, &format!("http://{}", proxy.addr), client, s).await;
    let secs = t.elapsed().as_secs_f64();
    let (rss_end, _) = proxy.memory();
    tokio::time::sleep(s.settle).await;
    let stats = proxy.stats(client).await;
    let (rss, hwm) = proxy.memory();
    // What the cache's entries held: the RSS they leave behind when purged.
    // (moka removes invalidated entries on its pending tasks, which /stats runs.)
    proxy.purge_all(client).await;
    let _ = proxy.stats(client).await;
    tokio::time::sleep(s.settle).await;
    let _ = proxy.stats(client).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_purged, _) = proxy.memory();
    let origin_requests = data.requests.load(Ordering::Relaxed) - before;
    let bound = (1.3 * w.max_size_mib as f64 * MIB) as u64 + (32 << 20);
    let verdict = if rss > bound {
        "OVER"
    } else if hwm > bound {
        "OVER(peak)"
    } else {
        "PASS"
    };
    let num = |k: &str| stats.get(k).and_then(serde_json::Value::as_u64);
    let n = |k: &str| num(k).map_or("?".into(), |v| v.to_string());
    let cells = [
        w.id.to_string(),
        w.what.to_string(),
        format!("{} MiB", w.max_size_mib),
        tally.sent.to_string(),
        tally.statuses(),
        mib(tally.received),
        origin_requests.to_string(),
        n("objects"),
        mib(num("bytes").unwrap_or(0)),
        format!("{}/{}/{}", n("hits"), n("misses"), n("passes")),
        mib(idle_rss),
        mib(rss_end),
        mib(rss),
        mib(rss_purged),
        mib(hwm),
        mib(bound),
        verdict.to_string(),
    ];
    let row = format!("| {} |", cells.join(" | "));
    eprintln!("   {secs:.1} s; {row}");
    if let Some(e) = &tally.first_error {
        let e: String = e.chars().take(300).collect();
        notes.push(format!(
            "{}: {} client errors, first: {e}",
            w.id, tally.errors
        ));
    }
    if !proxy.alive() {
        notes.push(format!("{}: the proxy process died", w.id));
    }
    let err = std::fs::read_to_string(&proxy.stderr).unwrap_or_default();
    if !err.trim().is_empty() {
        let first: String = err.lines().take(3).collect::<Vec<_>>().join(" | ");
        notes.push(format!(
            "{}: proxy stderr (RUST_LOG=warn), {} lines, first: {}",
            w.id,
            err.lines().count(),
            first.chars().take(400).collect::<String>()
        ));
    }
    (row, notes)
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / MIB)
}

fn main() {
    let s = Sizes::from_env();
    let all = workloads();
    let chosen: Vec<&Workload> = match std::env::var("WORKLOADS") {
        Ok(w) if !w.trim().is_empty() && w.trim() != "all" => {
            let ids: Vec<&str> = w.split(',').map(str::trim).collect();
            for id in &ids {
                if !all.iter().any(|x| x.id == *id) {
                    setup_failure(&format!(
                        "unknown workload {id:?}; ids: 1,2d,2,3,4d,4,5,5c,6,6s"
                    ));
                }
            }
            all.iter().filter(|x| ids.contains(&x.id)).collect()
        }
        _ => all.iter().collect(),
    };
    let bin = binary();
    if !bin.is_file() {
        setup_failure(&format!(
            "{bin:?} missing: cargo build --release, or set BIN"
        ));
    }
    let dir = std::env::temp_dir().join(format!("apicache-memattacks.{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| setup_failure(&format!("{dir:?}: {e}")));

    let data = Arc::new(OriginData {
        keys_per_object: s.keys_per_object,
        fill_body: json_body(s.fill_size),
        fill_type: std::env::var("FILL_TYPE").unwrap_or_else(|_| "application/json".into()),
        fill_delay: s.fill_delay,
        bomb: OnceLock::new(),
        requests: AtomicU64::new(0),
    });
    if chosen.iter().any(|w| w.id.starts_with('6')) {
        let t = Instant::now();
        let bomb = gzip_bomb(s.bomb_size);
        eprintln!(
            "== gzip bomb: {} MiB of zeros -> {} bytes of gzip (level 9) in {:.1} s",
            mib(s.bomb_size),
            bomb.len(),
            t.elapsed().as_secs_f64()
        );
        let _ = data.bomb.set(bomb);
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    rt.block_on(async {
        let origin = start_origin(data.clone()).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(env("CLIENT_IDLE", 256) as usize)
            .build()
            .unwrap();
        for w in &chosen {
            let (row, mut n) = measure(w, origin, &data, &client, &s, &dir).await;
            rows.push(row);
            notes.append(&mut n);
        }
    });

    println!();
    println!(
        "apicache memory under attack-sized inputs ({}; concurrency {}, settle {} ms; 127.0.0.1)",
        bin.display(),
        s.concurrency,
        s.settle.as_millis()
    );
    println!("bound = 1.3 × max_size + 32 MiB; verdict on VmRSS after the workload and on the peak VmHWM");
    println!();
    println!("| id | workload | max_size | requests | answers | received MiB | origin requests | objects | stats.bytes MiB | hits/misses/passes | VmRSS idle MiB | VmRSS at end MiB | VmRSS settled MiB | VmRSS purged MiB | VmHWM MiB | bound MiB | verdict |");
    println!("|----|----------|----------|----------|---------|--------------|-----------------|---------|-----------------|--------------------|----------------|------------------|-------------------|------------------|-----------|-----------|---------|");
    for r in &rows {
        println!("{r}");
    }
    if notes.is_empty() {
        println!("\nnotes: none");
    } else {
        println!("\nnotes:");
        for n in &notes {
            println!("  - {n}");
        }
    }
    if std::env::var("KEEP_TMP").as_deref() == Ok("1") {
        eprintln!("kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}
