//! Talking to a running apicache: one request function (with thin wrappers for the public and
//! admin ports), one header reader, and the assertions several test files share.

use std::net::SocketAddr;

use apicache::Running;
use bytes::Bytes;
use http::HeaderMap;

use super::BEARER;

/// What a request got back: status, headers, body.
pub type Resp = (u16, HeaderMap, Bytes);

/// A client that does not decompress, follow redirects or use a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// `http://<public address><path>`.
pub fn url(p: &Running, path: &str) -> String {
    format!("http://{}{}", p.addr, path)
}

/// The one request helper: `method path` to `addr` with `headers` (repeat a name for several
/// lines) and `body` (none sent when empty).
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = client().request(method, format!("http://{addr}{path}"));
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    if !body.is_empty() {
        rb = rb.body(body.to_vec());
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = resp.bytes().await.unwrap();
    (status, h, body)
}

/// Send `request` as raw bytes and read the response until the connection closes (send
/// `Connection: close` or HTTP/1.0); returns what came back as text. Bounded by 10 s.
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut out));
    let _ = read.await.expect("response within 10 s");
    String::from_utf8_lossy(&out).into_owned()
}

/// Read one request head from a raw connection (raw test origins); `false` when the peer closed
/// before a whole head arrived. Byte by byte: a pipelined next request stays unread.
pub async fn read_request_head(s: &mut tokio::net::TcpStream) -> bool {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// `method path` with `headers` to the public port.
pub async fn send(p: &Running, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    request(p.addr, method, path, headers, b"").await
}

pub async fn get(p: &Running, path: &str) -> Resp {
    send(p, "GET", path, &[]).await
}

pub async fn get_with(p: &Running, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(p, "GET", path, headers).await
}

pub async fn head_with(p: &Running, path: &str, headers: &[(&str, &str)]) -> Resp {
    send(p, "HEAD", path, headers).await
}

pub async fn post(p: &Running, path: &str, body: &[u8]) -> Resp {
    request(p.addr, "POST", path, &[], body).await
}

/// `method path` with `headers` to the admin port (no token unless `headers` has one).
pub async fn admin_send(p: &Running, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let addr = p.admin_addr.expect("admin listener configured");
    request(addr, method, path, headers, b"").await
}

/// An authorized admin call that must answer 200 `{"purged":N}`; returns N.
pub async fn purge(p: &Running, method: &str, path: &str, headers: &[(&str, &str)]) -> u64 {
    let mut headers = headers.to_vec();
    headers.push(("authorization", BEARER));
    let (status, _, body) = admin_send(p, method, path, &headers).await;
    let body = text(&body);
    assert_eq!(status, 200, "{method} {path}: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
    v["purged"]
        .as_u64()
        .unwrap_or_else(|| panic!("no purged count: {body}"))
}

/// The admin `/stats` document (must answer 200).
pub async fn stats(p: &Running) -> serde_json::Value {
    let (status, _, body) = admin_send(p, "GET", "/stats", &[("authorization", BEARER)]).await;
    assert_eq!(status, 200, "{}", text(&body));
    serde_json::from_slice(&body).unwrap()
}

/// One counter of a `/stats` document.
pub fn stat(s: &serde_json::Value, name: &str) -> u64 {
    s[name]
        .as_u64()
        .unwrap_or_else(|| panic!("/stats has no counter {name}: {s}"))
}

/// A response header as text ("" when absent; panics when not visible ASCII).
pub fn hdr<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .map(|v| v.to_str().expect("ASCII header value"))
        .unwrap_or("")
}

/// A body as text (lossy).
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// How many times `field` is listed across all Vary lines.
pub fn vary_count(h: &HeaderMap, field: &str) -> usize {
    h.get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter(|f| f.trim().eq_ignore_ascii_case(field))
        .count()
}

pub fn vary_has(h: &HeaderMap, field: &str) -> bool {
    vary_count(h, field) > 0
}

/// GET `path` and assert 200, the X-Cache result and the body; returns the headers.
pub async fn assert_get(p: &Running, path: &str, x_cache: &str, body: &str) -> HeaderMap {
    let (status, h, b) = get(p, path).await;
    assert_eq!(status, 200, "{path}: {}", text(&b));
    assert_eq!(
        hdr(&h, "x-cache"),
        x_cache,
        "{path}: cache-status={}",
        hdr(&h, "cache-status")
    );
    assert_eq!(text(&b), body, "{path}");
    h
}

/// The shape every 304 from the cache must have.
#[track_caller]
pub fn assert_not_modified(status: u16, h: &HeaderMap, body: &Bytes, etag: &str) {
    assert_eq!(status, 304, "headers: {h:?}");
    assert!(body.is_empty(), "304 with a body: {body:?}");
    assert!(h.contains_key("etag"), "no ETag: {h:?}");
    assert_eq!(hdr(h, "etag"), etag, "headers: {h:?}");
    assert!(h.contains_key("cache-control"), "no Cache-Control: {h:?}");
    assert!(h.contains_key("date"), "no Date: {h:?}");
    assert!(vary_has(h, "accept-encoding"), "no Vary: {h:?}");
    assert!(
        !h.contains_key("content-type"),
        "304 has Content-Type: {h:?}"
    );
    assert!(!h.contains_key("content-encoding"), "{h:?}");
    assert_ne!(
        hdr(h, "content-length"),
        "0",
        "304 claims an empty representation"
    );
}
