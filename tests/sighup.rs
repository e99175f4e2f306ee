//! The binary re-reads its config on SIGHUP: a changed route TTL applies while what was cached
//! stays a hit; an invalid edit is logged and the running config kept, the process alive; a
//! renewed certificate is served to new connections.

mod support;
use support::*;

use std::net::SocketAddr;

fn config(port: u16, origin: &Origin, ttl: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"{}\"\n\
         [[routes]]\npath = \"/r/{{*rest}}\"\nttl = \"{ttl}\"\n",
        origin.url()
    )
}

/// The `ttl=` of a hit's Cache-Status (none for other answers).
async fn hit_ttl(addr: SocketAddr, path: &str) -> Option<i64> {
    let (status, h, _) = request(addr, "GET", path, &[], b"").await;
    assert_eq!(status, 200);
    let cs = hdr(&h, "cache-status").to_string();
    let ttl = cs.split("ttl=").nth(1)?;
    ttl.split(';').next()?.trim().parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_new_ttl_keeps_the_cache_and_survives_an_invalid_edit() {
    let origin = Origin::start(|s| Reply::ok(format!("{{\"p\":\"{}\"}}", s.path_and_query))).await;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let bin = Binary::start("hup", &config(port, &origin, "600s"), addr).await;
    let file = bin.config_path().to_path_buf();

    assert_eq!(hit_ttl(addr, "/r/a").await, None, "a miss first");
    assert!(hit_ttl(addr, "/r/a").await.unwrap() > 590);

    std::fs::write(&file, config(port, &origin, "30s")).unwrap();
    bin.signal("HUP");
    bin.wait_log("config reloaded", 1).await;
    assert_eq!(hit_ttl(addr, "/r/b").await, None);
    assert!(
        hit_ttl(addr, "/r/b").await.unwrap() <= 30,
        "the new TTL applies"
    );
    assert!(
        hit_ttl(addr, "/r/a").await.unwrap() > 500,
        "still cached as before"
    );
    assert_eq!(origin.count_for("/r/a"), 1);

    std::fs::write(
        &file,
        config(port, &origin, "5s").replace("[server]", "[server]\nidle_timeout = \"soon\""),
    )
    .unwrap();
    bin.signal("HUP");
    let log = bin.wait_log("config reload rejected", 1).await;
    let line = log
        .lines()
        .find(|l| l.contains("config reload rejected"))
        .unwrap();
    assert!(
        line.contains(&file.display().to_string()) && line.contains("server.idle_timeout"),
        "the log names the file and the key: {line}"
    );
    // Alive, on the last good config.
    assert_eq!(hit_ttl(addr, "/r/c").await, None);
    let ttl = hit_ttl(addr, "/r/c").await.unwrap();
    assert!(ttl > 5 && ttl <= 30, "{ttl}");
    drop(bin);
}

/// The certificate a new TLS connection to `addr` is served.
async fn served_cert(ca: &Ca, addr: SocketAddr) -> Vec<u8> {
    let s = tls_connect(addr, ca.rustls_config(&[b"http/1.1"], false)).await;
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_serves_a_renewed_certificate_without_a_restart() {
    let origin = Origin::start(|_| Reply::ok("{}")).await;
    let ca = Ca::new("hup");
    let first = ca.leaf("server", KeyKind::EcdsaP256Sec1);
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{}\n[origin]\nurl = \"{}\"\n",
        first.toml_line(),
        origin.url()
    );
    let bin = Binary::start("hup-cert", &text, addr).await;
    assert_eq!(served_cert(&ca, addr).await, first.der.to_vec());

    // Renewed in place: same paths, new files.
    let renewed = ca.leaf("server", KeyKind::EcdsaP256Sec1);
    assert_ne!(renewed.der, first.der);
    bin.signal("HUP");
    bin.wait_log("config reloaded", 1).await;
    assert_eq!(served_cert(&ca, addr).await, renewed.der.to_vec());

    // A key that does not match: the reload is refused and the renewed certificate stays.
    let other = ca.leaf("other", KeyKind::EcdsaP256Sec1);
    std::fs::copy(&other.tls.key_file, &renewed.tls.key_file).unwrap();
    bin.signal("HUP");
    let log = bin.wait_log("config reload rejected", 1).await;
    assert!(log.contains("server.tls.key_file"), "{log}");
    assert_eq!(served_cert(&ca, addr).await, renewed.der.to_vec());
    drop(bin);
}
