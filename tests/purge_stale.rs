//! Purges (tag, URL, all, soft), the admin API, stale-while-revalidate and stale-if-error, over real HTTP.

mod support;
use support::*;

use std::time::Duration;

use http::HeaderMap;
use tokio::task::JoinSet;

const TOKEN: &str = "0123456789abcdef0123";

/// One request in a table: method, path, extra headers.
type Attempt<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

fn admin_section(port: u16) -> String {
    format!("[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n")
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// apicache with the admin listener on its own 127.0.0.1 port, plus `extra` TOML sections.
///
/// `[admin] listen = "127.0.0.1:0"` is rejected by config validation while the harness's public
/// listener is also `127.0.0.1:0` (see `admin_listen_on_port_zero_is_accepted`), so a free port is
/// picked here, with a retry in case another test grabbed it in between.
async fn proxy_admin(origin: &Origin, extra: &str) -> apicache::Running {
    let mut last_err = String::new();
    for _ in 0..10 {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n[origin]\nurl = \"{}\"\ntimeout = \"1s\"\nconnect_timeout = \"1s\"\n{}{extra}",
            origin.url(),
            admin_section(free_port()),
        );
        let cfg = apicache::Config::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        match apicache::start(cfg).await {
            Ok(r) => {
                assert!(r.admin_addr.is_some());
                return r;
            }
            Err(e) => last_err = e.to_string(),
        }
    }
    panic!("could not start apicache with an admin listener: {last_err}");
}

/// One admin call: `token` None sends no Authorization header.
async fn admin_req(
    p: &apicache::Running,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    token: Option<&str>,
) -> (u16, HeaderMap, String) {
    let addr = p.admin_addr.expect("admin listener configured");
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut rb = client().request(method, format!("http://{addr}{path}"));
    if let Some(t) = token {
        rb = rb.header("authorization", format!("Bearer {t}"));
    }
    for (k, v) in headers {
        rb = rb.header(*k, *v);
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let body = resp.text().await.unwrap();
    (status, h, body)
}

/// An authorized admin call that must answer 200 `{"purged":N}`; returns N.
async fn purge(p: &apicache::Running, method: &str, path: &str, headers: &[(&str, &str)]) -> u64 {
    let (status, _, body) = admin_req(p, method, path, headers, Some(TOKEN)).await;
    assert_eq!(status, 200, "{method} {path}: {body}");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{method} {path}: {e}: {body}"));
    v["purged"]
        .as_u64()
        .unwrap_or_else(|| panic!("no purged count: {body}"))
}

/// A request with any method to the PUBLIC port.
async fn public_req(
    p: &apicache::Running,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, HeaderMap, String) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let (status, h, body) = send(p, method, path, headers).await;
    (status, h, String::from_utf8(body.to_vec()).unwrap())
}

fn hval<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
}

fn body_str(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// GET `path` and assert the X-Cache result and body; returns the headers.
async fn expect(p: &apicache::Running, path: &str, xc: &str, body: &str) -> HeaderMap {
    let (status, h, b) = get(p, path).await;
    assert_eq!(status, 200, "{path}: {}", body_str(&b));
    assert_eq!(
        xcache(&h),
        xc,
        "{path}: cache-status={}",
        hval(&h, "cache-status")
    );
    assert_eq!(body_str(&b), body, "{path}");
    h
}

fn origin_count_for(origin: &Origin, path: &str) -> usize {
    counts(origin).get(path).copied().unwrap_or(0)
}

/// Wait (bounded) until nothing accepts connections on the origin's address any more.
async fn wait_refused(origin: &Origin) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(origin.addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "origin {} still accepts connections after stop()",
        origin.addr
    );
}

/// Origin pages for a small shop: what each page carries as surrogate keys.
fn shop_reply(s: &Seen) -> Reply {
    let path = s.path_and_query.as_str();
    let keys = match path {
        "/products/12345" => "prod-12345",
        "/categories/17?page=2" => "cat-17 prod-12345 prod-999",
        "/search?q=x" => "search prod-12345",
        "/products/999" => "prod-999",
        "/a" => "a",
        "/b" => "b",
        "/ab" => "a b",
        "/c" => "c",
        _ => "other",
    };
    Reply::ok(format!("{{\"page\":\"{path}\"}}"))
        .header("cache-control", "max-age=300")
        .header("surrogate-key", keys)
}

fn page(path: &str) -> String {
    format!("{{\"page\":\"{path}\"}}")
}

