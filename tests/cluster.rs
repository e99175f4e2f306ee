//! Several nodes, one purge log in a real Redis: purges reach every node, gaps are never
//! silent, and a node cut off from Redis stops trusting what it holds.

mod support;
use support::*;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use apicache::Running;

/// An origin whose answers carry a version the test bumps: `{"path":…,"v":N}`, fresh for 300 s,
/// stale-if-error for 300 s, tagged `t-<last path segment>` and `all`.
async fn versioned() -> (Origin, Arc<AtomicUsize>) {
    let v = Arc::new(AtomicUsize::new(1));
    let v2 = v.clone();
    let o = Origin::start(move |s| {
        let path = s.path_and_query.clone();
        let tag = path.rsplit('/').next().unwrap_or("").to_string();
        Reply::ok(body(&path, v2.load(Ordering::SeqCst)))
            .header("cache-control", "max-age=300, stale-if-error=300")
            .header("surrogate-key", &format!("t-{tag} all"))
    })
    .await;
    (o, v)
}

fn body(path: &str, v: usize) -> String {
    format!("{{\"path\":\"{path}\",\"v\":{v}}}")
}

async fn node(origin: &Origin, redis_url: &str, id: &str, keys: &[&str]) -> Running {
    let mut b = ProxyBuilder::new(origin).admin().cluster(redis_url, id);
    for k in keys {
        b = b.cluster_key(k);
    }
    b.start().await
}

/// Nodes `n1`..`nN` on the same Redis, each with the `[cluster]` lines `keys`, once all N
/// heartbeat.
async fn nodes<const N: usize>(origin: &Origin, redis_url: &str, keys: &[&str]) -> [Running; N] {
    let mut all = Vec::with_capacity(N);
    for i in 1..=N {
        all.push(node(origin, redis_url, &format!("n{i}"), keys).await);
    }
    until(&all[0], "every node live", |s| {
        s["live_nodes"].as_array().unwrap().len() == N
    })
    .await;
    match all.try_into() {
        Ok(nodes) => nodes,
        Err(_) => unreachable!("N nodes were started"),
    }
}

/// A purge on `p` with its JSON answer.
async fn cluster_purge(
    p: &Running,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut headers = headers.to_vec();
    headers.push(("authorization", BEARER));
    let (status, _, body) = admin_send(p, method, path, &headers).await;
    let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::String(text(&body)));
    (status, v)
}

/// The `cluster` part of `/stats`.
async fn cluster_stats(p: &Running) -> serde_json::Value {
    stats(p).await["cluster"].clone()
}

