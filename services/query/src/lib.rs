//! The query service: the operators' API over gRPC (docs/query.md).
//!
//! - **MeshQuery** ([`mesh_query`]): mesh objects with the lineage of every attribute (the
//!   winner and every candidate, recomputed from the stored links under the rule version in
//!   force), search by attribute value, connector objects and their join state, the review
//!   queue and its resolution, overrides, export status, the audit log and its verification,
//!   and dead letters.
//! - **RuleAdmin** ([`rule_admin`]): validate, apply as a new numbered version (refused whole
//!   when any rule is invalid), list, diff, roll back, and preview a candidate's impact on
//!   the current state without writing. After an apply the service announces the version on
//!   `mesh.rules.changed`; the pipeline services switch to it without restart
//!   ([`mesh_stage::rules`]).
//!
//! Both share one listener with the standard health service and server reflection. With
//! `query.token_sha256` set, MeshQuery and RuleAdmin calls must carry `authorization: Bearer
//! <token>`; health and reflection stay open for probes and tools. Every change an operator
//! makes through it (apply, rollback, review resolution, override, approval, replay) is
//! audited on the chain `query`, with the actor and the reason.

mod diff;
pub mod mesh_query;
mod page;
mod preview;
pub mod read;
pub mod review;
pub mod rule_admin;
pub mod status;
pub mod write;

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_bus::Bus;
use mesh_proto::v1::mesh_query_server::MeshQueryServer;
use mesh_proto::v1::rule_admin_server::RuleAdminServer;
use mesh_runtime::auth::GrpcBearer;
use mesh_runtime::config::{MeshConfig, QueryConfig};
use mesh_runtime::metrics::MetricsRegistry;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use mesh_query::MeshQueryService;
pub use rule_admin::RuleAdminService;

/// The audit writer (chain prefix) of every change made through the query service.
pub const AUDIT_WRITER: &str = "query";

/// Why the query service stopped.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The configuration is unusable.
    #[error("query configuration: {0}")]
    Config(String),
    /// The rule version in force could not be loaded.
    #[error(transparent)]
    Rules(#[from] mesh_stage::RulesError),
    /// The gRPC server failed.
    #[error("gRPC server on {addr}")]
    Serve {
        /// The listen address.
        addr: SocketAddr,
        /// What failed.
        #[source]
        source: tonic::transport::Error,
    },
}

/// What both gRPC services share.
#[derive(Debug, Clone)]
pub struct Query {
    /// The mesh database.
    pub pool: PgPool,
    /// NATS: rule announcements, dead letters.
    pub bus: Bus,
    /// Paging limits and tokens.
    pub config: Arc<QueryConfig>,
    /// The projection defaults (each target's mass-deletion guard), for previews.
    pub mesh: Arc<MeshConfig>,
    /// The rule version in force, followed live: lineage recomputes candidates under it and a
    /// preview compares against it.
    pub rules: mesh_stage::RulesHandle,
    /// Flow's resolution, run by this service (stage `query`: its outbox and audit chain) to
    /// apply overrides at once.
    pub flow: Arc<flow::FlowHandler>,
}

impl Query {
    /// Everything both services need, from the daemon's connections.
    pub fn new(
        pool: PgPool,
        bus: Bus,
        mesh: Arc<MeshConfig>,
        rules: mesh_stage::RulesHandle,
        metrics: &MetricsRegistry,
    ) -> Self {
        let stage = mesh_stage::Stage::new(AUDIT_WRITER, pool.clone(), bus.publisher(), metrics);
        Self {
            flow: Arc::new(flow::FlowHandler::new(rules.clone(), stage)),
            pool,
            bus,
            config: Arc::new(mesh.query.clone()),
            mesh,
            rules,
        }
    }

    /// The page size for a request asking for `requested` (0: the default), capped.
    pub fn page_size(&self, requested: u32) -> u32 {
        match requested {
            0 => self.config.default_page_size,
            n => n.min(self.config.max_page_size),
        }
        .max(1)
    }
}

/// Binds the gRPC listener.
pub async fn bind(config: &QueryConfig) -> Result<TcpListener, QueryError> {
    TcpListener::bind(config.listen)
        .await
        .map_err(|e| QueryError::Config(format!("cannot listen on {}: {e}", config.listen)))
}

/// Runs the query service until `shutdown` (the `meshd run query` entry point).
pub async fn run(
    config: Arc<MeshConfig>,
    bus: Bus,
    pool: PgPool,
    metrics: MetricsRegistry,
    shutdown: CancellationToken,
) -> Result<(), QueryError> {
    let listener = bind(&config.query).await?;
    let Some(rules) =
        mesh_stage::load_and_follow(&config, &pool, &bus, AUDIT_WRITER, &shutdown).await?
    else {
        // Stopped while waiting for the database.
        return Ok(());
    };
    let query = Query::new(pool, bus, config, rules, &metrics);
    serve(query, listener, shutdown).await
}

/// Serves MeshQuery, RuleAdmin, health and reflection on `listener` until `shutdown`.
pub async fn serve(
    query: Query,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), QueryError> {
    let addr = listener
        .local_addr()
        .map_err(|e| QueryError::Config(format!("listener address: {e}")))?;
    let check = GrpcBearer::new(&query.config.token_sha256, "query.token_sha256")
        .map_err(QueryError::Config)?;
    if check.is_open() {
        tracing::warn!(%addr, "query.token_sha256 is empty: MeshQuery and RuleAdmin accept every caller; rely on the network policy or set tokens");
    }
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<MeshQueryServer<MeshQueryService>>()
        .await;
    health_reporter
        .set_serving::<RuleAdminServer<RuleAdminService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(mesh_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| QueryError::Config(format!("reflection: {e}")))?;
    let mesh_check = check.clone();
    let mesh_query =
        MeshQueryServer::with_interceptor(MeshQueryService::new(query.clone()), move |request| {
            mesh_check.check(request)
        });
    let rule_admin =
        RuleAdminServer::with_interceptor(RuleAdminService::new(query), move |request| {
            check.check(request)
        });
    tracing::info!(%addr, "MeshQuery and RuleAdmin listening");
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(mesh_query)
        .add_service(rule_admin)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .map_err(|source| QueryError::Serve { addr, source })
}