// 1a. One tag purge removes a product from every list and page that carried it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_purge_removes_product_from_every_page() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    let tagged = ["/products/12345", "/categories/17?page=2", "/search?q=x"];
    for path in tagged.iter().chain(["/products/999"].iter()) {
        expect(&p, path, "MISS", &page(path)).await;
        expect(&p, path, "HIT", &page(path)).await;
    }
    assert_eq!(origin.count(), 4);

    assert_eq!(purge(&p, "POST", "/purge/prod-12345", &[]).await, 3);
    for path in tagged {
        expect(&p, path, "MISS", &page(path)).await;
    }
    assert_eq!(origin.count(), 7, "the three tagged pages refetched");
    for path in tagged {
        assert_eq!(origin_count_for(&origin, path), 2, "{path}");
        expect(&p, path, "HIT", &page(path)).await;
    }
    expect(&p, "/products/999", "HIT", &page("/products/999")).await;
    assert_eq!(origin.count(), 7);

    // Purging the tag again finds only the refetched copies; an unknown tag finds nothing.
    assert_eq!(purge(&p, "POST", "/purge/prod-12345", &[]).await, 3);
    assert_eq!(purge(&p, "POST", "/purge/prod-77", &[]).await, 0);
    p.shutdown().await;
}

// 1b. `POST /purge` with a Surrogate-Key header list purges every named tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_key_header_purges_several_tags() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    for path in ["/a", "/b", "/ab", "/c"] {
        expect(&p, path, "MISS", &page(path)).await;
        expect(&p, path, "HIT", &page(path)).await;
    }
    // `/ab` carries both tags but is one entry: counted once.
    assert_eq!(
        purge(&p, "POST", "/purge", &[("surrogate-key", "a, b")]).await,
        3
    );
    for path in ["/a", "/b", "/ab"] {
        expect(&p, path, "MISS", &page(path)).await;
    }
    expect(&p, "/c", "HIT", &page("/c")).await;
    assert_eq!(origin.count(), 7);

    // Space separated, and several header lines, work the same way.
    let (status, _, body) = admin_req(
        &p,
        "POST",
        "/purge",
        &[("surrogate-key", "a"), ("surrogate-key", "c")],
        Some(TOKEN),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "{\"purged\":3}"));
    for path in ["/a", "/ab", "/c"] {
        expect(&p, path, "MISS", &page(path)).await;
    }
    expect(&p, "/b", "HIT", &page("/b")).await;

    // Malformed purge requests are refused and purge nothing.
    let (status, _, _) = admin_req(&p, "POST", "/purge", &[], Some(TOKEN)).await;
    assert_eq!(status, 400, "no Surrogate-Key header");
    let many: Vec<String> = (0..257).map(|i| format!("k{i}")).collect();
    let many = many.join(" ");
    let (status, _, _) = admin_req(
        &p,
        "POST",
        "/purge",
        &[("surrogate-key", &many)],
        Some(TOKEN),
    )
    .await;
    assert_eq!(status, 400, "257 keys");
    let exactly: Vec<String> = (0..255)
        .map(|i| format!("k{i}"))
        .chain(["b".into()])
        .collect();
    assert_eq!(
        purge(
            &p,
            "POST",
            "/purge",
            &[("surrogate-key", &exactly.join(" "))]
        )
        .await,
        2,
        "256 keys are allowed (`b` is on /b and the refetched /ab)"
    );
    let (status, _, _) = admin_req(&p, "POST", "/purge/", &[], Some(TOKEN)).await;
    assert_eq!(status, 400, "empty key");
    expect(&p, "/c", "HIT", &page("/c")).await;
    p.shutdown().await;
}

// 1c. Route tag templates (`account-{id}`) are purgeable like origin surrogate keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_tag_template_purges_account() {
    let origin = Origin::start(|s: &Seen| {
        Reply::ok(format!("{{\"account\":\"{}\"}}", s.path_and_query))
            .header("cache-control", "max-age=300")
    })
    .await;
    let p = proxy_admin(
        &origin,
        "[[routes]]\npath = \"/accounts/{id}\"\ntags = [\"account-{id}\"]\n",
    )
    .await;
    let body = |id: &str| format!("{{\"account\":\"/accounts/{id}\"}}");
    for id in ["A1", "B2"] {
        expect(&p, &format!("/accounts/{id}"), "MISS", &body(id)).await;
        expect(&p, &format!("/accounts/{id}"), "HIT", &body(id)).await;
    }
    assert_eq!(purge(&p, "POST", "/purge/account-A1", &[]).await, 1);
    expect(&p, "/accounts/A1", "MISS", &body("A1")).await;
    expect(&p, "/accounts/B2", "HIT", &body("B2")).await;
    assert_eq!(origin.count(), 3);
    assert_eq!(
        purge(&p, "POST", "/purge", &[("surrogate-key", "account-B2")]).await,
        1
    );
    expect(&p, "/accounts/B2", "MISS", &body("B2")).await;
    p.shutdown().await;
}