/// Wait (bounded, 10 s) until `check` holds for the node's cluster stats.
async fn until(p: &Running, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    for _ in 0..1000 {
        if check(&cluster_stats(p).await) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: {}", cluster_stats(p).await);
}

fn gap(s: &serde_json::Value, reason: &str) -> u64 {
    s["gap_flushes"][reason].as_u64().unwrap()
}

/// Two nodes keeping a 10-entry log, the second reaching Redis through a relay the test can
/// cut; purges wait 50 ms for confirmations.
async fn short_log_pair(redis: &Redis, origin: &Origin) -> (Relay, Running, Running) {
    let relay = Relay::start(redis.addr()).await;
    let keys = [
        "purge_log_length = 10",
        "confirm_timeout = \"50ms\"",
        "max_purge_lag = \"30s\"",
    ];
    let n1 = node(origin, &redis.url(), "n1", &keys).await;
    let n3 = node(origin, &relay.url(), "n3", &keys).await;
    (relay, n1, n3)
}

/// Fill `paths` on every node and check each is then a hit.
async fn fill(nodes: &[&Running], paths: &[&str], v: usize) {
    for n in nodes {
        for p in paths {
            let (_, h, b) = get(n, p).await;
            assert_eq!(text(&b), body(p, v), "{p}");
            assert_ne!(hdr(&h, "x-cache"), "", "{p}");
            assert_get(n, p, "HIT", &body(p, v)).await;
        }
    }
}

// Purges by tag, by URL and of everything, sent to any node, reach every node before the
// answer; the answer counts the live nodes and their confirmations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_url_and_all_purges_reach_every_node() {
    let redis = Redis::start().await;
    let (origin, version) = versioned().await;
    let [n1, n2, n3] = nodes(&origin, &redis.url(), &[]).await;
    let nodes = [&n1, &n2, &n3];
    fill(&nodes, &["/p/1", "/p/2", "/p/3"], 1).await;
    version.store(2, Ordering::SeqCst);

    // By tag, on node 1.
    let (status, v) = cluster_purge(&n1, "POST", "/purge/t-1", &[]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (
            v["purged"].as_u64(),
            v["nodes"].as_u64(),
            v["confirmed"].as_u64()
        ),
        (Some(1), Some(3), Some(3)),
        "{v}"
    );
    let first = v["seq"].as_u64().unwrap();
    for n in nodes {
        assert_get(n, "/p/1", "MISS", &body("/p/1", 2)).await;
        assert_get(n, "/p/2", "HIT", &body("/p/2", 1)).await;
    }
    // By URL, on node 2.
    let (status, v) = cluster_purge(&n2, "PURGE", "/p/2", &[]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["seq"].as_u64(), Some(first + 1), "{v}");
    for n in nodes {
        assert_get(n, "/p/2", "MISS", &body("/p/2", 2)).await;
        assert_get(n, "/p/3", "HIT", &body("/p/3", 1)).await;
    }
    // Everything, on node 3: a generation bump every node observes.
    version.store(3, Ordering::SeqCst);
    let (status, v) = cluster_purge(&n3, "POST", "/purge-all", &[]).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["confirmed"].as_u64(), Some(3), "{v}");
    for n in nodes {
        for p in ["/p/1", "/p/2", "/p/3"] {
            assert_get(n, p, "MISS", &body(p, 3)).await;
        }
    }
    let s1 = cluster_stats(&n1).await;
    assert_eq!(s1["connected"], true, "{s1}");
    assert_eq!(s1["seq"].as_u64(), Some(first + 2), "{s1}");
    assert_eq!(s1["purges_from_peers"].as_u64(), Some(2), "{s1}");
    assert_eq!(
        gap(&s1, "trimmed") + gap(&s1, "epoch") + gap(&s1, "disconnected"),
        0,
        "{s1}"
    );
    let metrics = text(
        &admin_send(&n1, "GET", "/metrics", &[("authorization", BEARER)])
            .await
            .2,
    );
    for line in [
        "apicache_cluster_connected 1",
        "apicache_cluster_live_nodes 3",
        "apicache_cluster_peer_purges_total 2",
        "apicache_cluster_gap_flushes_total{reason=\"trimmed\"} 0",
        "apicache_cluster_info{node=\"n1\"} 1",
    ] {
        assert!(metrics.contains(line), "{line}:\n{metrics}");
    }

    // A new node starts empty and follows the log from its current end.
    let n4 = node(&origin, &redis.url(), "n4", &[]).await;
    assert_eq!(cluster_stats(&n4).await["seq"].as_u64(), Some(first + 2));
    for n in [n1, n2, n3, n4] {
        n.shutdown().await;
    }
}

// A soft purge marks the object stale on every node: when the origin then fails, each node
// still answers from it (stale-if-error), after trying the origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_purge_keeps_stale_if_error_on_every_node() {
    let redis = Redis::start().await;
    let (origin, _) = versioned().await;
    let [n1, n2, n3] = nodes(&origin, &redis.url(), &[]).await;
    let nodes = [&n1, &n2, &n3];
    fill(&nodes, &["/s/1"], 1).await;
    let (status, v) = cluster_purge(&n2, "POST", "/purge/t-1", &[("soft-purge", "1")]).await;
    assert_eq!((status, v["confirmed"].as_u64()), (200, Some(3)), "{v}");
    origin.set_handler(|_| Reply::ok("down").status(503));
    let before = origin.count();
    for n in nodes {
        let h = assert_get(n, "/s/1", "STALE", &body("/s/1", 1)).await;
        assert!(hdr(&h, "cache-status").contains("fwd-status=503"));
    }
    assert_eq!(
        origin.count(),
        before + 3,
        "each node tried the origin first"
    );
    for n in [n1, n2, n3] {
        n.shutdown().await;
    }
}

