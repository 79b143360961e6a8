//! The connector agent: the front doors of the mesh. Identity providers push users, groups and
//! service accounts over SCIM 2.0; HR systems drop CSV or JSON extracts. Both become
//! `ChangeEvent`s on `MESH_CHANGES` (subject `mesh.change.<connector>`), consumed by
//! correlation.
//!
//! - [`scim`]: a standards-true SCIM 2.0 service provider (RFC 7643/7644), one endpoint per
//!   inbound SCIM connector, resources in PostgreSQL.
//! - [`hr`]: HR feeds: streaming CSV/JSON/NDJSON parsing with column mapping, a full-extract
//!   diff (joiners, movers, leavers) with a leaver safety threshold, a drop-directory watcher
//!   and an upload endpoint for `meshctl import`.
//! - [`rate_limit`]: a token bucket per bearer token (keyed by its configured digest) in
//!   front of SCIM and uploads; over it, 429 with `Retry-After`.
//! - [`outbox`]: every accepted change is written to `connector_outbox` in the transaction
//!   that makes it durable; the relay publishes it afterwards with a deterministic
//!   `Nats-Msg-Id` ([`events`]). Nothing is published before it is durable, and nothing
//!   durable is lost while NATS is down.
//!
//! Shape (STYLE.md): [`Agent::build`] parses the configuration and binds the listener (port 0
//! in tests); [`Agent::run_until_stopped`] serves SCIM and uploads, runs the relay and the
//! drop-directory watchers, and on shutdown stops accepting, lets in-flight requests finish
//! and drains the outbox. docs/connector-agent.md and docs/scim.md describe the behaviour.
//!
//! Tracing: each request runs in an `http.request` server span ([`trace_request`]), which
//! continues the caller's W3C `traceparent` when it sends one; the outbox rows a request writes
//! keep that span's context, so the relay publishes the change in the request's trace.

pub mod events;
pub mod hr;
pub mod outbox;
pub mod rate_limit;
pub mod scim;
pub mod settings;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use mesh_bus::Bus;
use mesh_runtime::config::{ConnectorAgentConfig, MeshConfig};
use mesh_runtime::metrics::MetricsRegistry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::outbox::Relay;
use crate::scim::ScimState;
use crate::scim::store::ScimStore;

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The `connector_agent` section is invalid.
    #[error("invalid connector_agent configuration")]
    Settings(#[from] settings::SettingsError),
    /// The listener could not be bound.
    #[error("cannot bind {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while serving.
    #[error("the connector agent's HTTP server failed")]
    Serve(#[source] std::io::Error),
}

/// A connector agent, bound and ready to run.
#[derive(Debug)]
pub struct Agent {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: Router,
    relay: Relay,
    watchers: Vec<hr::watch::DropDirWatcher>,
}

impl Agent {
    /// Parses `config`, binds its listen address and prepares the relay and watchers.
    pub async fn build(
        config: &ConnectorAgentConfig,
        bus: &Bus,
        pool: PgPool,
        metrics: &MetricsRegistry,
    ) -> Result<Self, AgentError> {
        let settings = settings::Settings::parse(config)?;
        let rate_limit = rate_limit::TokenRateLimit::new(
            config.rate_limit_per_second,
            config.rate_limit_burst,
            metrics,
        );
        let relay = Relay::new(
            pool.clone(),
            bus.publisher(),
            config.relay_batch,
            config.relay_interval,
            metrics,
        );
        let scim_state = ScimState::new(
            ScimStore::new(pool.clone()),
            settings.scim.clone(),
            config.public_url.clone(),
            config.max_results,
            config.max_body_bytes,
            relay.handle(),
            rate_limit.clone(),
            metrics,
        );
        let importer = Arc::new(hr::Importer::new(pool, relay.handle(), metrics));
        let uploads = hr::upload::UploadState::new(
            importer.clone(),
            settings.hr.clone(),
            settings.import_token_hashes.clone(),
            rate_limit,
            config.spool_dir.clone(),
        );
        let router = scim::router(scim_state)
            .merge(hr::upload::router(uploads))
            .layer(axum::middleware::map_response(scim::scim_error_bodies))
            .layer(axum::middleware::from_fn(trace_request));
        let watchers = settings
            .hr
            .iter()
            .filter(|feed| feed.drop_dir.is_some())
            .map(|feed| hr::watch::DropDirWatcher::new(feed.clone(), importer.clone()))
            .collect();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| AgentError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| AgentError::Bind {
            addr: config.listen,
            source,
        })?;
        Ok(Self {
            listener,
            local_addr,
            router,
            relay,
            watchers,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown`; then stops accepting, finishes in-flight requests and imports,
    /// and drains the outbox.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        tracing::info!(addr = %self.local_addr, "connector agent listening");
        let relay = tokio::spawn(self.relay.run(shutdown.child_token()));
        let mut watchers = Vec::new();
        for watcher in self.watchers {
            watchers.push(tokio::spawn(watcher.run(shutdown.child_token())));
        }
        let token = shutdown.clone();
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await
            .map_err(AgentError::Serve);
        // The server stopped: let watchers finish their file, then let the relay drain.
        shutdown.cancel();
        for watcher in watchers {
            let _ = watcher.await;
        }
        let _ = relay.await;
        tracing::info!("connector agent stopped");
        served
    }
}

/// Serves `request` in an `http.request` span (kind server, HTTP semantic-convention
/// attributes) whose parent is the caller's W3C trace context, if it sent one.
async fn trace_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        otel.name = %match &route {
            Some(route) => format!("{method} {route}"),
            None => method.to_string(),
        },
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = route.as_deref(),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let carrier: HashMap<String, String> = ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| {
            let value = request.headers().get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect();
    let _ = mesh_runtime::telemetry::set_parent_from(&span, &carrier);
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}

/// Runs the connector agent of `config` until `shutdown` (the `meshd run connector-agent`
/// entry point).
pub async fn run(
    config: Arc<MeshConfig>,
    bus: Bus,
    pool: PgPool,
    metrics: MetricsRegistry,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let section = &config.connector_agent;
    if section.scim.is_empty() && section.hr.is_empty() {
        // `meshd run all` on a machine without connectors must not grab a port for nothing.
        tracing::info!("connector agent has no SCIM endpoint or HR feed configured; idle");
        shutdown.cancelled().await;
        return Ok(());
    }
    Agent::build(section, &bus, pool, &metrics)
        .await?
        .run_until_stopped(shutdown)
        .await
}
