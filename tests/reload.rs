//! Config reload in-process (`POST /reload`, `Running::reload`): the new config applies to new
//! requests, nothing cached or in flight is dropped, an invalid file is rejected whole, and
//! settings that need a restart are reported and kept.

mod support;
use support::*;

use std::path::PathBuf;
use std::time::Duration;

use apicache::{Config, Running};

/// A config file in its own temporary directory, removed on drop.
struct ConfigFile {
    dir: PathBuf,
    path: PathBuf,
}

impl ConfigFile {
    fn new(name: &str, text: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("apicache-reload-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("apicache.toml");
        std::fs::write(&path, text).unwrap();
        ConfigFile { dir, path }
    }

    fn write(&self, text: &str) {
        std::fs::write(&self.path, text).unwrap();
    }

    async fn start(&self) -> Running {
        let cfg = Config::load(&self.path).unwrap_or_else(|e| panic!("{e}"));
        apicache::start(cfg).await.unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `POST /reload` with the admin token: status and body.
async fn reload(p: &Running) -> (u16, String) {
    let (status, _, body) = admin_send(p, "POST", "/reload", &[("authorization", BEARER)]).await;
    (status, text(&body))
}

/// The `ttl=` of a Cache-Status hit.
fn ttl(h: &http::HeaderMap) -> i64 {
    let cs = hdr(h, "cache-status");
    let v = cs
        .split("ttl=")
        .nth(1)
        .unwrap_or_else(|| panic!("no ttl: {cs}"));
    v.split(';').next().unwrap().trim().parse().unwrap()
}

fn origin_with_ttl_route(origin: &Origin, ttl: &str) -> String {
    ProxyBuilder::new(origin)
        .admin()
        .route(&format!("path = \"/r/{{*rest}}\", ttl = \"{ttl}\""))
        .toml()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_applies_new_ttls_and_keeps_what_is_cached() {
    let origin = Origin::start(|s| Reply::ok(format!("{{\"p\":\"{}\"}}", s.path_and_query))).await;
    let file = ConfigFile::new("ttl", &origin_with_ttl_route(&origin, "600s"));
    let p = file.start().await;
    assert_get(&p, "/r/a", "MISS", "{\"p\":\"/r/a\"}").await;
    assert!(ttl(&assert_get(&p, "/r/a", "HIT", "{\"p\":\"/r/a\"}").await) > 590);
    let before = stats(&p).await;

    file.write(&origin_with_ttl_route(&origin, "30s"));
    let (status, body) = reload(&p).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["reloaded"], true);
    assert_eq!(answer["restart_needed"], serde_json::json!([]));
    assert_ne!(answer["hash"], before["config"]["hash"]);

    // What was cached is still a hit, with the lifetime it was stored with.
    assert!(ttl(&assert_get(&p, "/r/a", "HIT", "{\"p\":\"/r/a\"}").await) > 590);
    // A new fill gets the new route TTL.
    assert_get(&p, "/r/b", "MISS", "{\"p\":\"/r/b\"}").await;
    assert!(ttl(&assert_get(&p, "/r/b", "HIT", "{\"p\":\"/r/b\"}").await) <= 30);
    p.clock().advance(Duration::from_secs(31));
    let (_, h, _) = get(&p, "/r/b").await;
    assert_ne!(hdr(&h, "x-cache"), "HIT", "the new 30 s TTL ran out");
    assert_get(&p, "/r/a", "HIT", "{\"p\":\"/r/a\"}").await;
    assert_eq!(origin.count_for("/r/a"), 1);

    let after = stats(&p).await;
    assert_eq!(after["config"]["hash"], answer["hash"]);
    assert_eq!(after["config"]["reloads"], 1);
    assert_eq!(after["config"]["reload_errors"], 0);
    assert_eq!(after["config"]["file"], file.path.display().to_string());
    assert!(after["config"]["loaded_at"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    // The route's counters carried over the reload (same pattern, same series).
    let route = |s: &serde_json::Value| {
        let r = s["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["route"] == "/r/{*rest}");
        r.map(|r| r["hits"].as_u64().unwrap()).unwrap()
    };
    assert_eq!(route(&after), 4);
    let (_, _, metrics) = admin_send(&p, "GET", "/metrics", &[("authorization", BEARER)]).await;
    let metrics = text(&metrics);
    assert!(
        metrics.contains("apicache_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("apicache_config_reloads_total{result=\"error\"} 0"));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_config_is_rejected_whole_and_the_running_one_kept() {
    let origin = Origin::start(|_| Reply::ok("{}")).await;
    let good = origin_with_ttl_route(&origin, "600s");
    let file = ConfigFile::new("invalid", &good);
    let p = file.start().await;
    let hash = stats(&p).await["config"]["hash"].clone();

    // A valid route change next to an invalid key: nothing of it applies.
    let bad =
        origin_with_ttl_route(&origin, "5s").replace("timeout = \"1s\"", "timeout = \"forever\"");
    file.write(&bad);
    let (status, body) = reload(&p).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains(&file.path.display().to_string()) && body.contains("origin.timeout"),
        "the answer names the file and the key: {body}"
    );
    assert!(body.contains("running config is kept"), "{body}");
    assert_get(&p, "/r/x", "MISS", "{}").await;
    assert!(
        ttl(&assert_get(&p, "/r/x", "HIT", "{}").await) > 590,
        "the old TTL still applies"
    );

    // TOML that does not parse names the line.
    file.write(&format!("{good}\n[cache\n"));
    let (status, body) = reload(&p).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("line"), "{body}");

    // A file that is gone.
    std::fs::remove_file(&file.path).unwrap();
    let (status, body) = reload(&p).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("cannot read"), "{body}");

    let s = stats(&p).await;
    assert_eq!(s["config"]["hash"], hash);
    assert_eq!(
        (
            s["config"]["reloads"].as_u64(),
            s["config"]["reload_errors"].as_u64()
        ),
        (Some(0), Some(3))
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_need_a_restart_are_reported_and_the_rest_applies() {
    let origin = Origin::start(|_| Reply::ok("{}")).await;
    let file = ConfigFile::new("restart", &origin_with_ttl_route(&origin, "600s"));
    let p = file.start().await;
    let other_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let text = origin_with_ttl_route(&origin, "30s").replace(
        "listen = \"127.0.0.1:0\"\nshutdown_grace",
        &format!("listen = \"127.0.0.1:{other_port}\"\nshutdown_grace"),
    ) + "[cache]\nmax_size = \"128MiB\"\n";
    file.write(&text);
    let (status, body) = reload(&p).await;
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["restart_needed"],
        serde_json::json!(["server.listen", "cache.max_size", "cache.max_fill_memory"])
    );
    // Still on the old address, with the old cache size; the TTL changed.
    assert_get(&p, "/r/y", "MISS", "{}").await;
    assert!(ttl(&assert_get(&p, "/r/y", "HIT", "{}").await) <= 30);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", other_port))
        .await
        .is_err());
    let running = p.proxy.settings();
    assert_eq!(running.cfg.server.listen.port(), 0);
    assert_ne!(running.cfg.cache.max_size.as_u64(), 128 << 20);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_finish_under_the_config_they_started_with() {
    let old = Origin::start(|_| {
        Reply::ok("{\"origin\":\"old\"}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(600))
    })
    .await;
    let new =
        Origin::start(|_| Reply::ok("{\"origin\":\"new\"}").header("cache-control", "no-store"))
            .await;
    let file = ConfigFile::new("inflight", &ProxyBuilder::new(&old).admin().toml());
    let p = file.start().await;
    let inflight = tokio::spawn(request(p.addr, "GET", "/slow", &[], b""));
    for _ in 0..200 {
        if old.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(old.count(), 1, "the request reached the old origin");
    // The new config would time the slow request out: it keeps the config it started with.
    let new_toml = ProxyBuilder::new(&new).admin().toml();
    file.write(&new_toml.replace("timeout = \"1s\"\nconnect", "timeout = \"100ms\"\nconnect"));
    let reloaded = p.reload().await.unwrap();
    assert!(reloaded.restart_needed.is_empty());
    assert!(
        !inflight.is_finished(),
        "the reload happened while the request was in flight"
    );
    let (status, _, body) = get(&p, "/other").await;
    assert_eq!(
        (status, text(&body).as_str()),
        (200, "{\"origin\":\"new\"}")
    );
    let (status, _, body) = inflight.await.unwrap();
    assert_eq!(
        (status, text(&body).as_str()),
        (200, "{\"origin\":\"old\"}"),
        "not dropped"
    );
    p.shutdown().await;
}

/// Entries a `shared-verified` route stored are only ever served to verified credentials: a
/// reload that gives the path another policy does not make them public.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_leaving_shared_verified_does_not_expose_its_entries() {
    let origin = Origin::start(|s| {
        if s.header("authorization") == "Bearer k1" {
            Reply::ok("{\"owner\":\"k1\"}")
        } else {
            Reply::ok("unauthorized").status(401)
        }
    })
    .await;
    let with_auth = |auth: &str| {
        ProxyBuilder::new(&origin)
            .admin()
            .route(&format!(
                "path = \"/acct/{{id}}\", ttl = \"600s\", auth = \"{auth}\""
            ))
            .toml()
    };
    let file = ConfigFile::new("verified", &with_auth("shared-verified"));
    let p = file.start().await;
    let k1 = [("authorization", "Bearer k1")];
    let (_, h, _) = get_with(&p, "/acct/1", &k1).await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    let (_, h, _) = get_with(&p, "/acct/1", &k1).await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    for auth in ["shared", "per-credential"] {
        file.write(&with_auth(auth));
        assert_eq!(reload(&p).await.0, 200);
        let (status, h, body) = get(&p, "/acct/1").await;
        assert_eq!(
            (status, hdr(&h, "x-cache")),
            (401, "MISS"),
            "{auth}: {}",
            text(&body)
        );
        assert!(!text(&body).contains("k1"));
    }
    p.shutdown().await;
}

/// Turning `cache.store_set_cookie` off drops what was stored with cookies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_store_set_cookie_off_drops_stored_cookies() {
    let origin = Origin::start(|_| {
        Reply::ok("{}")
            .header("cache-control", "public, max-age=600")
            .header("set-cookie", "session=abc")
    })
    .await;
    let base = ProxyBuilder::new(&origin).admin().toml();
    let file = ConfigFile::new(
        "cookies",
        &format!("{base}[cache]\nstore_set_cookie = true\n"),
    );
    let p = file.start().await;
    assert_get(&p, "/c", "MISS", "{}").await;
    let h = assert_get(&p, "/c", "HIT", "{}").await;
    assert_eq!(hdr(&h, "set-cookie"), "session=abc");
    file.write(&base);
    assert_eq!(reload(&p).await.0, 200);
    let (_, h, _) = get(&p, "/c").await;
    assert_eq!(hdr(&h, "x-cache"), "MISS");
    assert_eq!(origin.count(), 2);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_and_origin_timeouts_change_live() {
    let origin = Origin::start(|_| {
        Reply::ok("{}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(300))
    })
    .await;
    let base = ProxyBuilder::new(&origin).admin().toml();
    let file = ConfigFile::new("token", &base);
    let p = file.start().await;
    assert_eq!(get(&p, "/t").await.0, 200);
    let new_token = "fedcba9876543210fedcba";
    file.write(
        &base
            .replace(TOKEN, new_token)
            .replace("timeout = \"1s\"\nconnect", "timeout = \"100ms\"\nconnect"),
    );
    assert_eq!(reload(&p).await.0, 200);
    assert_eq!(
        get(&p, "/t").await.0,
        504,
        "the shorter origin timeout applies"
    );
    let (status, _, _) = admin_send(&p, "GET", "/stats", &[("authorization", BEARER)]).await;
    assert_eq!(status, 401, "the old token no longer works");
    let bearer = format!("Bearer {new_token}");
    let (status, _, _) = admin_send(&p, "GET", "/stats", &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_started_without_a_file_has_nothing_to_reload() {
    let origin = Origin::start(|_| Reply::ok("{}")).await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    let (status, body) = reload(&p).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("not started from a config file"), "{body}");
    assert_eq!(stats(&p).await["config"]["reload_errors"], 1);
    p.shutdown().await;
}