// 2. URL purge: unnormalized target, every Vary variant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_purge_normalizes_and_removes_all_vary_variants() {
    let origin = Origin::start(|s: &Seen| {
        let lang = s.header("accept-language");
        Reply::ok(format!("{{\"lang\":\"{lang}\"}}"))
            .header("cache-control", "max-age=300")
            .header("vary", "Accept-Language")
    })
    .await;
    let p = proxy_admin(&origin, "").await;
    let fetch = |lang: &'static str| {
        let p = &p;
        async move {
            let (status, h, b) = get_with(p, "/x?a=1&b=2", &[("accept-language", lang)]).await;
            assert_eq!(status, 200);
            assert_eq!(body_str(&b), format!("{{\"lang\":\"{lang}\"}}"));
            xcache(&h).to_string()
        }
    };
    assert_eq!(fetch("en").await, "MISS");
    assert_eq!(fetch("fr").await, "MISS");
    assert_eq!(fetch("en").await, "HIT");
    assert_eq!(fetch("fr").await, "HIT");
    // An unrelated URL survives.
    let (_, h, _) = get(&p, "/y").await;
    assert_eq!(xcache(&h), "MISS");
    assert_eq!(origin.count(), 3);

    // Both variants live in one entry: one entry purged.
    assert_eq!(purge(&p, "PURGE", "/x?b=2&a=1", &[]).await, 1);
    assert_eq!(fetch("en").await, "MISS");
    assert_eq!(fetch("fr").await, "MISS");
    assert_eq!(origin.count(), 5, "both variants refetched");
    assert_eq!(fetch("en").await, "HIT");
    assert_eq!(fetch("fr").await, "HIT");
    let (_, h, _) = get(&p, "/y").await;
    assert_eq!(xcache(&h), "HIT");
    // A URL nothing is stored under purges nothing.
    assert_eq!(purge(&p, "PURGE", "/x?a=1", &[]).await, 0);
    assert_eq!(fetch("en").await, "HIT");
    p.shutdown().await;
}

// 3. `POST /purge-all` empties the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_empties_the_cache() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    for path in ["/a", "/b", "/c"] {
        expect(&p, path, "MISS", &page(path)).await;
        expect(&p, path, "HIT", &page(path)).await;
    }
    purge(&p, "POST", "/purge-all", &[]).await;
    let (status, _, stats) = admin_req(&p, "GET", "/stats", &[], Some(TOKEN)).await;
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["objects"], 0, "{stats}");
    assert_eq!(stats["tags"], 0, "{stats}");
    for path in ["/a", "/b", "/c"] {
        expect(&p, path, "MISS", &page(path)).await;
    }
    assert_eq!(origin.count(), 6);
    p.shutdown().await;
}

// 3a. The `{"purged":N}` of a purge-all counts what it removed, even right after the fills.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_reports_entries_removed() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    for path in ["/a", "/b", "/c"] {
        expect(&p, path, "MISS", &page(path)).await;
    }
    assert_eq!(purge(&p, "POST", "/purge-all", &[]).await, 3);
    p.shutdown().await;
}

// 3b. After a /stats (which syncs the store), purge-all counts right and empties the tag index.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_all_then_stats_show_nothing_stored() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    for path in ["/a", "/b", "/c"] {
        expect(&p, path, "MISS", &page(path)).await;
    }
    let (_, _, stats) = admin_req(&p, "GET", "/stats", &[], Some(TOKEN)).await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["objects"], 3, "{stats}");
    assert_eq!(purge(&p, "POST", "/purge-all", &[]).await, 3);
    let (_, _, stats) = admin_req(&p, "GET", "/stats", &[], Some(TOKEN)).await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(stats["objects"], 0, "{stats}");
    assert_eq!(stats["tags"], 0, "{stats}");
    assert_eq!(p.proxy.store().tag_index().links(), 0);
    for path in ["/a", "/b", "/c"] {
        expect(&p, path, "MISS", &page(path)).await;
        expect(&p, path, "HIT", &page(path)).await;
    }
    assert_eq!(origin.count(), 6);
    // Tag purges work again after a purge-all.
    assert_eq!(purge(&p, "POST", "/purge/a", &[]).await, 1);
    expect(&p, "/a", "MISS", &page("/a")).await;
    p.shutdown().await;
}

