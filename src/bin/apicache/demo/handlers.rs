//! Endpoint handlers of the demo Banking API: owners, accounts, transaction pages, POSTs, `/me`, `/blob/{n}`.

use http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, LAST_MODIFIED, LOCATION, VARY, WWW_AUTHENTICATE,
};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use apicache::body::ProxyBody;

use super::dates::{http_date, now_secs};
use super::json::{account_full, account_summary, owner_full, owner_summary, txn_json};
use super::model::{Account, Lcg, State, Txn};
use super::response::{json_doc, not_found, problem, respond, set_header, CC_NO_STORE, JSON};

/// Largest accepted `POST` body.
pub(super) const MAX_BODY: usize = 64 * 1024;
/// Largest `/blob/{n}` size.
const MAX_BLOB: usize = 8 * 1024 * 1024;
/// Smallest `/blob/{n}` size.
const MIN_BLOB: usize = 16;
/// Default and maximum page sizes for transaction lists.
const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 500;

pub(super) const CC_LIST: &str = "public, max-age=60";
const CC_OWNER: &str = "public, max-age=300";
const CC_ACCOUNT: &str = "max-age=300";
pub(super) const CC_TXN_LIST: &str = "max-age=30, stale-while-revalidate=30, stale-if-error=300";
const CC_TXN: &str = "max-age=300";
pub(super) const CC_ME: &str = "private, max-age=60";
pub(super) const CC_BLOB: &str = "public, max-age=3600";

pub(super) fn get_banking(
    segments: &[&str],
    query: &str,
    state: &State,
    path: &str,
) -> Response<ProxyBody> {
    let store = state.read();
    let lm = store.last_modified;
    match segments {
        ["owners"] => {
            let list: Vec<Value> = store.owners.iter().map(owner_summary).collect();
            json_doc(
                &json!({ "items": list, "total": list.len() }),
                CC_LIST,
                Some("owners"),
                lm,
            )
        }
        ["owners", id] => match store.owner(id) {
            Some(o) => json_doc(
                &owner_full(o, &store),
                CC_OWNER,
                Some(&format!("owners owner-{}", o.id)),
                lm,
            ),
            None => not_found(path),
        },
        ["accounts"] => account_list(store.accounts.iter().collect(), None, lm),
        ["owners", id, "accounts"] => match store.owner(id) {
            Some(o) => account_list(
                store
                    .accounts
                    .iter()
                    .filter(|a| a.owner_id == o.id)
                    .collect(),
                Some(&o.id),
                lm,
            ),
            None => not_found(path),
        },
        ["accounts", id] => match store.account(id) {
            Some(a) => json_doc(
                &account_full(a),
                CC_ACCOUNT,
                Some(&format!("account-{}", a.id)),
                lm,
            ),
            None => not_found(path),
        },
        ["accounts", id, "transactions"] => match store.account(id) {
            Some(a) => transaction_page(a, query, lm, path),
            None => not_found(path),
        },
        ["accounts", id, "transactions", tid] => {
            match store
                .account(id)
                .and_then(|a| a.transactions.iter().find(|t| t.id == *tid))
            {
                Some(t) => json_doc(
                    &txn_json(t),
                    CC_TXN,
                    Some(&format!("transactions account-{}", t.account_id)),
                    lm,
                ),
                None => not_found(path),
            }
        }
        _ => not_found(path),
    }
}

fn account_list(accounts: Vec<&Account>, owner: Option<&str>, lm: u64) -> Response<ProxyBody> {
    let mut keys = String::from("accounts");
    for a in &accounts {
        keys.push_str(" account-");
        keys.push_str(&a.id);
    }
    let items: Vec<Value> = accounts.iter().map(|a| account_summary(a)).collect();
    let mut body = json!({ "items": items, "total": accounts.len() });
    if let Some(owner) = owner {
        body["ownerId"] = json!(owner);
    }
    json_doc(&body, CC_LIST, Some(&keys), lm)
}

