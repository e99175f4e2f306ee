//! Demo origin for `apicache demo`: a small in-memory "Banking API" (owners, accounts, transactions).
//!
//! This file serves the API (through the library's accept loop) and routes requests to the
//! handlers. The data set is generated deterministically at start-up ([`model`]) and lives in an
//! `Arc<RwLock<..>>` store so `POST /accounts/{id}/transactions` can add to it.
//! Every response carries `X-Origin-Requests` so users can see when the origin was really hit.
//! The origin intentionally sends neither `ETag` nor `Content-Encoding`: the proxy adds those.

mod dates;
mod handlers;
mod json;
mod model;
mod response;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::header::{HeaderName, HeaderValue, CACHE_CONTROL};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::watch;

use apicache::body::ProxyBody;
use apicache::config::ServerConfig;

use handlers::{get_banking, get_blob, get_me, post_transaction};
use model::State;
use response::{method_not_allowed, not_found, respond, set_header, CC_NO_STORE};

/// Number of requests served by every demo origin in this process.
static ORIGIN_REQUESTS: AtomicU64 = AtomicU64::new(0);

const X_ORIGIN_REQUESTS: &str = "x-origin-requests";

/// Total number of requests served by demo origins in this process (read by the tests).
#[cfg(test)]
pub fn origin_requests() -> u64 {
    ORIGIN_REQUESTS.load(Ordering::Relaxed)
}

/// Serve the demo Banking API on `listener` until `shutdown` turns true.
///
/// Connections are accepted and driven by [`apicache::server::serve`] with the default
/// [`ServerConfig`]; on shutdown it stops accepting and drains open connections.
pub async fn serve_origin(listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let state = Arc::new(State::new());
    let mut cfg = ServerConfig::default();
    if let Ok(addr) = listener.local_addr() {
        cfg.listen = addr;
        tracing::info!(%addr, "demo origin listening");
    }
    // Its settings never change: the sender is dropped and the listener keeps these.
    let (_, cfg) = watch::channel(cfg);
    apicache::server::serve(listener, cfg, None, shutdown, move |req, _peer| {
        let state = Arc::clone(&state);
        async move { handle(req, &state).await }
    })
    .await;
    tracing::info!("demo origin stopped accepting");
}

/// Count the request, answer it, and stamp the count on the response as `X-Origin-Requests`.
async fn handle(req: Request<Incoming>, state: &State) -> Response<ProxyBody> {
    let n = ORIGIN_REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
    let mut resp = route(req, state).await;
    resp.headers_mut().insert(
        HeaderName::from_static(X_ORIGIN_REQUESTS),
        HeaderValue::from(n),
    );
    resp
}

const GET_ONLY: &str = "GET, HEAD";
const GET_POST: &str = "GET, HEAD, POST";

