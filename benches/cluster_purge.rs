//! Purge propagation in a cluster: 3 nodes and a local redis-server (started here, on a free
//! port, persistence off, stopped at the end). For each of PURGES purges (default 1,000), every
//! node holds the object; the purge goes to one node's admin API (round robin), and the time is
//! taken from sending the call until the object is dead on the farthest node. The reference, from
//! the same run: the same purge on a single node without a cluster.
//! Run: `cargo bench --bench cluster_purge` (needs `redis-server` on PATH).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use apicache::cache::{CachedObject, Lookup};
use apicache::{Config, Running};
use http::HeaderMap;

const TOKEN: &str = "0123456789abcdef0123";

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A tiny origin: every path is cacheable for an hour and tagged with its last segment.
async fn origin() -> SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((io, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let tag = req
                        .uri()
                        .path()
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let resp = http::Response::builder()
                        .header("cache-control", "max-age=3600")
                        .header("surrogate-key", tag)
                        .body(http_body_util::Full::new(bytes::Bytes::from_static(
                            b"{\"ok\":true}",
                        )))
                        .unwrap();
                    Ok::<_, std::convert::Infallible>(resp)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(io), svc)
                    .await;
            });
        }
    });
    addr
}

async fn node(origin: SocketAddr, cluster: Option<(&str, &str)>) -> Running {
    let mut text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[origin]\nurl = \"http://{origin}\"\n\
         [admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n"
    );
    if let Some((url, id)) = cluster {
        text += &format!("[cluster]\nredis_url = \"{url}\"\nnode_id = \"{id}\"\n");
    }
    apicache::start(Config::parse(&text).unwrap())
        .await
        .unwrap()
}

/// Fill `path` on `p` and return the stored object.
async fn held(client: &reqwest::Client, p: &Running, path: &str) -> Arc<CachedObject> {
    let r = client
        .get(format!("http://{}{path}", p.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = r.bytes().await;
    let key = apicache::normalize::cache_key(&format!("http://{}", p.addr), path, None);
    match p.proxy.store().lookup(&key, &HeaderMap::new()).await {
        Lookup::Hit(o) => o,
        other => panic!("{path} not stored: {other:?}"),
    }
}

/// Times (ms) from sending each purge until the object is dead on every node of `holders`.
async fn measure(
    client: &reqwest::Client,
    holders: &[&Running],
    purgers: &[&Running],
    n: usize,
    prefix: &str,
) -> (Vec<f64>, Vec<f64>) {
    let mut gone = Vec::with_capacity(n);
    let mut answered = Vec::with_capacity(n);
    for i in 0..n {
        let path = format!("/{prefix}/o{i}");
        let mut objects = Vec::new();
        for h in holders {
            objects.push(held(client, h, &path).await);
        }
        let admin = purgers[i % purgers.len()].admin_addr.unwrap();
        let call = client
            .post(format!("http://{admin}/purge/o{i}"))
            .bearer_auth(TOKEN)
            .send();
        let t0 = Instant::now();
        let call = tokio::spawn(async move {
            let r = call.await.unwrap();
            let status = r.status();
            (status, t0.elapsed())
        });
        // Bounded: a purge that never arrives fails the bench after 10 s.
        while !objects.iter().all(|o| o.is_dead()) {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "purge {i} never arrived"
            );
            tokio::task::yield_now().await;
        }
        gone.push(t0.elapsed().as_secs_f64() * 1e3);
        let (status, took) = call.await.unwrap();
        assert_eq!(status, 200, "purge {i}");
        answered.push(took.as_secs_f64() * 1e3);
    }
    (gone, answered)
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() as f64 * p).ceil() as usize).clamp(1, s.len()) - 1]
}

fn main() {
    let n: usize = std::env::var("PURGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("apicache-bench-redis-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut redis = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on PATH (apt-get install redis-server)");
    let url = format!("redis://127.0.0.1:{port}/0");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let o = origin().await;
        let client = reqwest::Client::new();
        let single = node(o, None).await;
        let (single_gone, single_answer) = measure(&client, &[&single], &[&single], n, "single").await;
        let nodes = [
            node(o, Some((&url, "n1"))).await,
            node(o, Some((&url, "n2"))).await,
            node(o, Some((&url, "n3"))).await,
        ];
        let all: Vec<&Running> = nodes.iter().collect();
        let (gone, answer) = measure(&client, &all, &all, n, "cluster").await;
        println!("{n} purges, object held by every node, time from the purge call until it is dead on the farthest node:");
        println!(
            "  single node (no cluster):   p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            pct(&single_gone, 0.5),
            pct(&single_gone, 0.99),
            pct(&single_gone, 1.0)
        );
        println!(
            "  3 nodes through Redis:      p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms   (target: p99 < 50 ms)",
            pct(&gone, 0.5),
            pct(&gone, 0.99),
            pct(&gone, 1.0)
        );
        println!(
            "  purge answer (200 once every live node confirmed): cluster p50 {:.2} ms p99 {:.2} ms; single p50 {:.2} ms p99 {:.2} ms",
            pct(&answer, 0.5),
            pct(&answer, 0.99),
            pct(&single_answer, 0.5),
            pct(&single_answer, 0.99)
        );
        println!(
            "  ratio cluster/single at p50: {:.1}, at p99: {:.1}",
            pct(&gone, 0.5) / pct(&single_gone, 0.5),
            pct(&gone, 0.99) / pct(&single_gone, 0.99)
        );
        for n in nodes {
            n.shutdown().await;
        }
        single.shutdown().await;
    });
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
