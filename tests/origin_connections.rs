//! The connection to the origin: pooled connections the origin closes are retried, not 502.

mod support;
use support::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// An origin that answers the first request on each connection and, like a worker being recycled,
/// closes the connection when the second one arrives, without answering it.
async fn recycling_origin() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = answered.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                if !read_request_head(&mut s).await {
                    return;
                }
                let reply =
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncache-control: no-store\r\n\r\nok";
                if s.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                counter.fetch_add(1, Ordering::SeqCst);
                // The second request is read, then the connection dropped.
                read_request_head(&mut s).await;
            });
        }
    });
    (url, answered, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recycled_keep_alive_connection_is_retried_once() {
    let (url, answered, origin) = recycling_origin().await;
    let p = ProxyBuilder::for_url(&url).start().await;
    for i in 0..20 {
        // Cacheable route requests (fills) and forwarded ones.
        let path = if i % 2 == 0 {
            format!("/fill/{i}")
        } else {
            "/same".to_string()
        };
        let (status, _, body) = get(&p, &path).await;
        assert_eq!((status, text(&body).as_str()), (200, "ok"), "request {i}");
    }
    assert_eq!(answered.load(Ordering::SeqCst), 20);
    p.shutdown().await;
    origin.abort();
}