// 4a. Soft purge, then the origin fails: the old object is served stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_serves_stale_when_origin_fails() {
    let origin = Origin::start(|_s: &Seen| {
        Reply::ok("{\"v\":1}")
            .header("cache-control", "max-age=60, stale-if-error=300")
            .header("surrogate-key", "k")
    })
    .await;
    let p = proxy_admin(&origin, "").await;
    expect(&p, "/s", "MISS", "{\"v\":1}").await;
    expect(&p, "/s", "HIT", "{\"v\":1}").await;
    assert_eq!(
        purge(&p, "POST", "/purge/k", &[("soft-purge", "1")]).await,
        1
    );

    origin.set_handler(|_s: &Seen| Reply::ok("down").status(503));
    let before = origin.count();
    let h = expect(&p, "/s", "STALE", "{\"v\":1}").await;
    let cs = hval(&h, "cache-status");
    assert!(cs.contains("fwd=stale"), "{cs}");
    assert!(cs.contains("fwd-status=503"), "{cs}");
    assert_eq!(
        origin.count(),
        before + 1,
        "a soft-purged object is refreshed first"
    );
    // Still soft-purged: the next request tries the origin again and gets stale again.
    expect(&p, "/s", "STALE", "{\"v\":1}").await;
    assert_eq!(origin.count(), before + 2);

    // Origin back: the next request refreshes and later ones are plain hits.
    origin.set_handler(|_s: &Seen| {
        Reply::ok("{\"v\":2}")
            .header("cache-control", "max-age=60, stale-if-error=300")
            .header("surrogate-key", "k")
    });
    expect(&p, "/s", "MISS", "{\"v\":2}").await;
    expect(&p, "/s", "HIT", "{\"v\":2}").await;
    assert_eq!(origin.count(), before + 3);
    p.shutdown().await;
}

// 4b. Soft purge with the origin up: the next request revalidates with If-None-Match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_revalidates_when_origin_is_up() {
    let origin = Origin::start(|s: &Seen| {
        let etag = format!("\"{}-v1\"", s.path_and_query.trim_start_matches('/'));
        let base = |r: Reply| {
            r.header("cache-control", "max-age=60, stale-if-error=300")
                .header("etag", &etag)
        };
        if s.headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
            base(Reply::ok("").status(304))
        } else {
            base(Reply::ok(format!("{{\"p\":\"{}\"}}", s.path_and_query)))
        }
    })
    .await;
    let p = proxy_admin(&origin, "").await;
    let body = |path: &str| format!("{{\"p\":\"{path}\"}}");
    expect(&p, "/r", "MISS", &body("/r")).await;
    expect(&p, "/r", "HIT", &body("/r")).await;
    assert_eq!(origin.count(), 1);

    // URL purge with the Fastly spelling of soft purge.
    assert_eq!(
        purge(&p, "PURGE", "/r", &[("fastly-soft-purge", "1")]).await,
        1
    );
    let h = expect(&p, "/r", "HIT", &body("/r")).await;
    assert_eq!(origin.count(), 2, "one revalidation");
    let seen = origin.last();
    assert_eq!(seen.path_and_query, "/r");
    assert_eq!(
        seen.headers
            .get("if-none-match")
            .map(|v| v.to_str().unwrap()),
        Some("\"r-v1\""),
        "the revalidation carried the stored validator"
    );
    let cs = hval(&h, "cache-status");
    assert!(cs.contains("fwd-status=304"), "{cs}");
    // Fresh again after the 304.
    expect(&p, "/r", "HIT", &body("/r")).await;
    assert_eq!(origin.count(), 2);

    // Soft purge-all marks everything stale; each object revalidates once.
    expect(&p, "/q", "MISS", &body("/q")).await;
    assert_eq!(
        purge(&p, "POST", "/purge-all", &[("soft-purge", "1")]).await,
        2
    );
    expect(&p, "/r", "HIT", &body("/r")).await;
    expect(&p, "/q", "HIT", &body("/q")).await;
    assert_eq!(origin.count(), 5);
    assert!(origin.last().headers.contains_key("if-none-match"));
    expect(&p, "/r", "HIT", &body("/r")).await;
    expect(&p, "/q", "HIT", &body("/q")).await;
    assert_eq!(origin.count(), 5);
    // Soft purge only with the value 1.
    assert_eq!(purge(&p, "PURGE", "/r", &[("soft-purge", "0")]).await, 1);
    expect(&p, "/r", "MISS", &body("/r")).await;
    p.shutdown().await;
}

