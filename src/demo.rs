//! Demo origin for `apicache demo`: a small in-memory "Banking API" (owners, accounts, transactions).
//!
//! The data set is generated deterministically at start-up (a fixed-seed LCG, no randomness crate)
//! and lives in an `Arc<RwLock<..>>` store so `POST /accounts/{id}/transactions` can add to it.
//! Every response carries `X-Origin-Requests` so users can see when the origin was really hit.
//! The origin intentionally sends neither `ETag` nor `Content-Encoding`: the proxy adds those.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, LAST_MODIFIED,
    LOCATION, VARY, WWW_AUTHENTICATE,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Number of requests served by every demo origin in this process.
static ORIGIN_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// Largest accepted `POST` body.
const MAX_BODY: usize = 64 * 1024;
/// Largest `/blob/{n}` size.
const MAX_BLOB: usize = 8 * 1024 * 1024;
/// Smallest `/blob/{n}` size.
const MIN_BLOB: usize = 16;
/// Default and maximum page sizes for transaction lists.
const DEFAULT_PAGE_SIZE: u64 = 100;
const MAX_PAGE_SIZE: u64 = 500;
/// Generated transactions per account.
const TXNS_PER_ACCOUNT: usize = 300;
/// The generated history ends on 2025-06-30T18:00:00Z and spans 90 days.
const HISTORY_END: i64 = 1_751_306_400;
const HISTORY_SPAN: i64 = 90 * 86_400;

const JSON: &str = "application/json";
const PROBLEM_JSON: &str = "application/problem+json";
const SURROGATE_KEY: &str = "surrogate-key";
const X_ORIGIN_REQUESTS: &str = "x-origin-requests";

const CC_LIST: &str = "public, max-age=60";
const CC_OWNER: &str = "public, max-age=300";
const CC_ACCOUNT: &str = "max-age=300";
const CC_TXN_LIST: &str = "max-age=30, stale-while-revalidate=30, stale-if-error=300";
const CC_TXN: &str = "max-age=300";
const CC_ME: &str = "private, max-age=60";
const CC_BLOB: &str = "public, max-age=3600";
const CC_NO_STORE: &str = "no-store";

/// Total number of requests served by demo origins in this process.
pub fn origin_requests() -> u64 {
    ORIGIN_REQUESTS.load(Ordering::Relaxed)
}

/// Serve the demo Banking API on `listener` until `shutdown` resolves.
pub async fn serve_origin(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let state = Arc::new(State::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "demo origin listening");
    }
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let state = Arc::clone(&state);
                    let stop_rx = stop_rx.clone();
                    tokio::spawn(serve_connection(stream, peer, state, stop_rx));
                }
                Err(err) => {
                    tracing::warn!(%err, "demo origin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Ask open connections to finish in-flight requests and close.
    let _ = stop_tx.send(true);
    tracing::info!("demo origin stopped accepting");
}

/// Drive one connection (HTTP/1.1 keep-alive or HTTP/2) until it ends or shutdown is requested.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    state: Arc<State>,
    mut stop_rx: tokio::sync::watch::Receiver<bool>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().keep_alive(true);
    let service = service_fn(move |req: Request<Incoming>| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle(req, &state).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        res = conn.as_mut() => res,
        _ = stop_rx.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, %err, "demo origin connection error");
    }
}

// ---------------------------------------------------------------------------------------------
// Data model
// ---------------------------------------------------------------------------------------------

/// Shared server state: the mutable store plus the boot time.
struct State {
    store: RwLock<Store>,
    boot_secs: u64,
}

