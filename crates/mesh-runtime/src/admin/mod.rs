//! The admin HTTP server every service runs: `/healthz`, `/readyz`, `/metrics`.
//!
//! - `/healthz` answers 200 `ok` while the process runs (liveness: the event loop is alive).
//! - `/readyz` runs the registered [`ReadinessCheck`]s (NATS, PostgreSQL, ...) and answers 200
//!   `ready` only when all pass; otherwise 503 with a JSON body naming each failing check and
//!   its error. It answers 503 from the moment shutdown begins, so that traffic drains away.
//! - `/metrics` is the [`MetricsRegistry`] in OpenMetrics text.
//!
//! Shape (zero-to-production's `Application`): [`AdminServer::bind`] binds immediately (port 0
//! works and [`AdminServer::local_addr`] is known before serving), then
//! [`AdminServer::run_until_stopped`] serves until the [`Shutdown`] reaches its stop phase,
//! i.e. after the services drained, so probes and scrapes keep answering during the drain.

mod readiness;

use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::metrics::{self, MetricsRegistry};
use crate::shutdown::Shutdown;

pub use readiness::{
    DEFAULT_CHECK_TIMEOUT, FailedCheck, FnCheck, Readiness, ReadinessCheck, ReadinessReport,
    ReadinessStatus, check_fn,
};

/// Errors of the admin server.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The listen address could not be bound.
    #[error("admin: cannot bind {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("admin: server failed")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct AppState {
    readiness: Readiness,
    metrics: MetricsRegistry,
}

/// A bound, not yet serving, admin server.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    local_addr: SocketAddr,
    readiness: Readiness,
    metrics: MetricsRegistry,
}

impl AdminServer {
    /// Binds `addr` now; port 0 picks a free port.
    pub async fn bind(
        addr: SocketAddr,
        readiness: Readiness,
        metrics: MetricsRegistry,
    ) -> Result<Self, AdminError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(Self {
            listener,
            local_addr,
            readiness,
            metrics,
        })
    }

    /// Returns the address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` reaches its stop phase. When shutdown is triggered, `/readyz`
    /// turns 503 while the other endpoints keep answering.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> Result<(), AdminError> {
        let readiness = self.readiness.clone();
        let draining = shutdown.clone();
        let flag = tokio::spawn(async move {
            draining.triggered().await;
            readiness.set_shutting_down();
        });
        tracing::info!(addr = %self.local_addr, "admin server listening");
        let app = router(AppState {
            readiness: self.readiness,
            metrics: self.metrics,
        });
        let stopped = shutdown.clone();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { stopped.stopped().await })
            .await
            .map_err(AdminError::Serve);
        flag.abort();
        tracing::info!(addr = %self.local_addr, "admin server stopped");
        result
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_handler))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let report = state.readiness.evaluate().await;
    if report.is_ready() {
        return (StatusCode::OK, "ready").into_response();
    }
    let body = serde_json::to_string(&report)
        .unwrap_or_else(|_| r#"{"status":"not_ready","failing":[]}"#.to_owned());
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn metrics_handler(State(state): State<AppState>) -> Response {
    match state.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(error) => {
            tracing::error!(error = %error, "metrics encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