/// Parse a positive integer query parameter.
fn parse_positive(value: &str) -> Option<u64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<u64>().ok().filter(|v| *v >= 1)
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    // The last occurrence wins.
    query.rsplit('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

fn transaction_page(a: &Account, query: &str, lm: u64, path: &str) -> Response<ProxyBody> {
    let page = match query_param(query, "page") {
        None => 1,
        Some(v) => match parse_positive(v) {
            Some(p) => p,
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "page must be an integer >= 1",
                    path,
                )
            }
        },
    };
    let size = match query_param(query, "size") {
        None => DEFAULT_PAGE_SIZE,
        Some(v) => match parse_positive(v).filter(|s| *s <= MAX_PAGE_SIZE) {
            Some(s) => s,
            None => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    &format!("size must be an integer between 1 and {MAX_PAGE_SIZE}"),
                    path,
                )
            }
        },
    };
    let total = a.transactions.len() as u64;
    let skip = (page - 1).saturating_mul(size);
    let items: Vec<Value> = a
        .transactions
        .iter()
        .rev()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(size as usize)
        .map(txn_json)
        .collect();
    let link = |p: u64| format!("/accounts/{}/transactions?page={p}&size={size}", a.id);
    let next = if skip.saturating_add(size) < total {
        json!(link(page + 1))
    } else {
        Value::Null
    };
    let prev = if page > 1 {
        json!(link(page - 1))
    } else {
        Value::Null
    };
    let body = json!({
        "accountId": a.id,
        "page": page,
        "size": size,
        "total": total,
        "pages": total.div_ceil(size),
        "items": items,
        "next": next,
        "prev": prev,
    });
    json_doc(
        &body,
        CC_TXN_LIST,
        Some(&format!("transactions account-{}", a.id)),
        lm,
    )
}

pub(super) async fn post_transaction(
    req: Request<Incoming>,
    state: &State,
    account_id: &str,
    path: &str,
) -> Response<ProxyBody> {
    if state.read().account(account_id).is_none() {
        return not_found(path);
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY as u64) {
        return problem(StatusCode::PAYLOAD_TOO_LARGE, "body exceeds 64 KiB", path);
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.downcast_ref::<LengthLimitError>().is_some() => {
            return problem(StatusCode::PAYLOAD_TOO_LARGE, "body exceeds 64 KiB", path)
        }
        Err(_) => return problem(StatusCode::BAD_REQUEST, "could not read request body", path),
    };
    let input: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return problem(StatusCode::BAD_REQUEST, "body must be a JSON object", path),
    };
    let amount_cents = match input.get("amount").and_then(Value::as_f64) {
        Some(x) if x.is_finite() && x.abs() <= 1e9 && (x * 100.0).round() != 0.0 => {
            (x * 100.0).round() as i64
        }
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "\"amount\" must be a non-zero number with |amount| <= 1e9",
                path,
            )
        }
    };
    let label = match input.get("label").and_then(Value::as_str).map(str::trim) {
        Some(l) if !l.is_empty() && l.chars().count() <= 200 => l.to_string(),
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "\"label\" must be a non-empty string of at most 200 characters",
                path,
            )
        }
    };
    let category = match input.get("category") {
        None | Some(Value::Null) => "other".to_string(),
        Some(Value::String(c)) if !c.trim().is_empty() && c.chars().count() <= 50 => {
            c.trim().to_string()
        }
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "\"category\" must be a non-empty string of at most 50 characters",
                path,
            )
        }
    };

    let now = now_secs();
    let mut store = state.write();
    // Keep Last-Modified strictly increasing so HTTP-date (1 s) validators always change.
    store.last_modified = now.max(store.last_modified.saturating_add(1));
    let Some(account) = store.accounts.iter_mut().find(|a| a.id == account_id) else {
        return not_found(path);
    };
    account.balance_cents = account.balance_cents.saturating_add(amount_cents);
    let seq = account.transactions.len() + 1;
    let txn = Txn {
        id: format!("T-{account_id}-{seq:04}"),
        account_id: account_id.to_string(),
        timestamp: i64::try_from(now).unwrap_or(i64::MAX),
        label,
        amount_cents,
        balance_after_cents: account.balance_cents,
        channel: "api",
        category,
        merchant: None,
        reference: format!("RF00API{seq:06}"),
    };
    let location = format!("/accounts/{account_id}/transactions/{}", txn.id);
    let body = serde_json::to_vec(&txn_json(&txn)).unwrap_or_default();
    account.transactions.push(txn);
    drop(store);
    tracing::debug!(%location, "demo origin added transaction");

    let mut resp = respond(StatusCode::CREATED, JSON, body);
    set_header(&mut resp, LOCATION, &location);
    set_header(&mut resp, CACHE_CONTROL, CC_NO_STORE);
    resp
}

