//! The apicache binary as an operator runs it: a config file in a temp directory, stderr read
//! all along (a full pipe can never block it, and tests can wait for a line), signals, a clean
//! SIGTERM stop; the child is killed whatever happens in the test.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A free 127.0.0.1 port for a child to bind (freed again before the child starts).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The binary running a config file; killed and its directory removed on drop.
pub struct Binary {
    child: Option<std::process::Child>,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
    config: PathBuf,
}

impl Binary {
    /// Write `config` to a temp file named after `name`, start the binary on it and wait
    /// (bounded) until `addr` accepts connections.
    pub async fn start(name: &str, config: &str, addr: SocketAddr) -> Binary {
        let dir = std::env::temp_dir().join(format!("apicache-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_apicache"))
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .env_remove("NO_COLOR")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let bin = Binary {
            child: Some(child),
            stderr,
            reader: Some(reader),
            dir,
            config: path,
        };
        let mut up = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "apicache did not start:\n{}", bin.log());
        bin
    }

    /// The config file it runs (tests rewrite it before a reload).
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Everything logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Send `SIG<name>` (`HUP`, `TERM`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().unwrap().id();
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Wait (bounded) until the log has `n` lines containing `needle`, and return it.
    pub async fn wait_log(&self, needle: &str, n: usize) -> String {
        for _ in 0..400 {
            let log = self.log();
            if log.matches(needle).count() >= n {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no {n}× {needle:?} in the log:\n{}", self.log());
    }

    /// SIGTERM, wait for a clean exit (status 0), and return everything it logged.
    pub async fn stop(mut self) -> String {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status.code(), Some(0));
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        self.log()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
