//! Identity Mesh service runtime: what every service in `meshd` shares around its pipeline
//! stage.
//!
//! - [`config`]: defaults, a TOML file and `MESH_*` variables, with errors that name the key.
//! - [`telemetry`]: `tracing` logs, OTLP trace export driven by `OTEL_*`, W3C propagation.
//! - [`admin`]: the `/healthz`, `/readyz`, `/metrics` HTTP server and readiness checks.
//! - [`metrics`]: the shared Prometheus registry and the one list of metric names.
//! - [`shutdown`]: SIGTERM/SIGINT, drain under a grace period, then stop.
//!
//! This crate sits beside the adapters, not under them: mesh-bus and mesh-store implement
//! [`admin::ReadinessCheck`] and carry trace context through [`telemetry::inject_context`] /
//! [`telemetry::set_parent_from`], without mesh-runtime depending on NATS or PostgreSQL.
//!
//! A service's `main` follows one shape:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use mesh_runtime::{admin, config::MeshConfig, metrics::MetricsRegistry, shutdown, telemetry};
//!
//! let config = MeshConfig::load(None)?;
//! let telemetry = telemetry::init("meshd", &config.telemetry)?;
//! let shutdown = shutdown::Shutdown::on_signals()?;
//! let readiness = admin::Readiness::new(config.admin.readiness_timeout);
//! let metrics = MetricsRegistry::new();
//! let admin = admin::AdminServer::bind(config.admin.listen, readiness, metrics).await?;
//! let admin = tokio::spawn(admin.run_until_stopped(shutdown.clone()));
//! let mut tasks = shutdown::TaskSet::new();
//! let token = shutdown.token();
//! tasks.spawn("correlation", async move { token.cancelled().await });
//! let report = shutdown.drain(tasks, config.shutdown.grace_period).await;
//! admin.await??;
//! telemetry.shutdown().await?;
//! # let _ = report; Ok(()) }
//! ```

pub mod admin;
pub mod auth;
pub mod config;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;

/// Renders an error with its sources, `outer: inner: innermost`, for logs, readiness reports
/// and messages to people (STYLE.md: the chain is logged once, where the error is handled).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