pub(super) fn get_me(req: &Request<Incoming>, state: &State, path: &str) -> Response<ProxyBody> {
    let auth = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .filter(|v| !v.iter().all(u8::is_ascii_whitespace));
    let Some(auth) = auth else {
        let mut resp = problem(
            StatusCode::UNAUTHORIZED,
            "an Authorization header is required",
            path,
        );
        set_header(&mut resp, WWW_AUTHENTICATE, "api-token");
        return resp;
    };
    let hash = fnv1a(auth);
    let user_id = format!("u-{hash:016x}");
    let store = state.read();
    let owner_idx = usize::try_from(hash % store.owners.len().max(1) as u64).unwrap_or(0);
    let owner_id = store.owners.get(owner_idx).map(|o| o.id.as_str());
    let body = json!({
        "userId": user_id,
        "displayName": format!("Demo user {}", &user_id[2..10]),
        "ownerId": owner_id,
        "owners": store.owners.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        "scopes": ["owners:read", "accounts:read", "transactions:read", "transactions:write"],
    });
    let mut resp = json_doc(&body, CC_ME, Some("me"), store.last_modified);
    set_header(&mut resp, VARY, "Authorization");
    resp
}

pub(super) fn get_blob(n: &str, query: &str, state: &State, path: &str) -> Response<ProxyBody> {
    let size = match n.parse::<usize>() {
        Ok(s) if (MIN_BLOB..=MAX_BLOB).contains(&s) && n.bytes().all(|b| b.is_ascii_digit()) => s,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                &format!("blob size must be an integer between {MIN_BLOB} and {MAX_BLOB}"),
                path,
            )
        }
    };
    let seed = query_param(query, "seed").map_or(0, |s| fnv1a(s.as_bytes()));
    let mut resp = respond(StatusCode::OK, JSON, blob(size, seed));
    set_header(&mut resp, CACHE_CONTROL, CC_BLOB);
    set_header(&mut resp, LAST_MODIFIED, &http_date(state.boot_secs));
    resp
}

/// `{"data":"…"}` of exactly `n` bytes (`n >= 11`), filled from a seeded LCG.
fn blob(n: usize, seed: u64) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const PREFIX: &[u8] = b"{\"data\":\"";
    const SUFFIX: &[u8] = b"\"}";
    let fill = n.saturating_sub(PREFIX.len() + SUFFIX.len());
    let mut out = Vec::with_capacity(n);
    out.extend_from_slice(PREFIX);
    let mut rng = Lcg::new(seed);
    let mut word = 0u64;
    for i in 0..fill {
        if i % 10 == 0 {
            word = rng.next_u64();
        }
        out.push(ALPHABET[(word & 63) as usize]);
        word >>= 6;
    }
    out.extend_from_slice(SUFFIX);
    out
}

/// 64-bit FNV-1a hash.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_is_exact_and_valid() {
        for n in [16, 1024, 32 * 1024, 12_345] {
            let b = blob(n, 7);
            assert_eq!(b.len(), n);
            let v: Value = serde_json::from_slice(&b).expect("json");
            assert!(v["data"].is_string());
        }
        assert_ne!(blob(64, 1), blob(64, 2));
    }
}
