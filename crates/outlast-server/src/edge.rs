//! The edge: accepting connections, HTTP/1.1 and HTTP/2 with header-read limits, and graceful
//! shutdown that stops accepting, lets in-flight requests finish within a grace period, and
//! turns `/readyz` to 503 so load balancers drain the instance first.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

use crate::protect::PeerIp;
use crate::{AppState, app};
use tower::ServiceExt;

/// HTTP/2 streams a client may reset before the server has accepted them (Rapid Reset,
/// CVE-2023-44487): past it the connection is closed.
const MAX_PENDING_RESETS: usize = 20;

/// How shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Whether every connection finished within the grace period.
    pub drained: bool,
}

/// A bound gateway, ready to serve.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
}

impl Server {
    /// Bind the configured `listen` address.
    pub async fn bind(state: Arc<AppState>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(state.config.listen).await?;
        Ok(Self { listener, state })
    }

    /// Serve on an already bound listener (tests bind port 0).
    pub fn from_listener(listener: TcpListener, state: Arc<AppState>) -> Self {
        Self { listener, state }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve until `shutdown` resolves, then drain.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> ShutdownReport {
        let Server { listener, state } = self;
        let limits = state.config.server.clone();
        let app = app(Arc::clone(&state));
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(state.config.edge.max_h2_streams)
            .max_pending_accept_reset_streams(MAX_PENDING_RESETS)
            .keep_alive_interval(Duration::from_secs(30));
        let graceful = GracefulShutdown::new();
        let (status_stop, status_rx) = tokio::sync::watch::channel(false);
        let status_task = tokio::spawn(crate::status::run(Arc::clone(&state), status_rx));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        // Over the total or per-address limit: close at once, before any
                        // byte is read, so idle or slow connections cannot pile up.
                        let Some(permit) = state.protect.connections.open(peer.ip()) else {
                            state.protect.counters.connections_refused.fetch_add(1, Ordering::Relaxed);
                            drop(stream);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let ip = PeerIp(peer.ip());
                        let svc = TowerToHyperService::new(app.clone().map_request(
                            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                                req.extensions_mut().insert(ip);
                                req
                            },
                        ));
                        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
                        let conn = graceful.watch(conn);
                        tokio::spawn(async move {
                            let _permit = permit;
                            if let Err(e) = conn.await {
                                tracing::debug!(error = %e, "connection ended with an error");
                            }
                        });
                    }
                    Err(e) => {
                        // Out of file descriptors or similar: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        state.draining.store(true, Ordering::Relaxed);
        tracing::info!(grace = ?limits.shutdown_grace, "shutting down: no new connections; waiting for in-flight requests");
        let drained = tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
            .await
            .is_ok();
        if !drained {
            tracing::warn!("grace period over; closing the remaining connections");
        }
        // Last flush of history and incidents, then the status task ends.
        let _ = status_stop.send(true);
        let _ = status_task.await;
        // Every usage row of the finished requests reaches the ledger before exit.
        state.protect.close().await;
        ShutdownReport { drained }
    }
}
