//! Listeners: accept loop with a connection limit that evicts idle connections, HTTP/1.1 + h2c
//! or HTTPS ([`tls`]: ALPN h2 / http/1.1, replaceable certificates), per-connection deadlines
//! ([`conn`]), the connection registry ([`registry`]), graceful shutdown.

mod conn;
mod registry;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use conn::{Limits, Phase};
use registry::{Registry, Tracked, Tracker};
use tls::{CertResolver, TlsHandles};

use crate::body::ProxyBody;
use crate::config::{Config, ServerConfig};
use crate::proxy::Proxy;
use crate::reload::{ReloadError, Reloaded, Reloader};

/// Pending connections the kernel queues for `accept` (capped by `net.core.somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

/// While at `max_connections` with every connection busy, how often to look for one gone idle.
const EVICT_RETRY: Duration = Duration::from_millis(50);

/// A running apicache: its addresses and the handle to stop it.
pub struct Running {
    /// Public listener address (useful with port 0).
    pub addr: SocketAddr,
    /// Admin listener address, when configured.
    pub admin_addr: Option<SocketAddr>,
    /// The shared proxy state.
    pub proxy: Arc<Proxy>,
    /// Re-reads the config file (SIGHUP, `POST /reload`).
    pub reloader: Arc<Reloader>,
    tls: TlsHandles,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// The object store (tests and tools inspect it).
    pub fn store(&self) -> &crate::cache::Store {
        self.proxy.store()
    }

    /// The clock stored objects are aged by; tests advance it instead of sleeping.
    pub fn clock(&self) -> &crate::clock::Clock {
        self.proxy.clock()
    }

    /// The listeners' certificates, for a reload to replace (`TlsHandles::reload`).
    pub fn tls(&self) -> &TlsHandles {
        &self.tls
    }

    /// Wait (bounded) for background fills, encodings and purge removals to finish.
    pub async fn settle(&self) {
        self.proxy.settle().await;
    }

    /// Re-read the config file and apply it (logged and counted; the running config is kept
    /// when the new one is invalid).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.reloader.reload().await
    }

    /// Stop accepting, drain in-flight requests (up to `shutdown_grace`), and return.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// Run until `signal` resolves, then shut down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        tracing::info!("shutting down: draining in-flight requests");
        self.shutdown().await;
    }
}

/// `hostname:port`: what names a node in a cluster unless `cluster.node_id` does.
fn default_node_id(addr: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!("{host}:{}", addr.port())
}