impl State {
    fn new() -> Self {
        let boot_secs = now_secs();
        Self {
            store: RwLock::new(Store::generate(boot_secs)),
            boot_secs,
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(|e| e.into_inner())
    }
}

struct Store {
    owners: Vec<Owner>,
    accounts: Vec<Account>,
    /// Unix seconds of the last data change (boot time, then every POST).
    last_modified: u64,
}

struct Address {
    kind: &'static str,
    street: &'static str,
    city: &'static str,
    postal_code: &'static str,
    country: &'static str,
}

struct Owner {
    id: String,
    title: &'static str,
    first_name: &'static str,
    last_name: &'static str,
    email: String,
    customer_since: String,
    addresses: Vec<Address>,
}

struct Account {
    id: String,
    owner_id: String,
    kind: &'static str,
    name: String,
    iban: String,
    opened_on: String,
    balance_cents: i64,
    /// Oldest first; lists are served newest first.
    transactions: Vec<Txn>,
}

struct Merchant {
    name: &'static str,
    category: &'static str,
    mcc: &'static str,
    city: &'static str,
}

struct Txn {
    id: String,
    account_id: String,
    timestamp: i64,
    label: String,
    amount_cents: i64,
    balance_after_cents: i64,
    channel: &'static str,
    category: String,
    merchant: Option<&'static Merchant>,
    reference: String,
}

#[rustfmt::skip]
const MERCHANTS: &[Merchant] = &[
    Merchant { name: "Greenleaf Grocery", category: "groceries", mcc: "5411", city: "Lyon" },
    Merchant { name: "Le Petit Fournil", category: "groceries", mcc: "5462", city: "Paris" },
    Merchant { name: "Metro Transit Authority", category: "transport", mcc: "4111", city: "Paris" },
    Merchant { name: "Cafe des Arts", category: "restaurants", mcc: "5812", city: "Bordeaux" },
    Merchant { name: "Northwind Books", category: "shopping", mcc: "5942", city: "Nantes" },
    Merchant { name: "Stellar Cinema", category: "entertainment", mcc: "7832", city: "Lille" },
    Merchant { name: "Volt Energy", category: "utilities", mcc: "4900", city: "Paris" },
    Merchant { name: "Pharmacie Centrale", category: "health", mcc: "5912", city: "Toulouse" },
    Merchant { name: "Atlas Fuel Station", category: "transport", mcc: "5541", city: "Marseille" },
    Merchant { name: "Bluebird Telecom", category: "utilities", mcc: "4814", city: "Paris" },
    Merchant { name: "Sunrise Fitness Club", category: "health", mcc: "7997", city: "Nice" },
    Merchant { name: "Harbor Hardware", category: "home", mcc: "5251", city: "Brest" },
    Merchant { name: "Pixel Electronics", category: "shopping", mcc: "5732", city: "Rennes" },
    Merchant { name: "Trattoria Roma", category: "restaurants", mcc: "5812", city: "Strasbourg" },
    Merchant { name: "SkyHop Airlines", category: "travel", mcc: "4511", city: "Roissy" },
    Merchant { name: "Hotel du Lac", category: "travel", mcc: "7011", city: "Annecy" },
];

/// Deterministic 64-bit linear congruential generator (Knuth's MMIX constants).
struct Lcg(u64);

impl Lcg {
    fn new(seed: u64) -> Self {
        let mut rng = Lcg(seed ^ 0x9E37_79B9_7F4A_7C15);
        rng.next_u64();
        rng
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Output mixing: the high bits of an LCG are the good ones.
        let x = self.0;
        x ^ (x >> 29)
    }

    /// Uniform-ish integer in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo + 1).max(1) as u64;
        lo + ((self.next_u64() >> 16) % span) as i64
    }
}

