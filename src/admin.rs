//! The admin API on its own listener: purges (hard/soft, by tag, URL, all; through the cluster's
//! purge log when there is one), credential verdict purges, config reload, health, metrics, stats.

use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;
use subtle::ConstantTimeEq;

use crate::body::ProxyBody;
use crate::cache::tags;
use crate::cluster::entry::{Purge, What, MAX_TARGET_BYTES};
use crate::error::AdminError;
use crate::reload::{ReloadError, Reloaded, Reloader};

/// Most keys one `POST /purge` may name.
pub const MAX_PURGE_KEYS: usize = 256;

/// Answer one admin request.
pub async fn handle(reloader: &Arc<Reloader>, req: Request<Incoming>) -> Response<ProxyBody> {
    match answer(reloader, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn answer(
    reloader: &Arc<Reloader>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, AdminError> {
    let proxy = reloader.proxy();
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/healthz" && (method == Method::GET || method == Method::HEAD) {
        let mut r = Response::new(ProxyBody::full("ok\n"));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Ok(r);
    }
    // The token of the config in effect: a reload that changes it applies to the next call.
    let set = proxy.settings();
    if let Some(token) = set.cfg.admin.as_ref().and_then(|a| a.token.as_deref()) {
        if !authorized(req.headers(), token) {
            return Err(AdminError::Unauthorized);
        }
    }
    let soft = is_soft(req.headers());
    let store = proxy.store();
    let what = match (&method, path.as_str()) {
        (&Method::GET, "/metrics") => {
            let s = proxy.snapshot().await;
            let mut r = Response::new(ProxyBody::full(proxy.metrics().prometheus(&s)));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return Ok(r);
        }
        (&Method::GET, "/stats") => {
            let s = proxy.snapshot().await;
            return Ok(json(serde_json::to_vec(&s).unwrap_or_default()));
        }
        (&Method::POST, "/reload") => {
            return match reloader.reload().await {
                Ok(r) => Ok(json(reloaded_json(&r).into_bytes())),
                Err(ReloadError::NoFile) => Err(AdminError::NoConfigFile),
                Err(e @ (ReloadError::Invalid(_) | ReloadError::Failed(_))) => {
                    Err(AdminError::ReloadRejected(e.to_string()))
                }
            };
        }
        (&Method::POST, "/verify/purge") => {
            let purged = proxy.verdicts().clear();
            tracing::info!(target: "apicache::admin", purged, "credential verdicts purged");
            return Ok(json(format!("{{\"purged\":{purged}}}").into_bytes()));
        }
        (&Method::POST, "/purge-all") => What::All,
        (&Method::POST, "/purge") => {
            let keys: Vec<String> = req
                .headers()
                .get_all("surrogate-key")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|s| s.split([' ', ',']))
                .filter(|k| !k.is_empty())
                .map(str::to_string)
                .collect();
            if keys.is_empty() {
                return Err(AdminError::NoKeys);
            }
            if keys.len() > MAX_PURGE_KEYS {
                return Err(AdminError::TooManyKeys);
            }
            What::Tags(keys)
        }
        (&Method::POST, p) if p.starts_with("/purge/") => {
            let raw = &p["/purge/".len()..];
            let key = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
            // A line break would split the key in the cluster's log; no tag holds one.
            if key.is_empty() || key.contains(' ') || key.chars().any(char::is_control) {
                return Err(AdminError::BadKey);
            }
            What::Tags(vec![key.into_owned()])
        }
        (m, _) if m.as_str() == "PURGE" => {
            let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let Ok(n) = set.normalizer.normalize(target) else {
                return Err(AdminError::BadUrl);
            };
            What::Tags(vec![tags::url_tag(&n.path_and_query)])
        }
        _ => return Err(AdminError::NotFound),
    };
    if let What::Tags(keys) = &what {
        if keys.iter().map(|k| k.len() + 1).sum::<usize>() > MAX_TARGET_BYTES {
            return Err(AdminError::KeysTooLong);
        }
    }
    let purge = Purge { what, soft };
    let (purged, answer) = match proxy.cluster() {
        None => {
            let purged = purge.apply(store).await;
            (
                purged,
                json(format!("{{\"purged\":{purged}}}").into_bytes()),
            )
        }
        Some(cluster) => {
            let o = cluster
                .purge(purge.clone())
                .await
                .map_err(|e| AdminError::ClusterUnavailable(e.to_string()))?;
            let mut r = json(
                serde_json::json!({
                    "purged": o.purged,
                    "seq": o.seq,
                    "nodes": o.nodes,
                    "confirmed": o.confirmed,
                })
                .to_string()
                .into_bytes(),
            );
            if !o.complete() {
                *r.status_mut() = http::StatusCode::ACCEPTED;
            }
            tracing::info!(
                target: "apicache::admin",
                seq = o.seq,
                nodes = o.nodes,
                confirmed = o.confirmed,
                "purge logged for the cluster"
            );
            (o.purged, r)
        }
    };
    proxy.metrics().purge(purged as u64);
    tracing::info!(target: "apicache::admin", method = %method, path = %path, soft, purged, "purge");
    Ok(answer)
}

/// `{"reloaded":true,"hash":"…","restart_needed":["server.listen"]}`.
fn reloaded_json(r: &Reloaded) -> String {
    serde_json::json!({
        "reloaded": true,
        "hash": r.hash,
        "restart_needed": r.restart_needed,
    })
    .to_string()
}

fn authorized(h: &HeaderMap, token: &str) -> bool {
    let Some(given) = h
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
    else {
        return false;
    };
    given.as_bytes().ct_eq(token.as_bytes()).into()
}

fn is_soft(h: &HeaderMap) -> bool {
    ["soft-purge", "fastly-soft-purge"]
        .iter()
        .any(|n| h.get(*n).is_some_and(|v| v.as_bytes() == b"1"))
}

fn json(body: Vec<u8>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let mut h = HeaderMap::new();
        assert!(!authorized(&h, "0123456789abcdef"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer 0123456789abcdef"),
        );
        assert!(authorized(&h, "0123456789abcdef"));
        assert!(!authorized(&h, "0123456789abcdeF"));
        h.insert("fastly-soft-purge", HeaderValue::from_static("1"));
        assert!(is_soft(&h));
    }
}
