//! The apicache binary: CLI, config loading, tracing, and the demo.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod demo;

/// A caching reverse proxy for HTTP JSON APIs.
#[derive(Parser)]
#[command(name = "apicache", version, about, long_about = None)]
struct Cli {
    /// Path of the TOML config file.
    #[arg(long, short, default_value = "config/apicache.toml", global = true)]
    config: PathBuf,
    /// Validate the config, print the effective configuration, and exit (0 valid, 1 invalid).
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a sample Banking API and apicache in front of it, and print curl lines to try.
    Demo {
        /// Public address of the proxy.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Address of the sample origin.
        #[arg(long, default_value = "127.0.0.1:9000")]
        origin_listen: std::net::SocketAddr,
        /// Address of the admin API.
        #[arg(long, default_value = "127.0.0.1:8081")]
        admin_listen: std::net::SocketAddr,
    },
}

/// jemalloc returns freed pages to the OS on its own (background threads, short decay), so RSS
/// follows the cache's byte budget instead of the allocator's high-water mark.
#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (read by the allocator itself before main).
#[cfg(all(unix, not(target_env = "musl")))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

/// The demo's config, embedded so `apicache demo` works from any directory.
const DEMO_CONFIG: &str = include_str!("../../../config/demo.toml");

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apicache: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Some(Command::Demo {
            listen,
            origin_listen,
            admin_listen,
        }) => rt.block_on(demo(listen, origin_listen, admin_listen)),
        None => {
            let cfg = apicache::Config::load(&cli.config)?;
            if cli.check_config {
                for w in cfg.warnings() {
                    tracing::warn!("{w}");
                }
                println!("# {}: valid", cli.config.display());
                print!("{}", cfg.effective_toml()?);
                return Ok(());
            }
            rt.block_on(async {
                // Before binding: a signal that arrives once clients can connect must drain, not kill.
                let mut signals = Signals::new()?;
                let running = apicache::start(cfg)
                    .await
                    .with_context(|| format!("starting with {}", cli.config.display()))?;
                serve_until_signal(running, &mut signals).await
            })
        }
    }
}

async fn demo(
    listen: std::net::SocketAddr,
    origin_listen: std::net::SocketAddr,
    admin_listen: std::net::SocketAddr,
) -> anyhow::Result<()> {
    let origin = tokio::net::TcpListener::bind(origin_listen)
        .await
        .with_context(|| format!("binding the demo origin on {origin_listen}"))?;
    let origin_addr = origin.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let origin_task = tokio::spawn(demo::serve_origin(origin, stop_rx));
    let text = DEMO_CONFIG
        .replace("127.0.0.1:9000", &origin_addr.to_string())
        .replace("127.0.0.1:8080", &listen.to_string())
        .replace("127.0.0.1:8081", &admin_listen.to_string());
    let cfg = apicache::Config::parse(&text).map_err(|e| {
        anyhow::anyhow!("{}", e.to_string().replace("<inline>", "config/demo.toml"))
    })?;
    let mut signals = Signals::new()?;
    let running = apicache::start(cfg)
        .await
        .context("starting the demo proxy")?;
    let p = running.addr;
    let a = running.admin_addr.unwrap_or(admin_listen);
    println!(
        "apicache demo\n  origin (Banking API): http://{origin_addr}\n  apicache:             http://{p}\n  admin API:            http://{a}\n\nTry:\n  curl -si http://{p}/accounts/A1/transactions | grep -iE '^(x-cache|cache-status|age|x-origin-requests)'   # MISS\n  curl -si http://{p}/accounts/A1/transactions | grep -iE '^(x-cache|cache-status|age|x-origin-requests)'   # HIT\n  curl -si 'http://{p}/accounts/A1/transactions?page=1' | grep -i '^x-cache'                               # HIT: page=1 is the same object\n  curl -s --compressed -o /dev/null -w '%{{size_download}} bytes br\\n' -H 'Accept-Encoding: br' http://{p}/accounts/A1/transactions\n  curl -si 'http://{p}/me?apiKey=demo-key' | grep -iE '^(x-cache|cache-status)'   # key moved to Authorization, out of the cache key\n  curl -s -X POST http://{a}/purge/account-A1                                     # purge every object tagged account-A1\n  curl -s http://{a}/metrics | grep apicache_requests_total\n\nCtrl-C stops both."
    );
    let served = serve_until_signal(running, &mut signals).await;
    let _ = stop_tx.send(true);
    let _ = origin_task.await;
    served
}

/// Serve until SIGINT or SIGTERM, then drain (up to `server.shutdown_grace`); a second signal
/// stops without waiting for the drain (exit 1).
async fn serve_until_signal(
    running: apicache::Running,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    let name = signals.recv().await;
    tracing::info!(
        signal = name,
        "shutting down: draining connections (a second signal stops at once)"
    );
    tokio::select! {
        _ = running.shutdown() => Ok(()),
        name = signals.recv() => anyhow::bail!("{name} during the drain: stopped without finishing it"),
    }
}

/// SIGINT and SIGTERM, listened for from creation on (the default action would kill the process).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal's name.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
