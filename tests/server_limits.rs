//! The public listener: bad requests, header/body limits, slow and idle connections, h2c.

mod support;
use support::*;

use std::time::Duration;

use bytesize::ByteSize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_4xx() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    let (s, _, _) = get(&p, "/a%zz").await;
    assert_eq!(s, 400);
    // Oversize headers: hyper answers 431 on its own.
    let big = "x".repeat(70 * 1024);
    let (s, _, _) = get_with(&p, "/a", &[("x-big", &big)]).await;
    assert_eq!(s, 431);
    // A malformed request line over a raw socket.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GARBAGE\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert_eq!(origin.count(), 0);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_header_connections_are_closed() {
    let origin = cacheable_origin().await;
    // The default is 30s; a short timeout instead.
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.header_read_timeout = Duration::from_secs(1))
        .start()
        .await;
    // A client that sends half a request head and stalls is cut off.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("closed in time");
    let got = String::from_utf8_lossy(&buf[..n.unwrap_or(0)]).to_string();
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 408"), "{got}");
    // An idle keep-alive connection after a complete request is closed too.
    let mut s = tokio::net::TcpStream::connect(p.addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut total = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            total.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(closed.is_ok(), "idle connection was not closed");
    assert!(String::from_utf8_lossy(&total).starts_with("HTTP/1.1 200"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_request_body_is_413_and_not_forwarded() {
    let origin = Origin::start(|_| Reply::ok("{}").status(201)).await;
    let p = ProxyBuilder::new(&origin)
        .config(|c| c.server.max_body_size = ByteSize::kib(1))
        .start()
        .await;
    let (s, _, _) = post(&p, "/upload", &[b'x'; 2048]).await;
    assert_eq!(s, 413);
    assert_eq!(origin.count(), 0);
    let (s, _, _) = post(&p, "/upload", &[b'x'; 512]).await;
    assert_eq!(s, 201);
    assert_eq!(origin.last().body.len(), 512);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_clients_are_served() {
    let origin = cacheable_origin().await;
    let p = proxy(&origin).await;
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .no_proxy()
        .build()
        .unwrap();
    for expected in ["MISS", "HIT"] {
        let r = c.get(url(&p, "/h2")).send().await.unwrap();
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(hdr(r.headers(), "x-cache"), expected);
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunked_body_is_the_clients_fault() {
    let origin = Origin::start(|s: &Seen| Reply::ok(format!("got {}", s.body.len()))).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    let req =
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
               5\r\nhello\r\nzz\r\nbad\r\n0\r\n\r\n";
    let got = raw(p.addr, req).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    let s = stats(&p).await;
    assert_eq!(stat(&s, "origin_errors"), 0, "{s}");
    // A well-formed one still goes through.
    let ok =
        "POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              5\r\nhello\r\n0\r\n\r\n";
    let got = raw(p.addr, ok).await;
    assert!(
        got.starts_with("HTTP/1.1 200") && got.ends_with("got 5"),
        "{got}"
    );
    p.shutdown().await;
}
