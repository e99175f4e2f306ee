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
                println!("# {}: valid", cli.config.display());
                if let Some(a) = &cfg.admin {
                    println!("# admin token: {}", a.token_source);
                }
                println!("{}", toml::to_string_pretty(&cfg)?);
                return Ok(());
            }
            rt.block_on(async {
                let running = apicache::start(cfg)
                    .await
                    .with_context(|| format!("starting with {}", cli.config.display()))?;
                running.run_until(shutdown_signal()).await;
                Ok(())
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
    let running = apicache::start(cfg)
        .await
        .context("starting the demo proxy")?;
    let p = running.addr;
    let a = running.admin_addr.unwrap_or(admin_listen);
    println!(
        "apicache demo\n  origin (Banking API): http://{origin_addr}\n  apicache:             http://{p}\n  admin API:            http://{a}\n\nTry:\n  curl -si http://{p}/accounts/A1/transactions | grep -iE '^(x-cache|cache-status|age|x-origin-requests)'   # MISS\n  curl -si http://{p}/accounts/A1/transactions | grep -iE '^(x-cache|cache-status|age|x-origin-requests)'   # HIT\n  curl -si 'http://{p}/accounts/A1/transactions?page=1' | grep -i '^x-cache'                               # HIT: page=1 is the same object\n  curl -s --compressed -o /dev/null -w '%{{size_download}} bytes br\\n' -H 'Accept-Encoding: br' http://{p}/accounts/A1/transactions\n  curl -si 'http://{p}/me?apiKey=demo-key' | grep -iE '^(x-cache|cache-status)'   # key moved to Authorization, out of the cache key\n  curl -s -X POST http://{a}/purge/account-A1                                     # purge every object tagged account-A1\n  curl -s http://{a}/metrics | grep apicache_requests_total\n\nCtrl-C stops both."
    );
    running.run_until(shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = origin_task.await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