impl Store {
    fn generate(boot_secs: u64) -> Self {
        let mut rng = Lcg::new(0x0BA4_C0DE);
        let people: [(&str, &str, &str, &str, &str, &str, &str); 4] = [
            (
                "Mr",
                "Arthur",
                "Dent",
                "155 Country Lane",
                "Cottington",
                "CT1 4DW",
                "GB",
            ),
            (
                "Ms",
                "Tricia",
                "McMillan",
                "12 Islington Row",
                "London",
                "N1 8QH",
                "GB",
            ),
            (
                "Dr",
                "Ford",
                "Prefect",
                "7 Rue de la Paix",
                "Paris",
                "75002",
                "FR",
            ),
            (
                "Mrs",
                "Fenchurch",
                "Pollard",
                "42 Quai des Chartrons",
                "Bordeaux",
                "33000",
                "FR",
            ),
        ];
        let mut owners = Vec::new();
        let mut accounts = Vec::new();
        for (i, (title, first, last, street, city, postal, country)) in
            people.into_iter().enumerate()
        {
            let owner_id = format!("O{}", i + 1);
            let since = HISTORY_END - rng.range(3 * 365, 15 * 365) * 86_400;
            owners.push(Owner {
                id: owner_id.clone(),
                title,
                first_name: first,
                last_name: last,
                email: format!(
                    "{}.{}@example.com",
                    first.to_lowercase(),
                    last.to_lowercase()
                ),
                customer_since: fmt_date(since),
                addresses: vec![
                    Address {
                        kind: "home",
                        street,
                        city,
                        postal_code: postal,
                        country,
                    },
                    Address {
                        kind: "work",
                        street: "1 Galaxy Business Park",
                        city: "Lyon",
                        postal_code: "69003",
                        country: "FR",
                    },
                ],
            });
            for (j, kind) in ["checking", "savings"].into_iter().enumerate() {
                let n = i * 2 + j + 1;
                let id = format!("A{n}");
                let opened = since + rng.range(0, 400) * 86_400;
                let transactions = generate_transactions(&id, kind, &mut rng);
                let balance_cents = transactions.last().map_or(0, |t| t.balance_after_cents);
                accounts.push(Account {
                    name: format!("{first} {last} - {kind}"),
                    iban: format!(
                        "FR76 3000 4{:03} {:04} {:04} {:04} {:03}",
                        n,
                        rng.range(0, 9999),
                        rng.range(0, 9999),
                        rng.range(0, 9999),
                        rng.range(0, 999)
                    ),
                    id,
                    owner_id: owner_id.clone(),
                    kind,
                    opened_on: fmt_date(opened),
                    balance_cents,
                    transactions,
                });
            }
        }
        Store {
            owners,
            accounts,
            last_modified: boot_secs,
        }
    }

    fn owner(&self, id: &str) -> Option<&Owner> {
        self.owners.iter().find(|o| o.id == id)
    }

    fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }
}

fn generate_transactions(account_id: &str, kind: &str, rng: &mut Lcg) -> Vec<Txn> {
    let start = HISTORY_END - HISTORY_SPAN;
    let step = HISTORY_SPAN / TXNS_PER_ACCOUNT as i64;
    let mut drafts = Vec::with_capacity(TXNS_PER_ACCOUNT);
    for i in 0..TXNS_PER_ACCOUNT {
        let timestamp = start + i as i64 * step + rng.range(0, step - 1);
        let (label, amount_cents, channel, category, merchant) = if i % 30 == 7 {
            let amount = if kind == "checking" {
                rng.range(250_000, 350_000)
            } else {
                rng.range(20_000, 60_000)
            };
            let label = if kind == "checking" {
                "SALARY TRANSFER GALAXY PUBLISHING LTD".to_string()
            } else {
                "STANDING ORDER FROM CHECKING".to_string()
            };
            (label, amount, "transfer", "income".to_string(), None)
        } else if kind == "savings" && i % 10 == 3 {
            let amount = rng.range(100, 2_500);
            (
                "MONTHLY INTEREST CREDIT".to_string(),
                amount,
                "interest",
                "income".to_string(),
                None,
            )
        } else {
            let m = &MERCHANTS[(rng.next_u64() >> 40) as usize % MERCHANTS.len()];
            let amount = -rng.range(150, if kind == "savings" { 4_000 } else { 15_000 });
            let label = format!(
                "CARD PAYMENT {} {}",
                m.name.to_uppercase(),
                m.city.to_uppercase()
            );
            (label, amount, "card", m.category.to_string(), Some(m))
        };
        drafts.push(Txn {
            id: format!("T-{account_id}-{:04}", i + 1),
            account_id: account_id.to_string(),
            timestamp,
            label,
            amount_cents,
            balance_after_cents: 0,
            channel,
            category,
            merchant,
            reference: format!(
                "RF{:02}{:010}{:06}",
                rng.range(10, 99),
                rng.range(0, 9_999_999_999),
                i + 1
            ),
        });
    }
    // Choose an opening balance so the running balance ends at a plausible positive value.
    let total: i64 = drafts.iter().map(|t| t.amount_cents).sum();
    let target = if kind == "checking" {
        rng.range(80_000, 600_000)
    } else {
        rng.range(1_000_000, 4_000_000)
    };
    let mut running = target - total;
    for t in &mut drafts {
        running += t.amount_cents;
        t.balance_after_cents = running;
    }
    drafts
}