// 5. The admin token guards everything but /healthz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_requires_token() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    expect(&p, "/a", "MISS", &page("/a")).await;

    let wrong_token = "0123456789abcdef0124";
    let attempts: [(Attempt, Option<&str>); 9] = [
        (("POST", "/purge/a", vec![]), None),
        (("POST", "/purge/a", vec![]), Some(wrong_token)),
        (("POST", "/purge/a", vec![]), Some("")),
        (("POST", "/purge/a", vec![]), Some("0123456789abcdef012")),
        (("POST", "/purge/a", vec![]), Some("0123456789abcdef01234")),
        (("POST", "/purge", vec![("surrogate-key", "a")]), None),
        (("PURGE", "/a", vec![]), None),
        (("POST", "/purge-all", vec![]), Some(wrong_token)),
        (("GET", "/stats", vec![]), None),
    ];
    for ((method, path, headers), token) in attempts {
        let (status, h, _) = admin_req(&p, method, path, &headers, token).await;
        assert_eq!(status, 401, "{method} {path} token={token:?}");
        assert_eq!(hval(&h, "www-authenticate"), "Bearer");
    }
    // The token in another scheme is not accepted either.
    let (status, _, _) = admin_req(
        &p,
        "POST",
        "/purge/a",
        &[("authorization", &format!("Basic {TOKEN}"))],
        None,
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = admin_req(&p, "GET", "/metrics", &[], None).await;
    assert_eq!(status, 401);
    expect(&p, "/a", "HIT", &page("/a")).await;
    assert_eq!(origin.count(), 1, "nothing was purged");

    // Health needs no token; unknown paths and methods are 404 once authorized.
    let (status, _, body) = admin_req(&p, "GET", "/healthz", &[], None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, _) = admin_req(&p, "GET", "/healthz", &[], Some(wrong_token)).await;
    assert_eq!(status, 200);
    let (status, _, _) = admin_req(&p, "GET", "/nope", &[], Some(TOKEN)).await;
    assert_eq!(status, 404);
    let (status, _, _) = admin_req(&p, "GET", "/purge/a", &[], Some(TOKEN)).await;
    assert_eq!(status, 404, "GET is not a purge");
    let (status, _, _) = admin_req(&p, "DELETE", "/purge-all", &[], Some(TOKEN)).await;
    assert_eq!(status, 404);
    let (status, _, _) = admin_req(&p, "GET", "/stats", &[], Some(TOKEN)).await;
    assert_eq!(status, 200);
    expect(&p, "/a", "HIT", &page("/a")).await;

    // The right token purges.
    assert_eq!(purge(&p, "POST", "/purge/a", &[]).await, 1);
    expect(&p, "/a", "MISS", &page("/a")).await;
    p.shutdown().await;
}

// 6. Purge-looking requests on the public port go to the origin and purge nothing by tag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_port_never_purges() {
    let origin = Origin::start(|s: &Seen| {
        if s.path_and_query == "/items/1" {
            Reply::ok("{\"item\":1}")
                .header("cache-control", "max-age=300")
                .header("surrogate-key", "x all")
        } else {
            Reply::ok(format!("origin saw {} {}", s.method, s.path_and_query))
        }
    })
    .await;
    let p = proxy_admin(&origin, "").await;
    expect(&p, "/items/1", "MISS", "{\"item\":1}").await;
    expect(&p, "/items/1", "HIT", "{\"item\":1}").await;

    let tok = format!("Bearer {TOKEN}");
    let attempts: [Attempt; 5] = [
        ("POST", "/purge/x", vec![]),
        ("PURGE", "/x", vec![]),
        ("POST", "/purge", vec![("surrogate-key", "x all")]),
        ("POST", "/purge-all", vec![]),
        ("POST", "/purge/x", vec![("authorization", &tok)]),
    ];
    for (method, path, headers) in attempts {
        let before = origin.count();
        let (status, h, body) = public_req(&p, method, path, &headers).await;
        assert_eq!(status, 200, "{method} {path}");
        assert_eq!(body, format!("origin saw {method} {path}"));
        assert_eq!(xcache(&h), "PASS");
        assert_eq!(origin.count(), before + 1);
        let seen = origin.last();
        assert_eq!(
            (seen.method.as_str(), seen.path_and_query.as_str()),
            (method, path)
        );
        expect(&p, "/items/1", "HIT", "{\"item\":1}").await;
    }
    assert_eq!(origin_count_for(&origin, "/items/1"), 1);
    // The admin API still sees the object under its tag.
    assert_eq!(purge(&p, "POST", "/purge/x", &[]).await, 1);
    p.shutdown().await;
}

/// The "old" version goes stale after 1 s; the "new" one stays fresh, so after the refresh a STALE
/// answer can only be the old body and a HIT only the new one, however slow the machine.
fn swr_reply(version: &'static str) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    let cc = if version == "old" {
        "max-age=1, stale-while-revalidate=30"
    } else {
        "max-age=300, stale-while-revalidate=30"
    };
    move |s: &Seen| {
        Reply::ok(format!(
            "{{\"v\":\"{version}\",\"p\":\"{}\"}}",
            s.path_and_query
        ))
        .header("cache-control", cc)
        .header("etag", &format!("\"{version}\""))
    }
}

fn swr_body(version: &str, path: &str) -> String {
    format!("{{\"v\":\"{version}\",\"p\":\"{path}\"}}")
}