// A live node that does not confirm in time makes the answer 202 with the counts; the purge
// was logged all the same, and that node applies it when it catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unconfirmed_purge_answers_202_and_is_applied_on_catching_up() {
    let redis = Redis::start().await;
    let relay = Relay::start(redis.addr()).await;
    let (origin, version) = versioned().await;
    let keys = ["confirm_timeout = \"1s\"", "max_purge_lag = \"30s\""];
    let n1 = node(&origin, &redis.url(), "n1", &keys).await;
    let n2 = node(&origin, &redis.url(), "n2", &keys).await;
    let n3 = node(&origin, &relay.url(), "n3", &keys).await;
    until(&n1, "three live nodes", |s| {
        s["live_nodes"].as_array().unwrap().len() == 3
    })
    .await;
    fill(&[&n1, &n2, &n3], &["/q/1", "/q/2"], 1).await;
    version.store(2, Ordering::SeqCst);

    relay.cut();
    until(&n3, "node 3 cut off", |s| s["connected"] == false).await;
    // Node 3's heartbeat is still current: it is waited for, and does not confirm.
    let (status, v) = cluster_purge(&n1, "POST", "/purge/t-1", &[]).await;
    assert_eq!(status, 202, "{v}");
    assert_eq!(
        (
            v["nodes"].as_u64(),
            v["confirmed"].as_u64(),
            v["purged"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{v}"
    );
    assert_get(&n2, "/q/1", "MISS", &body("/q/1", 2)).await;
    // Cut off for less than max_purge_lag: node 3 still serves what it holds.
    assert_get(&n3, "/q/1", "HIT", &body("/q/1", 1)).await;

    relay.heal();
    until(&n3, "node 3 caught up", |s| s["seq"] == v["seq"]).await;
    assert_get(&n3, "/q/1", "MISS", &body("/q/1", 2)).await;
    assert_get(&n3, "/q/2", "HIT", &body("/q/2", 1)).await;
    let s3 = cluster_stats(&n3).await;
    assert_eq!(s3["disconnects"].as_u64(), Some(1), "{s3}");
    assert_eq!(
        gap(&s3, "trimmed") + gap(&s3, "disconnected"),
        0,
        "replayed, no gap: {s3}"
    );
    for n in [n1, n2, n3] {
        n.shutdown().await;
    }
}

// Redis killed: purges answer 503 (nothing logged, nothing claimed) and nodes keep serving
// hits; once cut off longer than max_purge_lag they revalidate before serving. Redis back
// empty: every node treats what it holds as soft-purged (a new epoch).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_then_back_empty() {
    let mut redis = Redis::start().await;
    let (origin, _) = versioned().await;
    let lag = ["max_purge_lag = \"30s\""];
    let [n1, n2] = nodes(&origin, &redis.url(), &lag).await;
    let nodes = [&n1, &n2];
    fill(&nodes, &["/r/1"], 1).await;

    redis.kill();
    for n in nodes {
        until(n, "cut off", |s| s["connected"] == false).await;
    }
    let (status, v) = cluster_purge(&n1, "POST", "/purge/t-1", &[]).await;
    assert_eq!(status, 503, "{v}");
    assert!(v.as_str().unwrap().contains("Redis is unreachable"), "{v}");
    assert!(
        v.as_str().unwrap().contains("no node purged anything"),
        "{v}"
    );
    let before = origin.count();
    for n in nodes {
        assert_get(n, "/r/1", "HIT", &body("/r/1", 1)).await;
    }
    // Cut off past max_purge_lag (on the cache's clock): nothing held is trusted, every use
    // goes to the origin first (the node's heartbeat has run out, so purges no longer wait
    // for it).
    for n in nodes {
        n.clock().advance(Duration::from_secs(31));
        for _ in 0..2 {
            let (status, h, _) = get(n, "/r/1").await;
            assert_eq!(status, 200);
            assert_ne!(hdr(&h, "x-cache"), "HIT", "{}", hdr(&h, "cache-status"));
        }
    }
    assert_eq!(origin.count(), before + 4);
    assert!(cluster_stats(&n1).await["lag_seconds"].as_f64().unwrap() > 30.0);

    // Back, empty: a new epoch. Both nodes soft-purge what they hold, then trust again what
    // they fetch.
    redis.restart().await;
    for n in nodes {
        until(n, "following again", |s| {
            s["connected"] == true
                && s["live_nodes"].as_array().unwrap().len() == 2
                && s["lag_seconds"].as_f64() == Some(0.0)
        })
        .await;
        let s = cluster_stats(n).await;
        assert!(gap(&s, "epoch") + gap(&s, "disconnected") >= 1, "{s}");
    }
    let before = origin.count();
    for n in nodes {
        let (_, h, _) = get(n, "/r/1").await;
        assert_ne!(hdr(&h, "x-cache"), "HIT", "{}", hdr(&h, "cache-status"));
        assert_get(n, "/r/1", "HIT", &body("/r/1", 1)).await;
    }
    assert_eq!(origin.count(), before + 2);
    // And purges work again.
    let (status, v) = cluster_purge(&n2, "POST", "/purge/t-2", &[]).await;
    assert_eq!((status, v["confirmed"].as_u64()), (200, Some(2)), "{v}");
    for n in [n1, n2] {
        n.shutdown().await;
    }
}