// ---------------------------------------------------------------------------------------------
// JSON representations
// ---------------------------------------------------------------------------------------------

fn money(cents: i64) -> Value {
    serde_json::Number::from_f64(cents as f64 / 100.0).map_or(Value::Null, Value::Number)
}

fn owner_summary(o: &Owner) -> Value {
    json!({
        "id": o.id,
        "title": o.title,
        "firstName": o.first_name,
        "lastName": o.last_name,
        "_links": {
            "self": { "href": format!("/owners/{}", o.id) },
            "accounts": { "href": format!("/owners/{}/accounts", o.id) },
        },
    })
}

fn owner_full(o: &Owner, store: &Store) -> Value {
    let addresses: Vec<Value> = o
        .addresses
        .iter()
        .map(|a| {
            json!({
                "type": a.kind,
                "street": a.street,
                "city": a.city,
                "postalCode": a.postal_code,
                "country": a.country,
            })
        })
        .collect();
    let accounts: Vec<&str> = store
        .accounts
        .iter()
        .filter(|a| a.owner_id == o.id)
        .map(|a| a.id.as_str())
        .collect();
    json!({
        "id": o.id,
        "title": o.title,
        "firstName": o.first_name,
        "lastName": o.last_name,
        "email": o.email,
        "customerSince": o.customer_since,
        "addresses": addresses,
        "accounts": accounts,
        "_links": {
            "self": { "href": format!("/owners/{}", o.id) },
            "accounts": { "href": format!("/owners/{}/accounts", o.id) },
        },
    })
}

fn account_summary(a: &Account) -> Value {
    json!({
        "id": a.id,
        "ownerId": a.owner_id,
        "type": a.kind,
        "balance": money(a.balance_cents),
        "currency": "EUR",
        "_links": {
            "self": { "href": format!("/accounts/{}", a.id) },
            "transactions": { "href": format!("/accounts/{}/transactions", a.id) },
        },
    })
}

fn account_full(a: &Account) -> Value {
    json!({
        "id": a.id,
        "ownerId": a.owner_id,
        "type": a.kind,
        "name": a.name,
        "iban": a.iban,
        "currency": "EUR",
        "balance": money(a.balance_cents),
        "openedOn": a.opened_on,
        "transactionCount": a.transactions.len(),
        "_links": {
            "self": { "href": format!("/accounts/{}", a.id) },
            "owner": { "href": format!("/owners/{}", a.owner_id) },
            "transactions": { "href": format!("/accounts/{}/transactions", a.id) },
        },
    })
}

fn txn_json(t: &Txn) -> Value {
    let merchant = t.merchant.map_or(Value::Null, |m| {
        json!({
            "name": m.name,
            "mcc": m.mcc,
            "city": m.city,
        })
    });
    json!({
        "id": t.id,
        "date": fmt_rfc3339(t.timestamp),
        "valueDate": fmt_date(t.timestamp + 86_400),
        "label": t.label,
        "amount": money(t.amount_cents),
        "type": if t.amount_cents < 0 { "debit" } else { "credit" },
        "status": "booked",
        "channel": t.channel,
        "category": t.category,
        "merchant": merchant,
        "reference": t.reference,
        "balanceAfter": money(t.balance_after_cents),
    })
}