/// Fire 50 concurrent GETs at a stale-while-revalidate object whose origin now has a new version;
/// check what each client got, wait (bounded) for the refresh to land, and return
/// (stale answers, origin requests for `path` caused by the burst).
async fn swr_burst(p: &apicache::Running, origin: &Origin, path: &str) -> (usize, usize) {
    let before = origin_count_for(origin, path);
    let (old, new) = (swr_body("old", path), swr_body("new", path));
    let c = client();
    let mut set = JoinSet::new();
    for _ in 0..50 {
        let c = c.clone();
        let u = url(p, path);
        set.spawn(async move {
            let r = c.get(u).send().await.unwrap();
            let status = r.status().as_u16();
            let xc = xcache(r.headers()).to_string();
            let cs = hval(r.headers(), "cache-status").to_string();
            let body = r.text().await.unwrap();
            (status, xc, cs, body)
        });
    }
    let mut stale = 0;
    while let Some(r) = set.join_next().await {
        let (status, xc, cs, body) = r.unwrap();
        assert_eq!(status, 200, "{path}");
        match xc.as_str() {
            "STALE" => {
                assert_eq!(body, old, "a STALE answer has the old body");
                assert!(cs.contains("fwd=stale"), "{cs}");
                assert!(cs.contains("stale-while-revalidate"), "{cs}");
                stale += 1;
            }
            "HIT" => assert_eq!(body, new, "a HIT after the refresh has the new body"),
            other => panic!("{path}: X-Cache {other} ({cs}) during stale-while-revalidate"),
        }
    }
    assert!(
        stale >= 1,
        "{path}: the refresh is triggered by a stale answer"
    );

    // Let the background refresh land (bounded: ~2 s).
    let key = format!("GET {path}");
    let mut refreshed = false;
    for _ in 0..100 {
        if let apicache::cache::Lookup::Hit(o) =
            p.proxy.store().lookup(&key, &HeaderMap::new()).await
        {
            if o.body.as_ref() == new.as_bytes() {
                refreshed = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        refreshed,
        "{path}: the background refresh stored the new body"
    );
    expect(p, path, "HIT", &new).await;
    // Give any further (unwanted) refresh a moment to reach the origin.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (stale, origin_count_for(origin, path) - before)
}

// 7. stale-while-revalidate: a burst of requests on a stale object is answered at once with the old
// body, one background refresh (collapsed) brings the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_burst_then_refreshes() {
    let origin = Origin::start(swr_reply("old")).await;
    let p = proxy(&origin.url(), "").await;
    expect(&p, "/swr", "MISS", &swr_body("old", "/swr")).await;
    expect(&p, "/swr", "HIT", &swr_body("old", "/swr")).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set_handler(swr_reply("new"));
    let (stale, refreshes) = swr_burst(&p, &origin, "/swr").await;
    // Exactly one is asserted by `stale_while_revalidate_refreshes_exactly_once` (ignored: BUG).
    assert!(
        refreshes >= 1 && refreshes <= stale && refreshes < 50,
        "{refreshes} refreshes for {stale} stale answers"
    );
    p.shutdown().await;
}

// 7b. The refresh for a burst of stale requests happens exactly once (several objects, to catch the race).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_refreshes_exactly_once() {
    let origin = Origin::start(swr_reply("old")).await;
    let p = proxy(&origin.url(), "").await;
    let paths: Vec<String> = (0..8).map(|i| format!("/swr/{i}")).collect();
    for path in &paths {
        expect(&p, path, "MISS", &swr_body("old", path)).await;
    }
    tokio::time::sleep(Duration::from_millis(2100)).await;
    origin.set_handler(swr_reply("new"));
    let mut extra = Vec::new();
    for path in &paths {
        let (stale, refreshes) = swr_burst(&p, &origin, path).await;
        if refreshes != 1 {
            // Which stored object each origin request started from (its If-None-Match).
            let validators: Vec<String> = origin
                .seen
                .lock()
                .unwrap()
                .iter()
                .filter(|s| &s.path_and_query == path)
                .map(|s| {
                    let inm = s.headers.get("if-none-match");
                    inm.map_or("-", |v| v.to_str().unwrap()).to_string()
                })
                .collect();
            extra.push(format!(
                "{path}: {refreshes} refreshes ({stale} stale answers), If-None-Match: {validators:?}"
            ));
        }
    }
    assert!(extra.is_empty(), "{extra:?}");
    p.shutdown().await;
}

