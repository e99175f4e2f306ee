//! `apicache demo --config FILE`: the real binary runs the demo API behind the user's config.

mod support;
use support::*;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Kills the child whatever happens in the test.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("apicache-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The proxy address the demo prints, read from its banner (bounded wait).
fn proxy_addr(lines: &mpsc::Receiver<String>) -> SocketAddr {
    loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo printed its banner");
        if let Some(url) = line.trim().strip_prefix("apicache:") {
            return url.trim().trim_start_matches("http://").parse().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_given_config_in_front_of_the_demo_api() {
    let dir = temp_dir("demo-cfg");
    let cfg = dir.join("mine.toml");
    // Nothing here is like the built-in demo config: the demo must use this file.
    std::fs::write(
        &cfg,
        "[server]\nlisten = \"127.0.0.1:0\"\nvia = \"mine-via\"\n\
         [origin]\nurl = \"http://127.0.0.1:9/not-the-demo\"\n\
         [[routes]]\npath = \"/accounts/{id}/transactions\"\ncache = false\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_apicache"))
        .args(["demo", "--origin-listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let (etx, errors) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = etx.send(line);
        }
    });
    let _guard = Guard(child);
    let addr = tokio::task::spawn_blocking(move || proxy_addr(&lines))
        .await
        .unwrap();

    // The demo origin answers (origin.url was replaced), under this file's route and Via.
    let mut counts = Vec::new();
    for _ in 0..2 {
        let (status, h, body) = request(addr, "GET", "/accounts/A1/transactions", &[], b"").await;
        assert_eq!(status, 200, "{}", text(&body));
        assert!(hdr(&h, "via").contains("mine-via"), "{h:?}");
        assert_ne!(hdr(&h, "x-cache"), "HIT", "cache = false in this file");
        counts.push(hdr(&h, "x-origin-requests").to_string());
    }
    assert_ne!(
        counts[0], counts[1],
        "both requests reached the demo origin"
    );

    // Logged before the banner was printed; a bounded wait for the reader thread.
    let replaced = |l: &str| {
        l.contains("origin.url replaced by the demo origin")
            && l.contains("http://127.0.0.1:9/not-the-demo")
    };
    let mut logged = Vec::new();
    let found = loop {
        match errors.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if replaced(&line) => break true,
            Ok(line) => logged.push(line),
            Err(_) => break false,
        }
    };
    assert!(found, "{logged:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_refuses_what_it_cannot_honour() {
    let dir = temp_dir("demo-refuse");
    let cfg = dir.join("no-admin.toml");
    std::fs::write(&cfg, "[origin]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
    // Each run must exit on its own; one that serves instead is killed after a bounded wait.
    let run = |args: &[&str]| {
        let mut child = Guard(
            Command::new(env!("CARGO_BIN_EXE_apicache"))
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut status = None;
        for _ in 0..600 {
            status = child.0.try_wait().unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = status.unwrap_or_else(|| panic!("{args:?} did not exit"));
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.0.stderr.take().unwrap(), &mut err).unwrap();
        (status.code(), err)
    };
    let path = cfg.to_str().unwrap();
    let (code, err) = run(&[
        "demo",
        "--origin-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--config",
        path,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--admin-listen") && err.contains("no [admin] section"),
        "{err}"
    );
    let (code, err) = run(&["--check-config", "demo", "--config", path]);
    assert_eq!(code, Some(1));
    assert!(err.contains("--check-config checks a config file"), "{err}");
    // An invalid file fails the demo as it fails a normal start: file, key, reason.
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[origin]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"soon\"\n",
    )
    .unwrap();
    let (code, err) = run(&[
        "demo",
        "--origin-listen",
        "127.0.0.1:0",
        "--config",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("bad.toml") && err.contains("origin.timeout"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
