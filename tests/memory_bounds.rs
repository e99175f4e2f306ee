//! Memory bounded in bytes: fills share `cache.max_fill_memory`; beyond it they stream through.

mod support;
use support::*;

use std::time::Duration;

use bytesize::ByteSize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const BODY: usize = 400 * 1024;

/// An origin that sends a cacheable `BODY`-byte response in two halves, 300 ms apart, so fills
/// started together are all buffering at once.
async fn slow_body_origin() -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_request_head(&mut s).await {
                    return;
                }
                let h = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n\
                     cache-control: public, max-age=60\r\ncontent-length: {BODY}\r\n\
                     connection: close\r\n\r\n"
                );
                let body = vec![b'x'; BODY];
                let _ = s.write_all(h.as_bytes()).await;
                let _ = s.write_all(&body[..BODY / 2]).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let _ = s.write_all(&body[BODY / 2..]).await;
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fills_over_the_shared_budget_stream_through_unstored() {
    let (url, origin) = slow_body_origin().await;
    let p = ProxyBuilder::for_url(&url)
        .config(|c| {
            c.cache.max_object_size = ByteSize::kib(512);
            c.cache.max_fill_memory = Some(ByteSize::mib(1));
        })
        .start()
        .await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (addr, path) = (p.addr, format!("/f{i}"));
        tasks.spawn(async move { request(addr, "GET", &path, &[], b"").await });
    }
    let mut streamed = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, h, body) = r.unwrap();
        assert_eq!(
            (status, body.len()),
            (200, BODY),
            "every client gets the whole body"
        );
        if hdr(&h, "cache-status").contains("detail=fill-memory") {
            streamed += 1;
        }
    }
    // Two 400 KiB fills fit in 1 MiB; the other two streamed through and were not stored.
    assert_eq!(streamed, 2);
    let mut hits = 0;
    for i in 0..4 {
        let (_, h, _) = get(&p, &format!("/f{i}")).await;
        hits += usize::from(hdr(&h, "x-cache") == "HIT");
    }
    assert_eq!(hits, 2);
    p.shutdown().await;
    origin.abort();
}