// Redis restarted empty within max_purge_lag: the epoch alone tells nodes they may have missed
// purges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_soft_purges_every_node() {
    let mut redis = Redis::start().await;
    let (origin, _) = versioned().await;
    let lag = ["max_purge_lag = \"30s\""];
    let [n1, n2, n3] = nodes(&origin, &redis.url(), &lag).await;
    let nodes = [&n1, &n2, &n3];
    fill(&nodes, &["/e/1"], 1).await;
    redis.restart().await;
    for n in nodes {
        until(n, "an epoch gap", |s| {
            gap(s, "epoch") == 1 && s["connected"] == true
        })
        .await;
    }
    let before = origin.count();
    for n in nodes {
        let (_, h, _) = get(n, "/e/1").await;
        assert_ne!(hdr(&h, "x-cache"), "HIT", "{}", hdr(&h, "cache-status"));
    }
    assert_eq!(origin.count(), before + 3);
    for n in [n1, n2, n3] {
        n.shutdown().await;
    }
}

// A node cut off while the stream was trimmed past its position soft-purges what it holds
// when it comes back; the others, which saw every purge, keep their hits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_trimmed_past_a_slow_node_soft_purges_it() {
    let redis = Redis::start().await;
    let (origin, _) = versioned().await;
    let (relay, n1, n3) = short_log_pair(&redis, &origin).await;
    fill(&[&n1, &n3], &["/t/keep"], 1).await;

    relay.cut();
    until(&n3, "node 3 cut off", |s| s["connected"] == false).await;
    for i in 0..15 {
        let (status, v) = cluster_purge(&n1, "POST", &format!("/purge/unrelated-{i}"), &[]).await;
        assert!(status == 200 || status == 202, "{v}");
    }
    assert_eq!(
        redis.cmd(&["XLEN", "apicache:purges"]).await,
        redis::Value::Int(10)
    );
    relay.heal();
    until(&n3, "a trimmed gap", |s| {
        gap(s, "trimmed") == 1 && s["connected"] == true
    })
    .await;
    assert_get(&n1, "/t/keep", "HIT", &body("/t/keep", 1)).await;
    let before = origin.count();
    let (_, h, _) = get(&n3, "/t/keep").await;
    assert_ne!(hdr(&h, "x-cache"), "HIT", "{}", hdr(&h, "cache-status"));
    assert_eq!(origin.count(), before + 1);
    n1.shutdown().await;
    n3.shutdown().await;
}

// A fill that began before a purge of its tag and ends after the purge was applied is not kept
// as fresh: the next request does not get the old data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_racing_a_purge_does_not_resurrect_old_data() {
    let redis = Redis::start().await;
    let slow = Arc::new(AtomicUsize::new(1));
    let s2 = slow.clone();
    let origin = Origin::start(move |_| {
        let v = s2.load(Ordering::SeqCst);
        let r = Reply::ok(format!("{{\"v\":{v}}}"))
            .header("cache-control", "max-age=300")
            .header("surrogate-key", "race");
        if v == 1 {
            r.delay(Duration::from_millis(800))
        } else {
            r
        }
    })
    .await;
    let [n1, n2] = nodes(&origin, &redis.url(), &[]).await;
    let addr = n2.addr;
    let fill = tokio::spawn(async move { request(addr, "GET", "/race", &[], b"").await });
    for _ in 0..500 {
        if origin.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(origin.count(), 1, "the fill reached the origin");
    // The data changes, and the purge for it lands while node 2's fill is still under way.
    slow.store(2, Ordering::SeqCst);
    let (status, v) = cluster_purge(&n1, "POST", "/purge/race", &[]).await;
    assert_eq!((status, v["confirmed"].as_u64()), (200, Some(2)), "{v}");
    assert!(
        !fill.is_finished(),
        "the purge was applied while the fill was under way"
    );
    let (_, _, b) = fill.await.unwrap();
    assert_eq!(
        text(&b),
        "{\"v\":1}",
        "the racing request gets its own answer"
    );
    assert_get(&n2, "/race", "MISS", "{\"v\":2}").await;
    n1.shutdown().await;
    n2.shutdown().await;
}

// Without [cluster], purges answer as a single node always did, and /stats has no cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_redis_configured_is_a_single_node() {
    let (origin, _) = versioned().await;
    let p = ProxyBuilder::new(&origin).admin().start().await;
    fill(&[&p], &["/n/1"], 1).await;
    let (status, v) = cluster_purge(&p, "POST", "/purge/t-1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(v, serde_json::json!({"purged": 1}));
    assert!(stats(&p).await.get("cluster").is_none());
    p.shutdown().await;
}