/// Bind the listeners in `cfg` and start serving.
pub async fn start(cfg: Config) -> std::io::Result<Running> {
    for warning in cfg.warnings() {
        tracing::warn!("{warning}");
    }
    let listener = bind(cfg.server.listen)?;
    let addr = listener.local_addr()?;
    let admin_listener = match &cfg.admin {
        Some(a) => Some(bind(a.listen)?),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let tls = TlsHandles::new(&cfg).map_err(std::io::Error::other)?;
    let (server_tx, server_rx) = watch::channel(cfg.server.clone());
    let proxy = Arc::new(Proxy::new(cfg));
    let reloader = Arc::new(Reloader::new(proxy.clone(), server_tx, tls.clone()));
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();
    if let Some(c) = proxy.settings().cfg.cluster.clone() {
        let (cluster, task) = crate::cluster::Cluster::start(
            c,
            default_node_id(addr),
            proxy.store().clone(),
            rx.clone(),
        )
        .await?;
        proxy.set_cluster(cluster);
        tasks.push(task);
    }

    let p = proxy.clone();
    tasks.push(tokio::spawn(serve(
        listener,
        server_rx.clone(),
        tls.server.clone(),
        rx.clone(),
        move |req, peer| {
            let p = p.clone();
            async move { p.handle(req, peer).await }
        },
    )));
    if let Some(l) = admin_listener {
        let r = reloader.clone();
        tasks.push(tokio::spawn(serve(
            l,
            server_rx,
            tls.admin.clone(),
            rx,
            move |req, _peer| {
                let r = r.clone();
                async move { crate::admin::handle(&r, req).await }
            },
        )));
    }
    let scheme = |on: bool| if on { "https" } else { "http" };
    let (tls_on, admin_tls_on) = (tls.server.is_some(), tls.admin.is_some());
    match admin_addr {
        Some(admin) => tracing::info!(
            %addr,
            %admin,
            scheme = scheme(tls_on),
            admin_scheme = scheme(admin_tls_on),
            "apicache listening"
        ),
        None => tracing::info!(%addr, admin = "off", scheme = scheme(tls_on), "apicache listening"),
    }
    Ok(Running {
        addr,
        admin_addr,
        proxy,
        reloader,
        tls,
        shutdown: tx,
        tasks,
    })
}

/// A listening socket with a backlog of [`LISTEN_BACKLOG`] (tokio's `bind` uses 128, which a burst
/// of connections overflows: the kernel drops their SYNs and clients retry only after 1 s, 3 s...).
fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As tokio's `bind`: a restart can rebind while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accept connections on `listener` and serve them with `handler` until `shutdown` turns true,
/// then drain (up to `shutdown_grace`). `cfg` follows reloads: timeouts and header limits apply
/// to connections accepted after a change (`max_connections` needs a restart). With `tls`, every
/// connection is HTTPS (`cfg.tls` itself is not read: the resolver is what a reload replaces).
///
/// At `max_connections`, the connection idle the longest is closed to make room; only when every
/// connection has a request in flight does a new one wait.
pub async fn serve<H, F>(
    listener: TcpListener,
    mut cfg: watch::Receiver<ServerConfig>,
    tls: Option<Arc<CertResolver>>,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let (mut builders, mut limits) = connection_settings(&cfg.borrow_and_update());
    let acceptor = match tls {
        Some(r) => match tls::acceptor(r) {
            Ok(a) => Some(a),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the TLS configuration: listener not serving");
                return;
            }
        },
        None => None,
    };
    let registry = Arc::new(Registry::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Serving);
    let slots = Arc::new(Semaphore::new(cfg.borrow().max_connections));
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        if cfg.has_changed().unwrap_or(false) {
            (builders, limits) = connection_settings(&cfg.borrow_and_update());
        }
        let Some(permit) = slot(&slots, &registry, &mut shutdown).await else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let entry = registry.add(permit);
        let svc = service(
            handler.clone(),
            entry.tracker().clone(),
            registry.clone(),
            peer,
            acceptor.is_some(),
        );
        let mut phase = phase_rx.clone();
        let Some(acceptor) = acceptor.clone() else {
            let conn = builders
                .auto
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            tokio::spawn(conn::drive(conn, entry, limits, phase, peer));
            continue;
        };
        // The handshake runs in the connection's task: a slow client never holds up accept.
        let builders = builders.clone();
        tokio::spawn(async move {
            let t = entry.tracker().clone();
            let Some(stream) =
                tls::handshake(&acceptor, stream, &t, limits, &mut phase, peer).await
            else {
                return;
            };
            let builder = builders.for_alpn(stream.get_ref().1.alpn_protocol());
            let conn = builder
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            conn::drive(conn, entry, limits, phase, peer).await;
        });
    }
    drop(listener);
    let grace = cfg.borrow().shutdown_grace;
    drain(&registry, phase_tx, phase_rx, grace).await;
}

/// The connection builders (HTTP/1 and HTTP/2 limits) and deadlines for `cfg`.
fn connection_settings(cfg: &ServerConfig) -> (Arc<Builders>, Limits) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_header_size.as_u64() as usize)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(cfg.idle_timeout)
        .keep_alive_timeout(cfg.header_read_timeout)
        .max_header_list_size(cfg.max_header_size.as_u64() as u32);
    let limits = Limits {
        header_read: cfg.header_read_timeout,
        idle: cfg.idle_timeout,
        drain_idle: cfg.shutdown_idle_wait,
    };
    (Arc::new(Builders::new(builder)), limits)
}

