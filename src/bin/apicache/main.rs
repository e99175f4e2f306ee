//! The apicache binary: CLI, config loading, tracing, and the demo.

use std::path::PathBuf;

use anyhow::Context;
use apicache::config::LogFormat;
use clap::{Parser, Subcommand};

mod demo;

/// Where `--config` points when it is not given.
const DEFAULT_CONFIG: &str = "config/apicache.toml";

/// A caching reverse proxy for HTTP JSON APIs.
#[derive(Parser)]
#[command(name = "apicache", version, about, long_about = None)]
struct Cli {
    /// Path of the TOML config file [default: config/apicache.toml]. With `demo`: a config to
    /// run in front of the demo API instead of the built-in one (its origin.url is replaced).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
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
        /// Public address of the proxy [default: 127.0.0.1:8080, or server.listen of --config].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Address of the sample origin.
        #[arg(long, default_value = "127.0.0.1:9000")]
        origin_listen: std::net::SocketAddr,
        /// Address of the admin API [default: 127.0.0.1:8081, or admin.listen of --config].
        #[arg(long)]
        admin_listen: Option<std::net::SocketAddr>,
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

/// Whether log lines get ANSI colours: only on a terminal, and never when `NO_COLOR` is set to
/// anything but the empty string (no-color.org). A log file or collector gets plain text.
fn use_colour(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|v| v.is_empty())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The config is read before logging starts, so that `log.format` holds from the first line;
    // an error reading it goes to stderr as text.
    let job = match Job::from_cli(cli) {
        Ok(job) => job,
        Err(e) => {
            eprintln!("apicache: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let format = job.log_format();
    init_logging(format);
    match run(job) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let e = format!("{e:#}");
            match format {
                // A collector reading JSON gets the reason as JSON too.
                LogFormat::Json => tracing::error!(error = %e, "apicache stopped"),
                LogFormat::Text => eprintln!("apicache: {e}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The global subscriber: text (coloured only on a terminal) or one JSON object per line, with
/// an event's fields at the top level beside `timestamp`, `level` and `target`.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(use_colour(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_ansi(false)
            .init(),
    }
}

/// What the command line asks for, with its config already read and validated.
enum Job {
    /// Serve with the config at `path`.
    Serve {
        path: PathBuf,
        cfg: apicache::Config,
    },
    /// `--check-config`: print the effective config.
    Check {
        path: PathBuf,
        cfg: apicache::Config,
    },
    /// `demo`, with the user's `--config` file if given.
    Demo {
        file: Option<(PathBuf, apicache::Config)>,
        addrs: DemoAddrs,
    },
}

impl Job {
    fn from_cli(cli: Cli) -> anyhow::Result<Job> {
        match cli.command {
            Some(Command::Demo { .. }) if cli.check_config => anyhow::bail!(
                "--check-config checks a config file: apicache --check-config --config FILE"
            ),
            Some(Command::Demo {
                listen,
                origin_listen,
                admin_listen,
            }) => {
                let file = match cli.config {
                    Some(path) => {
                        let cfg = apicache::Config::load(&path)?;
                        Some((path, cfg))
                    }
                    None => None,
                };
                Ok(Job::Demo {
                    file,
                    addrs: DemoAddrs {
                        listen,
                        origin: origin_listen,
                        admin: admin_listen,
                    },
                })
            }
            None => {
                let path = cli.config.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
                let cfg = apicache::Config::load(&path)?;
                Ok(if cli.check_config {
                    Job::Check { path, cfg }
                } else {
                    Job::Serve { path, cfg }
                })
            }
        }
    }

    /// The demo's built-in config logs as text.
    fn log_format(&self) -> LogFormat {
        match self {
            Job::Serve { cfg, .. } | Job::Check { cfg, .. } => cfg.log.format,
            Job::Demo { file, .. } => file.as_ref().map_or(LogFormat::Text, |(_, c)| c.log.format),
        }
    }
}

fn run(job: Job) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match job {
        Job::Demo { file, addrs } => rt.block_on(demo(file, addrs)),
        Job::Check { path, cfg } => {
            for w in cfg.warnings() {
                tracing::warn!("{w}");
            }
            println!("# {}: valid", path.display());
            print!("{}", cfg.effective_toml()?);
            Ok(())
        }
        Job::Serve { path, cfg } => {
            rt.block_on(async {
                // Before binding: a signal that arrives once clients can connect must drain, not kill.
                let mut signals = Signals::new()?;
                let running = apicache::start(cfg)
                    .await
                    .with_context(|| format!("starting with {}", path.display()))?;
                serve_until_signal(running, &mut signals).await
            })
        }
    }
}

/// The demo's addresses as given on the command line.
struct DemoAddrs {
    listen: Option<std::net::SocketAddr>,
    origin: std::net::SocketAddr,
    admin: Option<std::net::SocketAddr>,
}

/// The config the demo runs: the built-in one, or the user's `file` with the demo origin as
/// its origin; addresses given on the command line win over the file's.
fn demo_config(
    file: Option<(PathBuf, apicache::Config)>,
    origin_addr: std::net::SocketAddr,
    addrs: &DemoAddrs,
) -> anyhow::Result<apicache::Config> {
    let Some((file, cfg)) = file else {
        let listen = addrs.listen.unwrap_or(([127, 0, 0, 1], 8080).into());
        let admin = addrs.admin.unwrap_or(([127, 0, 0, 1], 8081).into());
        let text = DEMO_CONFIG
            .replace("127.0.0.1:9000", &origin_addr.to_string())
            .replace("127.0.0.1:8080", &listen.to_string())
            .replace("127.0.0.1:8081", &admin.to_string());
        return apicache::Config::parse(&text).map_err(|e| {
            anyhow::anyhow!("{}", e.to_string().replace("<inline>", "config/demo.toml"))
        });
    };
    let demo_url = format!("http://{origin_addr}");
    tracing::info!(
        file = %file.display(),
        configured = %cfg.origin.url,
        demo = %demo_url,
        "demo: origin.url replaced by the demo origin"
    );
    let mut cfg = cfg.with_origin_url(&demo_url)?;
    // A reload would read the file's own origin.url back: the demo's config is not reloadable.
    cfg.source.path = None;
    if let Some(l) = addrs.listen {
        cfg.server.listen = l;
    }
    match (addrs.admin, cfg.admin.as_mut()) {
        (Some(l), Some(a)) => a.listen = l,
        (Some(_), None) => anyhow::bail!(
            "--admin-listen: {} has no [admin] section to put on that address",
            file.display()
        ),
        _ => {}
    }
    Ok(cfg)
}

async fn demo(file: Option<(PathBuf, apicache::Config)>, addrs: DemoAddrs) -> anyhow::Result<()> {
    let origin = tokio::net::TcpListener::bind(addrs.origin)
        .await
        .with_context(|| format!("binding the demo origin on {}", addrs.origin))?;
    let origin_addr = origin.local_addr()?;
    let builtin = file.is_none();
    let cfg = demo_config(file, origin_addr, &addrs)?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let origin_task = tokio::spawn(demo::serve_origin(origin, stop_rx));
    let mut signals = Signals::new()?;
    let page_dedupe = cfg.normalize.page_param == "page";
    let admin_token = cfg.admin.as_ref().is_some_and(|a| a.token.is_some());
    let running = apicache::start(cfg)
        .await
        .context("starting the demo proxy")?;
    let scheme = |tls: bool| if tls { "https" } else { "http" };
    let tls = running.tls().clone();
    let public = format!("{}://{}", scheme(tls.server.is_some()), running.addr);
    let admin = running
        .admin_addr
        .map(|a| format!("{}://{a}", scheme(tls.admin.is_some())));
    println!(
        "{}",
        banner(
            origin_addr,
            &public,
            admin.as_deref(),
            builtin,
            page_dedupe,
            admin_token
        )
    );
    let served = serve_until_signal(running, &mut signals).await;
    let _ = stop_tx.send(true);
    let _ = origin_task.await;
    served
}

/// What the demo prints: the addresses and curl lines that work with the config it runs (`p`
/// and `admin` are base URLs: `http://127.0.0.1:8080`).
fn banner(
    origin: std::net::SocketAddr,
    p: &str,
    admin: Option<&str>,
    builtin: bool,
    page_dedupe: bool,
    admin_token: bool,
) -> String {
    let show = "grep -iE '^(x-cache|cache-status|age|x-origin-requests)'";
    let mut out = format!(
        "apicache demo\n  origin (Banking API): http://{origin}\n  apicache:             {p}\n"
    );
    if let Some(a) = admin {
        out += &format!("  admin API:            {a}\n");
    }
    out += &format!(
        "\nTry:\n  curl -si {p}/accounts/A1/transactions | {show}   # MISS\n  curl -si {p}/accounts/A1/transactions | {show}   # HIT\n"
    );
    if page_dedupe {
        out += &format!("  curl -si '{p}/accounts/A1/transactions?page=1' | grep -i '^x-cache'   # HIT: page=1 is the same object\n");
    }
    out += &format!(
        "  curl -s --compressed -o /dev/null -w '%{{size_download}} bytes br\\n' -H 'Accept-Encoding: br' {p}/accounts/A1/transactions\n  curl -si '{p}/me?apiKey=demo-key' | grep -iE '^(x-cache|cache-status)'   # key moved to Authorization, out of the cache key\n"
    );
    if let Some(a) = admin {
        let auth = if admin_token {
            "-H \"Authorization: Bearer $TOKEN\" "
        } else {
            ""
        };
        if builtin {
            out += &format!("  curl -s {auth}-X POST {a}/purge/account-A1   # purge every object tagged account-A1\n");
        } else {
            out += &format!(
                "  curl -s {auth}-X PURGE {a}/accounts/A1/transactions   # purge one URL\n"
            );
        }
        out += &format!("  curl -s {auth}{a}/metrics | grep apicache_requests_total\n");
    }
    if p.starts_with("https") || admin.is_some_and(|a| a.starts_with("https")) {
        out += "  (HTTPS: give curl your CA with --cacert FILE)\n";
    }
    out += "\nCtrl-C stops both.";
    out
}

/// Serve until SIGINT or SIGTERM, then drain (up to `server.shutdown_grace`); a second signal
/// stops without waiting for the drain (exit 1). SIGHUP re-reads the config file meanwhile.
async fn serve_until_signal(
    running: apicache::Running,
    signals: &mut Signals,
) -> anyhow::Result<()> {
    let name = loop {
        match signals.recv().await {
            Signal::Hangup => {
                tracing::info!(signal = "SIGHUP", "re-reading the config file");
                // Logged and counted by the reloader; an invalid file keeps the running config.
                // Not awaited here: a stop signal is acted on even while a reload hangs.
                let reloader = running.reloader.clone();
                tokio::spawn(async move { reloader.reload().await });
            }
            Signal::Stop(name) => break name,
        }
    };
    tracing::info!(
        signal = name,
        "shutting down: draining connections (a second signal stops at once)"
    );
    let drained = running.shutdown();
    tokio::pin!(drained);
    loop {
        tokio::select! {
            _ = &mut drained => return Ok(()),
            s = signals.recv() => if let Signal::Stop(name) = s {
                anyhow::bail!("{name} during the drain: stopped without finishing it")
            },
        }
    }
}

/// A signal the process acts on.
enum Signal {
    /// SIGHUP: reload the config.
    Hangup,
    /// SIGINT or SIGTERM (named): shut down.
    Stop(&'static str),
}

/// SIGINT, SIGTERM and SIGHUP, listened for from creation on (the default action of each would
/// kill the process).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Signals {
                term: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                int: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
                hup: signal(SignalKind::hangup()).context("listening for SIGHUP")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// The next signal.
    async fn recv(&mut self) -> Signal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => Signal::Stop("SIGTERM"),
                _ = self.int.recv() => Signal::Stop("SIGINT"),
                _ = self.hup.recv() => Signal::Hangup,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            Signal::Stop("Ctrl-C")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::use_colour;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        // (stderr is a terminal, NO_COLOR, colour)
        let rows = [
            (true, None, true),
            (true, Some(""), true),
            (true, Some("1"), false),
            (true, Some("0"), false),
            (false, None, false),
            (false, Some(""), false),
        ];
        for (tty, no_color, want) in rows {
            let v = no_color.map(std::ffi::OsString::from);
            assert_eq!(use_colour(tty, v), want, "{tty} {no_color:?}");
        }
    }
}
