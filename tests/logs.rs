//! The binary's logs as an operator's collector sees them (stderr a pipe): plain text without
//! ANSI colour codes, addresses printed plainly, an access line per request with client, bytes
//! and request id, and origin failures with their cause and the origin's address; with
//! `log.format = "json"`, one JSON object per line with the same fields.

mod support;
use support::*;

use std::net::SocketAddr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_format_writes_one_object_per_line_with_the_access_fields() {
    let origin = cacheable_origin().await;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"{}\"\n[log]\nformat = \"json\"\n",
        origin.url()
    );
    let bin = Binary::start("json-logs", &config, addr).await;
    let (s, h, body) = request(
        addr,
        "GET",
        "/cached?b=1&a=2",
        &[("x-request-id", "json-1")],
        b"",
    )
    .await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "MISS"));
    let (_, h, _) = request(
        addr,
        "GET",
        "/cached?a=2&b=1",
        &[("x-request-id", "json-2")],
        b"",
    )
    .await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    let log = bin.stop().await;

    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}\n{log}")))
        .collect();
    for v in &lines {
        for key in ["timestamp", "level", "target"] {
            assert!(v[key].is_string(), "{key} missing: {v}");
        }
    }
    let listening = lines.iter().find(|v| v["message"] == "apicache listening");
    let listening = listening.unwrap_or_else(|| panic!("no start line:\n{log}"));
    assert_eq!(listening["addr"], format!("127.0.0.1:{port}"));
    let access = |id: &str| {
        let line = lines
            .iter()
            .find(|v| v["target"] == "apicache::access" && v["request_id"] == id);
        line.unwrap_or_else(|| panic!("no access line for {id}:\n{log}"))
            .clone()
    };
    let miss = access("json-1");
    // The text line's fields, each once, with JSON types.
    let mut keys: Vec<&str> = miss
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bytes",
            "cache",
            "client",
            "complete",
            "detail",
            "level",
            "method",
            "origin_ms",
            "path",
            "request_id",
            "status",
            "target",
            "timestamp",
            "total_us"
        ]
    );
    assert_eq!(miss["level"], "INFO");
    assert_eq!(miss["method"], "GET");
    assert_eq!(miss["path"], "/cached?a=2&b=1");
    assert_eq!(miss["status"], 200);
    assert_eq!(miss["cache"], "MISS");
    assert_eq!(miss["detail"], "-");
    assert!(
        miss["client"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{miss}"
    );
    assert_eq!(miss["bytes"], body.len());
    assert_eq!(miss["complete"], true);
    assert!(miss["origin_ms"].as_i64().unwrap() >= 0, "{miss}");
    assert!(miss["total_us"].is_u64(), "{miss}");
    let hit = access("json-2");
    assert_eq!(
        (&hit["cache"], &hit["origin_ms"]),
        (&"HIT".into(), &(-1).into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stderr_is_plain_text_with_complete_access_lines() {
    let origin = Origin::start(|s| match s.path_and_query.as_str() {
        "/stream" => Reply::ok(json_body(3000, "s")).header("cache-control", "no-store"),
        _ => Reply::ok("{\"ok\":true}").header("cache-control", CACHEABLE),
    })
    .await;
    let (port, admin_port) = (free_port(), free_port());
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    // No pooled connections: once the origin stops, the next request is refused.
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"{}\"\n\
         pool_max_idle_per_host = 0\n\
         [admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{TOKEN}\"\n",
        origin.url()
    );
    let bin = Binary::start("logs", &config, addr).await;

    let rid = [("x-request-id", "log-test-1")];
    let (s, h, _) = request(addr, "GET", "/cached", &rid, b"").await;
    assert_eq!((s, hdr(&h, "x-cache")), (200, "MISS"));
    let (_, h, _) = request(addr, "GET", "/cached", &[], b"").await;
    assert_eq!(hdr(&h, "x-cache"), "HIT");
    let generated = hdr(&h, "x-request-id").to_string();
    let (s, _, body) = request(
        addr,
        "GET",
        "/stream",
        &[("x-request-id", "log-stream")],
        b"",
    )
    .await;
    assert_eq!(s, 200);
    let streamed = body.len();
    origin.stop().await;
    let (s, _, _) = request(addr, "GET", "/down", &[("x-request-id", "log-down")], b"").await;
    assert_eq!(s, 502);

    let log = bin.stop().await;

    assert!(!log.contains('\x1b'), "ANSI codes on a pipe:\n{log}");
    assert!(!log.contains("Some("), "{log}");
    let listening = log.lines().find(|l| l.contains("apicache listening"));
    let listening = listening.unwrap_or_else(|| panic!("no start line:\n{log}"));
    assert!(
        listening.contains(&format!("addr=127.0.0.1:{port}"))
            && listening.contains(&format!("admin=127.0.0.1:{admin_port}")),
        "{listening}"
    );
    let access = |id: &str| {
        let line = log
            .lines()
            .find(|l| l.contains("apicache::access") && l.contains(&format!("request_id={id}")));
        line.unwrap_or_else(|| panic!("no access line for {id}:\n{log}"))
            .to_string()
    };
    let miss = access("log-test-1");
    for field in [
        "method=GET",
        "path=/cached",
        "status=200",
        "cache=\"MISS\"",
        "client=127.0.0.1:",
        "bytes=11",
        "complete=true",
        "origin_ms=",
    ] {
        assert!(miss.contains(field), "{field} missing: {miss}");
    }
    assert!(access(&generated).contains("cache=\"HIT\" detail=- client=127.0.0.1:"));
    let stream = access("log-stream");
    assert!(
        stream.contains(&format!("bytes={streamed} complete=true")),
        "{stream}"
    );
    assert!(access("log-down").contains("status=502 cache=\"MISS\" detail=refused"));
    let failure = log
        .lines()
        .find(|l| l.contains("origin request failed") && l.contains("request_id=log-down"));
    let failure = failure.unwrap_or_else(|| panic!("no origin failure line:\n{log}"));
    assert!(
        failure.contains("WARN")
            && failure.contains(&format!("origin={}", origin.addr))
            && failure.contains("cause=refused"),
        "{failure}"
    );
}
