//! Listeners: accept loop with a connection limit, HTTP/1.1 + h2c, header-read timeouts, graceful shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::body::ProxyBody;
use crate::config::{Config, ServerConfig};
use crate::proxy::Proxy;

/// A running apicache: its addresses and the handle to stop it.
pub struct Running {
    /// Public listener address (useful with port 0).
    pub addr: SocketAddr,
    /// Admin listener address, when configured.
    pub admin_addr: Option<SocketAddr>,
    /// The shared proxy state.
    pub proxy: Arc<Proxy>,
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

    /// Wait (bounded) for background fills, encodings and purge removals to finish.
    pub async fn settle(&self) {
        self.proxy.settle().await;
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

/// Bind the listeners in `cfg` and start serving.
pub async fn start(cfg: Config) -> std::io::Result<Running> {
    let listener = TcpListener::bind(cfg.server.listen).await?;
    let addr = listener.local_addr()?;
    let admin_listener = match &cfg.admin {
        Some(a) => {
            if a.token.is_none() {
                tracing::warn!(listen = %a.listen, "admin API has no token: anyone who can reach it can purge");
            }
            Some(TcpListener::bind(a.listen).await?)
        }
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .map(|l| l.local_addr())
        .transpose()?;
    let server_cfg = cfg.server.clone();
    let proxy = Arc::new(Proxy::new(cfg));
    let (tx, rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let p = proxy.clone();
    tasks.push(tokio::spawn(serve(
        listener,
        server_cfg.clone(),
        rx.clone(),
        move |req, peer| {
            let p = p.clone();
            async move { p.handle(req, peer).await }
        },
    )));
    if let Some(l) = admin_listener {
        let p = proxy.clone();
        tasks.push(tokio::spawn(serve(l, server_cfg, rx, move |req, _peer| {
            let p = p.clone();
            async move { crate::admin::handle(&p, req).await }
        })));
    }
    tracing::info!(%addr, admin = ?admin_addr, "apicache listening");
    Ok(Running {
        addr,
        admin_addr,
        proxy,
        shutdown: tx,
        tasks,
    })
}

/// Accept connections on `listener` and serve them with `handler` until `shutdown` turns true.
pub async fn serve<H, F>(
    listener: TcpListener,
    cfg: ServerConfig,
    mut shutdown: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<ProxyBody>> + Send + 'static,
{
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
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = shutdown.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let h = handler.clone();
        let svc = service_fn(move |req| {
            let h = h.clone();
            async move { Ok::<_, std::convert::Infallible>(h(req, peer).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with error");
            }
            drop(permit);
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!("all connections drained"),
        _ = tokio::time::sleep(cfg.shutdown_grace) => tracing::warn!("shutdown grace elapsed with connections still open"),
    }
}