// Redis keys lost under a running cluster (FLUSHALL, eviction): the next purge is refused until
// the node has resynchronized, and a node that then reads numbers going back treats it as a gap
// instead of skipping those purges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_lost_under_a_running_cluster_are_never_silent() {
    let redis = Redis::start().await;
    let (origin, version) = versioned().await;
    let lag = ["max_purge_lag = \"30s\""];
    let [n1, n2] = nodes(&origin, &redis.url(), &lag).await;
    // Some history first, so that numbers going back can be told.
    for i in 0..3 {
        let (status, v) = cluster_purge(&n1, "POST", &format!("/purge/warmup-{i}"), &[]).await;
        assert_eq!(status, 200, "{v}");
    }
    // The counter key alone lost: numbers continue from the stream.
    redis.cmd(&["DEL", "apicache:seq"]).await;
    fill(&[&n1, &n2], &["/k/1", "/k/2"], 1).await;
    version.store(2, Ordering::SeqCst);
    let (status, v) = cluster_purge(&n1, "POST", "/purge/t-1", &[]).await;
    assert_eq!(
        (status, v["seq"].as_u64(), v["confirmed"].as_u64()),
        (200, Some(4), Some(2)),
        "{v}"
    );
    assert_get(&n2, "/k/1", "MISS", &body("/k/1", 2)).await;
    assert_get(&n2, "/k/2", "HIT", &body("/k/2", 1)).await;

    // Everything lost: the purge is refused (nothing logged), the node resynchronizes.
    redis.cmd(&["FLUSHALL"]).await;
    let (status, v) = cluster_purge(&n1, "POST", "/purge/t-2", &[]).await;
    assert_eq!(status, 503, "{v}");
    assert!(v.as_str().unwrap().contains("resynchronizing"), "{v}");
    // Redis lost the live set too: until the others heartbeat again (and find the new epoch,
    // which soft-purges what they hold), a purge counts only the nodes that did.
    until(&n1, "both resynchronized", |s| {
        gap(s, "epoch") == 1 && s["live_nodes"].as_array().unwrap().len() == 2
    })
    .await;
    let (status, v) = cluster_purge(&n1, "POST", "/purge/t-2", &[]).await;
    assert_eq!(
        (
            status,
            v["seq"].as_u64(),
            v["confirmed"].as_u64(),
            v["purged"].as_u64()
        ),
        (200, Some(1), Some(2), Some(1)),
        "{v} n1: {} n2: {} live: {:?} applied: {:?}",
        cluster_stats(&n1).await,
        cluster_stats(&n2).await,
        redis
            .cmd(&["ZRANGE", "apicache:live", "0", "-1", "WITHSCORES"])
            .await,
        redis.cmd(&["HGETALL", "apicache:applied"]).await,
    );
    // n2 followed the old numbering: it either read purge 1 after purge 4 (numbers going back)
    // or its heartbeat found the new epoch first. Either way a gap, and the purge applied.
    let s2 = cluster_stats(&n2).await;
    assert!(gap(&s2, "diverged") + gap(&s2, "epoch") >= 1, "{s2}");
    assert_eq!(s2["seq"].as_u64(), Some(1), "{s2}");
    assert_get(&n2, "/k/2", "MISS", &body("/k/2", 2)).await;
    n1.shutdown().await;
    n2.shutdown().await;
}

// A hard purge-all among the entries trimmed past a node: that node purges everything outright
// (nothing it held may be served, not even stale), instead of soft-purging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_all_lost_to_trimming_purges_everything_hard() {
    let redis = Redis::start().await;
    let (origin, _) = versioned().await;
    let (relay, n1, n3) = short_log_pair(&redis, &origin).await;
    fill(&[&n3], &["/h/1"], 1).await;
    relay.cut();
    until(&n3, "node 3 cut off", |s| s["connected"] == false).await;
    let (status, v) = cluster_purge(&n1, "POST", "/purge-all", &[]).await;
    assert!(status == 200 || status == 202, "{v}");
    for i in 0..12 {
        cluster_purge(&n1, "POST", &format!("/purge/unrelated-{i}"), &[]).await;
    }
    origin.set_handler(|_| Reply::ok("down").status(503));
    relay.heal();
    until(&n3, "a trimmed gap", |s| {
        gap(s, "trimmed") == 1 && s["connected"] == true
    })
    .await;
    let (status, h, b) = get(&n3, "/h/1").await;
    assert_ne!(hdr(&h, "x-cache"), "STALE", "{}", hdr(&h, "cache-status"));
    assert_eq!(
        (status, text(&b).as_str()),
        (503, "down"),
        "the origin's answer, not the old object"
    );
    n1.shutdown().await;
    n3.shutdown().await;
}