/// The connection builders: sniffing HTTP/1 or h2 (plain listeners, TLS without ALPN), and one per
/// protocol a TLS client negotiated, so an `http/1.1` client cannot switch to h2 and back.
struct Builders {
    auto: auto::Builder<TokioExecutor>,
    http1: auto::Builder<TokioExecutor>,
    http2: auto::Builder<TokioExecutor>,
}

impl Builders {
    fn new(auto: auto::Builder<TokioExecutor>) -> Self {
        Builders {
            http1: auto.clone().http1_only(),
            http2: auto.clone().http2_only(),
            auto,
        }
    }

    fn for_alpn(&self, alpn: Option<&[u8]>) -> &auto::Builder<TokioExecutor> {
        match alpn {
            Some(b"h2") => &self.http2,
            Some(b"http/1.1") => &self.http1,
            _ => &self.auto,
        }
    }
}

/// A connection slot: free, or made free by evicting the connection idle the longest; waits
/// while every connection is busy. None when shutdown began meanwhile.
async fn slot(
    slots: &Arc<Semaphore>,
    registry: &Registry,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<OwnedSemaphorePermit> {
    if let Ok(p) = slots.clone().try_acquire_owned() {
        return Some(p);
    }
    if !registry.evict_oldest_idle() {
        tracing::debug!("max_connections reached and every connection is busy: waiting");
    }
    // Bounded by shutdown; each round waits for a freed slot or EVICT_RETRY.
    loop {
        tokio::select! {
            p = slots.clone().acquire_owned() => return p.ok(),
            // A busy connection may have gone idle since (keep-alive between requests).
            _ = tokio::time::sleep(EVICT_RETRY) => { registry.evict_oldest_idle(); }
            _ = shutdown.changed() => return None,
        }
    }
}

/// The per-connection service: marks requests that came over TLS ([`crate::forwarding::Tls`]),
/// counts the request in flight until its response body is done and, once draining, asks HTTP/1
/// clients to close (`Connection: close`) instead of being reset later.
fn service<H, F>(
    handler: H,
    tracker: Arc<Tracker>,
    registry: Arc<Registry>,
    peer: SocketAddr,
    tls: bool,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Tracked<ProxyBody>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Tracked<ProxyBody>>, Infallible>> + Send,
> + Clone
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    service_fn(move |mut req: Request<Incoming>| {
        if tls {
            req.extensions_mut().insert(crate::forwarding::Tls);
        }
        let http1 = req.version() < http::Version::HTTP_2;
        let guard = tracker.start(!http1);
        let h = handler.clone();
        let registry = registry.clone();
        async move {
            let mut resp = h(req, peer).await;
            if http1 && registry.draining() {
                resp.headers_mut()
                    .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            Ok(resp.map(|b| Tracked::new(b, guard)))
        }
    })
}

/// Tell every connection to finish, wait for them (up to `grace`), then drop the rest.
async fn drain(
    registry: &Registry,
    phase_tx: watch::Sender<Phase>,
    phase_rx: watch::Receiver<Phase>,
    grace: Duration,
) {
    registry.start_draining();
    let _ = phase_tx.send(Phase::Draining);
    // Every connection task holds a receiver: all dropped means all connections are done.
    drop(phase_rx);
    let open = registry.len();
    tokio::select! {
        _ = phase_tx.closed() => {
            tracing::debug!(connections = open, "all connections drained");
            return;
        }
        _ = tokio::time::sleep(grace) => {}
    }
    tracing::warn!(
        connections = registry.len(),
        "shutdown grace elapsed with connections still open: closing them"
    );
    let _ = phase_tx.send(Phase::Closing);
    let _ = tokio::time::timeout(Duration::from_secs(1), phase_tx.closed()).await;
}