async fn route(req: Request<Incoming>, state: &State) -> Response<ProxyBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let is_get = req.method() == Method::GET || req.method() == Method::HEAD;
    let segments: Vec<&str> = match path.strip_prefix('/') {
        Some(rest) => rest.split('/').collect(),
        None => return not_found(&path),
    };
    if segments.iter().any(|s| s.is_empty()) {
        return not_found(&path);
    }
    let allow = match segments.as_slice() {
        ["healthz"]
        | ["me"]
        | ["owners"]
        | ["owners", _]
        | ["owners", _, "accounts"]
        | ["accounts"]
        | ["accounts", _]
        | ["accounts", _, "transactions", _]
        | ["blob", _] => GET_ONLY,
        ["accounts", _, "transactions"] => GET_POST,
        _ => return not_found(&path),
    };
    if req.method() == Method::POST {
        if let ["accounts", id, "transactions"] = segments.as_slice() {
            let id = (*id).to_string();
            return post_transaction(req, state, &id, &path).await;
        }
    }
    if !is_get {
        return method_not_allowed(allow, &path);
    }
    match segments.as_slice() {
        ["healthz"] => {
            let mut resp = respond(StatusCode::OK, "text/plain; charset=utf-8", "ok");
            set_header(&mut resp, CACHE_CONTROL, CC_NO_STORE);
            resp
        }
        ["me"] => get_me(&req, state, &path),
        ["blob", n] => get_blob(n, &query, state, &path),
        _ => get_banking(segments.as_slice(), &query, state, &path),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::Value;

    use super::handlers::{CC_BLOB, CC_LIST, CC_ME, CC_TXN_LIST, MAX_BODY};
    use super::response::{JSON, PROBLEM_JSON};
    use super::*;

    async fn start() -> (String, watch::Sender<bool>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(serve_origin(listener, rx));
        (format!("http://{addr}"), tx, task)
    }

    fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn banking_api_end_to_end() {
        let (base, shutdown, task) = start().await;
        let client = reqwest::Client::new();

        // Transactions page 1: ~32 KiB of valid JSON.
        let resp = client
            .get(format!("{base}/accounts/A1/transactions"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-type"), JSON);
        assert_eq!(header(&resp, "cache-control"), CC_TXN_LIST);
        assert_eq!(header(&resp, "surrogate-key"), "transactions account-A1");
        assert!(resp.headers().get("etag").is_none());
        assert!(resp.headers().get("x-origin-requests").is_some());
        let lm_before = header(&resp, "last-modified").to_string();
        assert!(httpdate::parse_http_date(&lm_before).is_ok());
        let body = resp.bytes().await.expect("body");
        assert!(
            (30 * 1024..=34 * 1024).contains(&body.len()),
            "page size {}",
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(page["items"].as_array().map(Vec::len), Some(100));
        assert_eq!(page["page"], 1);
        assert_eq!(page["size"], 100);
        assert_eq!(page["total"], 300);
        assert_eq!(page["next"], "/accounts/A1/transactions?page=2&size=100");
        assert_eq!(page["items"][0]["id"], "T-A1-0300");

        // Bad paging.
        for q in ["page=0", "size=501", "page=abc", "size=", "page=-1"] {
            let resp = client
                .get(format!("{base}/accounts/A1/transactions?{q}"))
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 400, "{q}");
            assert_eq!(header(&resp, "content-type"), PROBLEM_JSON);
        }

        // Blob of exactly 1 KiB.
        let resp = client
            .get(format!("{base}/blob/1024"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "cache-control"), CC_BLOB);
        assert!(resp.headers().get("surrogate-key").is_none());
        let body = resp.bytes().await.expect("body");
        assert_eq!(body.len(), 1024);
        serde_json::from_slice::<Value>(&body).expect("blob json");
        for bad in ["15", "8388609", "x", "-5"] {
            let resp = client
                .get(format!("{base}/blob/{bad}"))
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 400, "{bad}");
        }

        // POST adds a transaction and moves Last-Modified.
        let before: Value = serde_json::from_slice(
            &client
                .get(format!("{base}/accounts/A1"))
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body"),
        )
        .expect("json");
        let resp = client
            .post(format!("{base}/accounts/A1/transactions"))
            .header("content-type", JSON)
            .body(r#"{"amount": 12.5, "label": "Coffee refund"}"#)
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 201);
        assert_eq!(
            header(&resp, "location"),
            "/accounts/A1/transactions/T-A1-0301"
        );
        assert_eq!(header(&resp, "cache-control"), "no-store");
        let resp = client
            .get(format!("{base}/accounts/A1/transactions?size=1"))
            .send()
            .await
            .expect("send");
        let lm_after = header(&resp, "last-modified").to_string();
        assert_ne!(lm_before, lm_after);
        let page: Value = serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
        assert_eq!(page["total"], 301);
        assert_eq!(page["items"][0]["id"], "T-A1-0301");
        assert_eq!(page["items"][0]["amount"], 12.5);
        let after: Value = serde_json::from_slice(
            &client
                .get(format!("{base}/accounts/A1"))
                .send()
                .await
                .expect("send")
                .bytes()
                .await
                .expect("body"),
        )
        .expect("json");
        let delta =
            after["balance"].as_f64().unwrap_or(0.0) - before["balance"].as_f64().unwrap_or(0.0);
        assert!((delta - 12.5).abs() < 1e-6);
        let resp = client
            .get(format!("{base}/accounts/A1/transactions/T-A1-0301"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);

        // Invalid and oversized POST bodies.
        for bad in [
            r#"{"amount": "x", "label": "a"}"#,
            r#"{"amount": 1}"#,
            "not json",
            r#"{"amount":0,"label":"z"}"#,
        ] {
            let resp = client
                .post(format!("{base}/accounts/A1/transactions"))
                .body(bad)
                .send()
                .await
                .expect("send");
            assert_eq!(resp.status(), 400, "{bad}");
        }
        let resp = client
            .post(format!("{base}/accounts/A1/transactions"))
            .body(vec![b' '; MAX_BODY + 1])
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 413);

        // /me needs Authorization and never echoes it.
        let resp = client.get(format!("{base}/me")).send().await.expect("send");
        assert_eq!(resp.status(), 401);
        assert_eq!(header(&resp, "www-authenticate"), "api-token");
        let resp = client
            .get(format!("{base}/me"))
            .header("authorization", "Bearer secret-token-123")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "cache-control"), CC_ME);
        let text = resp.text().await.expect("body");
        assert!(!text.contains("secret-token-123"));
        assert!(text.contains("\"userId\":\"u-"));

        // Other endpoints, 404 and 405.
        let resp = client
            .get(format!("{base}/owners/O1"))
            .send()
            .await
            .expect("send");
        assert_eq!(header(&resp, "surrogate-key"), "owners owner-O1");
        let resp = client
            .get(format!("{base}/owners/O2/accounts"))
            .send()
            .await
            .expect("send");
        assert_eq!(
            header(&resp, "surrogate-key"),
            "accounts account-A3 account-A4"
        );
        let resp = client
            .get(format!("{base}/accounts"))
            .send()
            .await
            .expect("send");
        assert!(header(&resp, "surrogate-key").ends_with("account-A8"));
        let resp = client
            .get(format!("{base}/owners"))
            .send()
            .await
            .expect("send");
        assert_eq!(header(&resp, "cache-control"), CC_LIST);
        let resp = client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.text().await.expect("body"), "ok");
        for p in [
            "/nope",
            "/accounts/A9",
            "/owners/O1/",
            "/accounts/A1/transactions/T-X",
        ] {
            let resp = client.get(format!("{base}{p}")).send().await.expect("send");
            assert_eq!(resp.status(), 404, "{p}");
            assert_eq!(header(&resp, "content-type"), PROBLEM_JSON);
        }
        let resp = client
            .delete(format!("{base}/accounts/A1"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 405);
        assert_eq!(header(&resp, "allow"), GET_ONLY);
        let resp = client
            .put(format!("{base}/accounts/A1/transactions"))
            .send()
            .await
            .expect("send");
        assert_eq!(header(&resp, "allow"), GET_POST);
        let resp = client
            .head(format!("{base}/blob/2048"))
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-length"), "2048");
        assert!(origin_requests() > 20);

        shutdown.send(true).expect("shutdown");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server stops")
            .expect("server task");
    }
}
