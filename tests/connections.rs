//! Connection lifecycle on the public listener: the header-read deadline counted from accept,
//! idle HTTP/2 connections, eviction of idle connections at `max_connections`, and the drain on
//! shutdown (in-process and the real binary on SIGINT).

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The client preface of HTTP/2 with prior knowledge.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Generous bound for anything that should take well under a second.
const BOUND: Duration = Duration::from_secs(5);

/// Read until the peer closes (EOF or reset) and return what arrived; panics after `BOUND`.
async fn read_until_closed(s: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    timeout(BOUND, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server closed the connection in time");
    got
}

/// One HTTP/1.1 response read off `s`: the head (lowercased) and the body (Content-Length only).
async fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = timeout(BOUND, async {
        loop {
            if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                return i + 4;
            }
            let n = s.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before a response head: {}", text(&data));
            data.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("response head in time");
    let head = String::from_utf8_lossy(&data[..head_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().expect("numeric content-length"))
        .unwrap_or(0);
    let mut body = data[head_end..].to_vec();
    timeout(BOUND, async {
        while body.len() < len {
            let n = s.read(&mut buf).await.expect("read body");
            assert!(n > 0, "closed mid-body");
            body.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("response body in time");
    (head, body)
}

/// `GET path` as HTTP/1.1 keep-alive.
fn get_line(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").into_bytes()
}

/// An origin whose `/slow*` paths answer after `delay`; every answer is uncacheable.
async fn slow_origin(delay: Duration) -> Origin {
    Origin::start(move |s| {
        let r = Reply::ok(format!("{{\"path\":\"{}\"}}", s.path_and_query))
            .header("cache-control", "no-store");
        if s.path_and_query.starts_with("/slow") {
            r.delay(delay)
        } else {
            r
        }
    })
    .await
}

/// Wait (bounded) until the origin has seen `n` requests.
async fn origin_saw(origin: &Origin, n: usize) {
    timeout(BOUND, async {
        while origin.count() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the request reached the origin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_after_header_read_timeout() {
    let origin = cacheable_origin().await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.header_read_timeout = Duration::from_millis(300))
        .start()
        .await;
    // Nothing at all, half an h2 preface (auto-detection still undecided), a whole preface and
    // no request, half an HTTP/1.1 head: each is closed about header_read_timeout after accept.
    let openings: [&[u8]; 4] = [
        b"",
        &H2_PREFACE[..16],
        H2_PREFACE,
        b"GET /a HTTP/1.1\r\nHost: x\r\n",
    ];
    let checks = openings.iter().map(|opening| async move {
        let started = Instant::now();
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(opening).await.unwrap();
        let got = read_until_closed(&mut s).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250),
            "{:?} closed after {took:?}, before the timeout",
            text(opening)
        );
        // No request was made, so nothing but an HTTP/2 SETTINGS/GOAWAY or a 408 may arrive.
        assert!(
            !text(&got).contains("200"),
            "{:?} got {:?}",
            text(opening),
            text(&got)
        );
    });
    futures_util::future::join_all(checks).await;
    // The listener still serves.
    let (s, _, _) = get(&p, "/a").await;
    assert_eq!(s, 200);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_the_oldest_idle_connection_makes_room() {
    let origin = slow_origin(Duration::from_millis(1500)).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| {
            c.server.max_connections = 50;
            c.server.header_read_timeout = Duration::from_secs(20);
            c.origin.timeout = Duration::from_secs(10);
        })
        .start()
        .await;
    // The oldest connection has a request in flight: it must not be the one evicted.
    let addr = p.addr;
    let busy = tokio::spawn(async move {
        let r = request(addr, "GET", "/slow", &[], b"").await;
        (r, Instant::now())
    });
    origin_saw(&origin, 1).await;
    let mut silent = Vec::new();
    for _ in 0..49 {
        silent.push(TcpStream::connect(p.addr).await.unwrap());
    }
    // The server is full; a real client is answered without waiting for a slot to free up.
    let (s, _, b) = timeout(BOUND, get(&p, "/real"))
        .await
        .expect("a new client is answered at max_connections");
    let answered = Instant::now();
    assert_eq!(s, 200, "{}", text(&b));
    // The busy (oldest) connection was not evicted, and was not waited for.
    let ((s, _, b), busy_done) = timeout(BOUND, busy).await.unwrap().unwrap();
    assert_eq!((s, text(&b)), (200, "{\"path\":\"/slow\"}".to_string()));
    assert!(
        answered < busy_done,
        "the new client was answered only once the busy connection was done"
    );
    // The connection evicted for it is the oldest silent one, and it was closed.
    let mut oldest = silent.remove(0);
    assert!(read_until_closed(&mut oldest).await.is_empty());
    drop(silent);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_between_requests_are_evicted_but_busy_ones_are_waited_for() {
    let origin = slow_origin(Duration::from_millis(600)).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.max_connections = 1)
        .start()
        .await;
    // The only slot holds a keep-alive connection between requests: a new client takes it.
    let mut kept = TcpStream::connect(p.addr).await.unwrap();
    kept.write_all(&get_line("/a")).await.unwrap();
    let (head, _) = read_response(&mut kept).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let (s, _, _) = timeout(BOUND, get(&p, "/b")).await.expect("answered");
    assert_eq!(s, 200);
    assert!(read_until_closed(&mut kept).await.is_empty());
    // The only slot holds a request in flight: a new client waits for it, then is answered.
    let addr = p.addr;
    let busy = tokio::spawn(async move { request(addr, "GET", "/slow", &[], b"").await });
    origin_saw(&origin, 3).await;
    let started = Instant::now();
    let (s, _, _) = timeout(BOUND, get(&p, "/c")).await.expect("answered");
    assert_eq!(s, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the busy connection was not waited for"
    );
    let (s, _, _) = timeout(BOUND, busy).await.unwrap().unwrap();
    assert_eq!(s, 200);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_h2_connection_is_closed_even_while_it_pings() {
    let origin = slow_origin(Duration::from_millis(700)).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.idle_timeout = Duration::from_millis(300))
        .start()
        .await;
    let io = TokioIo::new(TcpStream::connect(p.addr).await.unwrap());
    // The client pings every 50 ms while idle, and answers the server's pings.
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(50))
        .keep_alive_while_idle(true)
        .handshake::<_, Empty<Bytes>>(io)
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    // A stream open longer than idle_timeout is not idle.
    let req = http::Request::get(format!("http://{}/slow", p.addr))
        .body(Empty::new())
        .unwrap();
    let resp = timeout(BOUND, send.send_request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(text(&body), "{\"path\":\"/slow\"}");
    // With no stream open, the server sends GOAWAY and closes, pings or not.
    let idle_since = Instant::now();
    timeout(BOUND, conn)
        .await
        .expect("idle h2 connection closed in time")
        .unwrap()
        .expect("closed with GOAWAY, not an error");
    assert!(idle_since.elapsed() >= Duration::from_millis(250));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_keep_alive_requests_with_connection_close() {
    let origin = slow_origin(Duration::from_millis(500)).await;
    let p = proxy(&origin).await;
    let addr = p.addr;
    // An idle keep-alive connection, one with a request in flight, and an idle h2 connection.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(&get_line("/a")).await.unwrap();
    let (head, _) = read_response(&mut idle).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(&get_line("/slow")).await.unwrap();
    let (_, h2_conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(TcpStream::connect(addr).await.unwrap()),
    )
    .await
    .unwrap();
    let h2_conn = tokio::spawn(h2_conn);
    origin_saw(&origin, 2).await;

    let shutdown = tokio::spawn(p.shutdown());
    // Shutdown has begun once the listener refuses connections.
    timeout(BOUND, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("listener closed");
    // A request sent on the idle keep-alive connection after that is answered, then closed.
    idle.write_all(&get_line("/b")).await.unwrap();
    let (head, body) = read_response(&mut idle).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(text(&body), "{\"path\":\"/b\"}");
    assert!(read_until_closed(&mut idle).await.is_empty());
    // The request in flight completes, with Connection: close.
    let (head, body) = read_response(&mut busy).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(text(&body), "{\"path\":\"/slow\"}");
    // The h2 connection got GOAWAY and closed cleanly.
    timeout(BOUND, h2_conn)
        .await
        .expect("h2 connection closed")
        .unwrap()
        .expect("closed with GOAWAY, not an error");
    timeout(BOUND, shutdown)
        .await
        .expect("shutdown finished in time")
        .unwrap();
}

/// Kills the child process on drop unless it was reaped, whatever the test did.
struct KillOnDrop {
    pid: u32,
    reaped: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // A reaped pid may belong to another process by now.
        if !self.reaped {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.pid.to_string()])
                .status();
        }
    }
}

/// Two ports free on 127.0.0.1 at the time of the call.
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_drains_on_sigint_and_warns_about_an_open_admin_api() {
    let origin = slow_origin(Duration::from_millis(700)).await;
    let (port, admin_port) = free_ports();
    let dir = std::env::temp_dir().join(format!("apicache-conn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"{}\"\n\
             [admin]\nlisten = \"127.0.0.1:{admin_port}\"\n",
            origin.url()
        ),
    )
    .unwrap();
    let process = std::process::Command::new(env!("CARGO_BIN_EXE_apicache"))
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = process.id();
    let mut guard = KillOnDrop { pid, reaped: false };
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    timeout(BOUND, async {
        while TcpStream::connect(addr).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("apicache started");
    let mut busy = TcpStream::connect(addr).await.unwrap();
    busy.write_all(&get_line("/slow")).await.unwrap();
    origin_saw(&origin, 1).await;
    let sent = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let (head, body) = read_response(&mut busy).await;
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(text(&body), "{\"path\":\"/slow\"}");
    let out = timeout(
        BOUND,
        tokio::task::spawn_blocking(move || process.wait_with_output()),
    )
    .await
    .expect("apicache exited in time")
    .unwrap()
    .unwrap();
    guard.reaped = true;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("admin API has no token"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