fn sie_reply(body: &'static str) -> impl Fn(&Seen) -> Reply + Send + Sync + 'static {
    move |_s: &Seen| {
        Reply::ok(body)
            .header("cache-control", "max-age=1, stale-if-error=300")
            // No pooled connection may outlive stop(): every exchange uses its own connection.
            .header("connection", "close")
    }
}

// 8a. stale-if-error covers an origin 5xx, a timeout and a refused connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_covers_5xx_timeout_and_refused() {
    let origin = Origin::start(sie_reply("{\"v\":1}")).await;
    let p = proxy(&origin.url(), "").await;
    expect(&p, "/sie", "MISS", "{\"v\":1}").await;
    expect(&p, "/sie", "HIT", "{\"v\":1}").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    // 5xx from the origin.
    origin.set_handler(|_s: &Seen| Reply::ok("boom").status(503).header("connection", "close"));
    let before = origin.count();
    let h = expect(&p, "/sie", "STALE", "{\"v\":1}").await;
    let cs = hval(&h, "cache-status");
    assert!(
        cs.contains("fwd=stale") && cs.contains("fwd-status=503"),
        "{cs}"
    );
    assert!(cs.contains("stale-if-error"), "{cs}");
    assert_eq!(origin.count(), before + 1);
    origin.set_handler(|_s: &Seen| Reply::ok("boom").status(500).header("connection", "close"));
    let h = expect(&p, "/sie", "STALE", "{\"v\":1}").await;
    assert!(hval(&h, "cache-status").contains("fwd-status=500"));

    // The origin answers after the proxy's 1s timeout.
    origin.set_handler(|_s: &Seen| {
        Reply::ok("{\"v\":\"late\"}")
            .header("cache-control", "max-age=300")
            .header("connection", "close")
            .delay(Duration::from_millis(1600))
    });
    let h = expect(&p, "/sie", "STALE", "{\"v\":1}").await;
    let cs = hval(&h, "cache-status");
    assert!(cs.contains("fwd-status=504"), "{cs}");

    // The origin is gone: connection refused.
    origin.stop();
    wait_refused(&origin).await;
    let before = origin.count();
    let h = expect(&p, "/sie", "STALE", "{\"v\":1}").await;
    let cs = hval(&h, "cache-status");
    assert!(cs.contains("fwd-status=502"), "{cs}");
    expect(&p, "/sie", "STALE", "{\"v\":1}").await;
    assert_eq!(origin.count(), before);
    p.shutdown().await;
}

// 8b. Once the stale-if-error window has passed, the client gets the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_window_expires() {
    let origin = Origin::start(|_s: &Seen| {
        Reply::ok("{\"v\":1}")
            .header("cache-control", "max-age=1, stale-if-error=1")
            // A validator keeps the stale object in the store, so the window itself is what is tested.
            .header("etag", "\"v1\"")
            .header("connection", "close")
    })
    .await;
    let p = proxy(&origin.url(), "").await;
    expect(&p, "/gone", "MISS", "{\"v\":1}").await;
    // Whole seconds: age 3 > max-age 1 + stale-if-error 1.
    tokio::time::sleep(Duration::from_millis(3100)).await;

    origin.set_handler(|_s: &Seen| Reply::ok("boom").status(503).header("connection", "close"));
    let (status, h, body) = get(&p, "/gone").await;
    assert_eq!(status, 503, "{}", body_str(&body));
    assert_ne!(xcache(&h), "STALE");
    assert_eq!(body_str(&body), "boom");

    origin.stop();
    wait_refused(&origin).await;
    let (status, h, _) = get(&p, "/gone").await;
    assert!((502..=504).contains(&status), "got {status}");
    assert_ne!(xcache(&h), "STALE");
    p.shutdown().await;
}