// ---------------------------------------------------------------------------------------------
// Request handling
// ---------------------------------------------------------------------------------------------

/// Build a response; `body` is sent as-is.
fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    set_header(&mut resp, CONTENT_TYPE, content_type);
    resp
}

fn set_header(resp: &mut Response<Full<Bytes>>, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// A cacheable JSON document with `Cache-Control`, `Last-Modified` and optional `Surrogate-Key`.
fn json_doc(
    value: &Value,
    cache_control: &str,
    surrogate_key: Option<&str>,
    last_modified: u64,
) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = respond(StatusCode::OK, JSON, body);
    set_header(&mut resp, CACHE_CONTROL, cache_control);
    set_header(&mut resp, LAST_MODIFIED, &http_date(last_modified));
    if let Some(key) = surrogate_key {
        set_header(&mut resp, HeaderName::from_static(SURROGATE_KEY), key);
    }
    resp
}

/// An RFC 9457 problem document (`application/problem+json`), never stored by caches.
fn problem(status: StatusCode, detail: &str, instance: &str) -> Response<Full<Bytes>> {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "instance": instance,
    });
    let mut resp = respond(
        status,
        PROBLEM_JSON,
        serde_json::to_vec(&body).unwrap_or_default(),
    );
    set_header(&mut resp, CACHE_CONTROL, CC_NO_STORE);
    resp
}

fn method_not_allowed(allow: &str, path: &str) -> Response<Full<Bytes>> {
    let mut resp = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("allowed methods: {allow}"),
        path,
    );
    set_header(&mut resp, ALLOW, allow);
    resp
}

fn not_found(path: &str) -> Response<Full<Bytes>> {
    problem(StatusCode::NOT_FOUND, "no such resource", path)
}

async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
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

async fn route(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
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

fn get_banking(segments: &[&str], query: &str, state: &State, path: &str) -> Response<Full<Bytes>> {
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

fn account_list(accounts: Vec<&Account>, owner: Option<&str>, lm: u64) -> Response<Full<Bytes>> {
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

fn transaction_page(a: &Account, query: &str, lm: u64, path: &str) -> Response<Full<Bytes>> {
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

async fn post_transaction(
    req: Request<Incoming>,
    state: &State,
    account_id: &str,
    path: &str,
) -> Response<Full<Bytes>> {
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

fn get_me(req: &Request<Incoming>, state: &State, path: &str) -> Response<Full<Bytes>> {
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

fn get_blob(n: &str, query: &str, state: &State, path: &str) -> Response<Full<Bytes>> {
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

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn http_date(secs: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn fmt_date(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

fn fmt_rfc3339(secs: i64) -> String {
    let rem = secs.rem_euclid(86_400);
    format!(
        "{}T{:02}:{:02}:{:02}Z",
        fmt_date(secs),
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    async fn start() -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_origin(listener, async move {
            let _ = rx.await;
        }));
        (format!("http://{addr}"), tx, task)
    }

    fn header<'a>(resp: &'a reqwest::Response, name: &str) -> &'a str {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[test]
    fn every_first_page_is_about_32_kib() {
        let store = Store::generate(0);
        for a in &store.accounts {
            let items: Vec<Value> = a
                .transactions
                .iter()
                .rev()
                .take(100)
                .map(txn_json)
                .collect();
            let len = serde_json::to_vec(&items).map_or(0, |v| v.len());
            assert!((30 * 1024..=34 * 1024).contains(&len), "{}: {len}", a.id);
        }
    }

    #[test]
    fn dates_format() {
        assert_eq!(fmt_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_rfc3339(HISTORY_END), "2025-06-30T18:00:00Z");
        assert_eq!(fmt_date(951_782_400), "2000-02-29");
    }

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

        shutdown.send(()).expect("shutdown");
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("server stops")
            .expect("server task");
    }
}
