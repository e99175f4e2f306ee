//! Process lifecycle: graceful shutdown in-process, the binary's --version, --check-config and
//! SIGTERM drain.

mod support;
use support::*;

use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_drains_in_flight_requests() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"slow\":true}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(500))
    })
    .await;
    let p = proxy(&origin).await;
    let addr = p.addr;
    let inflight = tokio::spawn(request(addr, "GET", "/slow", &[], b""));
    // Wait until the request reached the origin, then shut down.
    for _ in 0..100 {
        if origin.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(origin.count(), 1);
    p.shutdown().await;
    assert_eq!(
        text(&inflight.await.unwrap().2),
        "{\"slow\":true}",
        "the in-flight request completed"
    );
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

/// `--version` and `-V` print the name and the crate's version, and need no config.
#[test]
fn version_flag_prints_the_version() {
    for flag in ["--version", "-V"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_apicache"))
            .arg(flag)
            .current_dir(std::env::temp_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("apicache {}\n", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn check_config_cli() {
    let exe = env!("CARGO_BIN_EXE_apicache");
    let dir = std::env::temp_dir().join(format!("apicache-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.toml");
    std::fs::write(&good, "[origin]\nurl = \"http://127.0.0.1:9\"\n").unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("max_size"));
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[origin]\nurl = \"http://127.0.0.1:9\"\ntimeout = \"forever\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("origin.timeout"),
        "{err}"
    );
    let out = std::process::Command::new(exe)
        .args(["--config"])
        .arg(dir.join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--check-config` prints a config that loads again, to the same effective config.
#[test]
fn check_config_output_loads_again() {
    let exe = env!("CARGO_BIN_EXE_apicache");
    let dir = std::env::temp_dir().join(format!("apicache-rt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let check = |file: &std::path::Path| {
        let out = std::process::Command::new(exe)
            .env("RT_TOKEN", "0123456789abcdef-rt")
            .args(["--check-config", "--config"])
            .arg(file)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The first line names the file; the rest is the effective config.
        stdout.split_once('\n').unwrap().1.to_string()
    };
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/apicache.toml");
    let with_env_token = dir.join("env.toml");
    std::fs::write(
        &with_env_token,
        "[server]\nhosts = [\"API.example.com\"]\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
         [origin]\nurl = \"http://127.0.0.1:9\"\n[cache]\ncredentialed = \"pass\"\n\
         max_fill_memory = \"32MiB\"\nmax_object_size = \"1500B\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken_env = \"RT_TOKEN\"\n",
    )
    .unwrap();
    for (i, file) in [example, with_env_token].iter().enumerate() {
        let first = check(file);
        let again = dir.join(format!("again-{i}.toml"));
        std::fs::write(&again, &first).unwrap();
        assert_eq!(check(&again), first, "{}", file.display());
        assert!(
            !first.contains("0123456789abcdef-rt"),
            "the token was printed"
        );
    }
    // An inline token is not printed. The printed file refuses to load until the token is put
    // back: it can never start an admin API with no token or another one.
    let inline = dir.join("inline.toml");
    std::fs::write(
        &inline,
        "[origin]\nurl = \"http://127.0.0.1:9\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"inline-secret-123456\"\n",
    )
    .unwrap();
    let printed = check(&inline);
    assert!(!printed.contains("inline-secret"), "{printed}");
    assert!(printed.contains("token = \"<redacted>\""), "{printed}");
    let redacted = dir.join("redacted.toml");
    std::fs::write(&redacted, &printed).unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", "--config"])
        .arg(&redacted)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("redacted.toml")
            && err.contains("admin.token")
            && err.contains("put the real token back"),
        "{err}"
    );
    let restored = dir.join("restored.toml");
    std::fs::write(
        &restored,
        printed.replace("<redacted>", "inline-secret-123456"),
    )
    .unwrap();
    assert_eq!(check(&restored), printed);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A route path that can never match fails `--check-config`; a sort-like `list_params` entry
/// is valid but warned about, on stderr and in the printed config.
#[test]
fn check_config_refuses_dead_routes_and_warns_about_sorted_sorts() {
    let exe = env!("CARGO_BIN_EXE_apicache");
    let dir = std::env::temp_dir().join(format!("apicache-routes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dead = dir.join("dead.toml");
    std::fs::write(
        &dead,
        "[origin]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"users/{id}\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", "--config"])
        .arg(&dead)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dead.toml")
            && err.contains("routes[0].path")
            && err.contains("start with `/`"),
        "{err}"
    );
    let sorts = dir.join("sorts.toml");
    std::fs::write(
        &sorts,
        "[origin]\nurl = \"http://127.0.0.1:9\"\n[normalize]\nlist_params = [\"fields\", \"_sort\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(exe)
        .args(["--check-config", "--config"])
        .arg(&sorts)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for text in [&stdout, &stderr] {
        assert!(
            text.contains("`_sort` looks like a sort parameter")
                && text.contains("order of its values will be ignored")
                && !text.contains("`fields`"),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_drains_and_exits_zero_on_sigterm() {
    let origin = Origin::start(|_| {
        Reply::ok("{\"drained\":true}")
            .header("cache-control", "no-store")
            .delay(Duration::from_millis(700))
    })
    .await;
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n[origin]\nurl = \"{}\"\n",
        origin.url()
    );
    let bin = Binary::start("sig", &config, addr).await;
    let inflight = tokio::spawn(request(addr, "GET", "/slow", &[], b""));
    for _ in 0..100 {
        if origin.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Stops with SIGTERM and asserts exit status 0 once the drain is over.
    let stopped = tokio::spawn(bin.stop());
    assert_eq!(text(&inflight.await.unwrap().2), "{\"drained\":true}");
    stopped.await.unwrap();
}