// 9. Under eviction pressure the tag index holds exactly the live entries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_index_stays_exact_under_eviction() {
    let origin = Origin::start(|s: &Seen| {
        let i = s.path_and_query.trim_start_matches("/obj/").to_string();
        Reply::ok(json_body(4096, &i))
            .header("cache-control", "max-age=300")
            .header("surrogate-key", &format!("t-{i} all"))
    })
    .await;
    let p = proxy_admin(
        &origin,
        "[cache]\nmax_size = \"256KiB\"\nmax_object_size = \"64KiB\"\n",
    )
    .await;
    let c = client();
    for i in 0..400 {
        let r = c.get(url(&p, &format!("/obj/{i}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let _ = r.bytes().await.unwrap();
    }
    assert_eq!(origin.count(), 400);
    let store = p.proxy.store();
    store.run_pending_tasks().await;
    let entries = store.entry_count();
    assert!(entries > 0 && entries < 400, "{entries} entries");
    assert!(
        store.weighted_size() <= 256 * 1024,
        "weighted size {}",
        store.weighted_size()
    );
    let idx = store.tag_index();
    let all = idx.keys("all");
    assert_eq!(all.len() as u64, entries, "every key under `all` is live");
    // Each live entry carries exactly three links: t-<i>, all and its URL tag.
    assert_eq!(idx.links() as u64, 3 * entries, "no dangling links");
    for (key, _) in &all {
        let i = key.trim_start_matches("GET /obj/");
        assert_eq!(idx.keys(&format!("t-{i}")).len(), 1, "{key}");
    }

    assert_eq!(purge(&p, "POST", "/purge/all", &[]).await, entries);
    store.run_pending_tasks().await;
    assert_eq!(store.entry_count(), 0);
    assert!(idx.keys("all").is_empty());
    assert_eq!(idx.links(), 0);
    p.shutdown().await;
}

fn surrogate_reply(s: &Seen) -> Reply {
    let r = Reply::ok("{\"k\":1}")
        .header("surrogate-key", "k1 k2")
        .header("surrogate-control", "max-age=60");
    if s.method == "GET" {
        r.header("cache-control", "max-age=5")
    } else {
        r
    }
}

// 10a. Surrogate-Key and Surrogate-Control never reach clients by default (but still act).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_headers_stripped_by_default() {
    let origin = Origin::start(surrogate_reply).await;
    let p = proxy_admin(&origin, "").await;
    for xc in ["MISS", "HIT"] {
        let h = expect(&p, "/sk", xc, "{\"k\":1}").await;
        assert!(!h.contains_key("surrogate-key"), "{xc}: {h:?}");
        assert!(!h.contains_key("surrogate-control"), "{xc}: {h:?}");
    }
    let (_, h, _) = public_req(&p, "POST", "/sk-post", &[]).await;
    assert_eq!(xcache(&h), "PASS");
    assert!(!h.contains_key("surrogate-key"), "{h:?}");
    assert!(!h.contains_key("surrogate-control"), "{h:?}");
    // The stripped keys were still indexed.
    assert_eq!(purge(&p, "POST", "/purge/k2", &[]).await, 1);
    expect(&p, "/sk", "MISS", "{\"k\":1}").await;
    p.shutdown().await;
}

// 10b. `expose_surrogate_keys = true` passes Surrogate-Key and Surrogate-Control on (for debugging).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn surrogate_keys_exposed_when_configured() {
    let origin = Origin::start(surrogate_reply).await;
    let p = proxy(&origin.url(), "[cache]\nexpose_surrogate_keys = true\n").await;
    for xc in ["MISS", "HIT"] {
        let h = expect(&p, "/sk", xc, "{\"k\":1}").await;
        assert_eq!(hval(&h, "surrogate-key"), "k1 k2", "{xc}");
        assert_eq!(hval(&h, "surrogate-control"), "max-age=60", "{xc}");
    }
    let (_, h, _) = public_req(&p, "POST", "/sk-post", &[]).await;
    assert_eq!(hval(&h, "surrogate-key"), "k1 k2");
    p.shutdown().await;
}

// 11. /metrics is Prometheus text with the request, purge and latency series.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    expect(&p, "/a", "MISS", &page("/a")).await;
    expect(&p, "/a", "HIT", &page("/a")).await;
    assert_eq!(purge(&p, "POST", "/purge/a", &[]).await, 1);

    let (status, h, text) = admin_req(&p, "GET", "/metrics", &[], Some(TOKEN)).await;
    assert_eq!(status, 200);
    assert!(hval(&h, "content-type").starts_with("text/plain"), "{h:?}");
    for line in text.lines() {
        if line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(
            series.starts_with("apicache_") && !series.contains(' '),
            "bad series: {line}"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
            .parse()
            .unwrap()
    };
    assert_eq!(
        value("apicache_requests_total{result=\"hit\",route=\"none\"}"),
        1.0
    );
    assert_eq!(
        value("apicache_requests_total{result=\"miss\",route=\"none\"}"),
        1.0
    );
    assert_eq!(value("apicache_purges_total"), 1.0);
    assert_eq!(value("apicache_purged_objects_total"), 1.0);
    assert!(text.contains("# TYPE apicache_origin_latency_seconds histogram"));
    assert!(text.contains("apicache_origin_latency_seconds_bucket{route=\"none\",le=\"0.001\"}"));
    assert_eq!(
        value("apicache_origin_latency_seconds_bucket{route=\"none\",le=\"+Inf\"}"),
        1.0
    );
    assert_eq!(
        value("apicache_origin_latency_seconds_count{route=\"none\"}"),
        1.0
    );
    assert_eq!(value("apicache_origin_requests_total{route=\"none\"}"), 1.0);
    p.shutdown().await;
}

// 5b. The auth scheme is case-insensitive (RFC 9110 §11.1): `bearer <token>` is the right token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_scheme_is_case_insensitive() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy_admin(&origin, "").await;
    expect(&p, "/a", "MISS", &page("/a")).await;
    let lower = format!("bearer {TOKEN}");
    let (status, _, body) =
        admin_req(&p, "POST", "/purge/a", &[("authorization", &lower)], None).await;
    assert_eq!((status, body.as_str()), (200, "{\"purged\":1}"));
    p.shutdown().await;
}

// Config: an admin listener on an ephemeral port next to an ephemeral public port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_listen_on_port_zero_is_accepted() {
    let origin = Origin::start(shop_reply).await;
    let p = proxy(
        &origin.url(),
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n"),
    )
    .await;
    let admin = p.admin_addr.expect("admin listener");
    assert_ne!(admin, p.addr);
    let (status, _, _) = admin_req(&p, "GET", "/healthz", &[], None).await;
    assert_eq!(status, 200);
    p.shutdown().await;
}
