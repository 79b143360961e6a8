//! The flow service: correlated changes -> resolved mesh objects -> mesh object changes.
//!
//! The `flow` consumer reads MESH_JOINED in micro-batches. Per batch, in one transaction: claim
//! the message ids in the inbox, lock the mesh objects the batch touches and load their links
//! (the raw attributes of each joined connector object) and overrides; then per correlated
//! change, in stream order, replace the connector object's contributions (the pure
//! [`mesh_engine::flow`]), withdraw them from the mesh object it left, and run
//! [`mesh_engine::update_mesh_object`] (compose, resolve, lifecycle); persist the states, the
//! join-search index of changed attributes, the links and the audit rows, and write a
//! MeshObjectChanged per visible change to the stage outbox. After the commit the changes are
//! published to MESH_OBJECTS (`mesh.object.<type>`) and the batch is acked.
//!
//! Contributions are not stored: they are a pure function of a link's raw attributes, its
//! event and time, and the rules, so they are recomputed when a mesh object is loaded.
//! Ordering: each link keeps the MESH_CHANGES sequence of the change it holds, and a
//! correlated change carrying an older sequence is stale and skipped.

mod handler;

use std::sync::Arc;

use mesh_bus::{Bus, BusError, ConsumerSettings, Topology, run_consumer, topology::consumers};
use mesh_runtime::config::MeshConfig;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_stage::{RulesError, Stage};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use handler::{FlowHandler, ResolvedAgain};

/// The inbox consumer, outbox stage and audit chain of the flow service.
pub const STAGE: &str = consumers::FLOW;

/// Why the flow service stopped.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The rules could not be loaded.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The topology does not declare the flow consumer.
    #[error("the topology has no consumer {STAGE}")]
    MissingConsumer,
    /// The consume loop failed.
    #[error("consume loop failed")]
    Bus(#[from] BusError),
}

/// Runs the flow consumer until `shutdown` (the `meshd run flow` entry point).
pub async fn run(
    config: Arc<MeshConfig>,
    bus: Bus,
    pool: PgPool,
    metrics: MetricsRegistry,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), FlowError> {
    let Some(rules) = mesh_stage::load_and_follow(&config, &pool, &bus, STAGE, &shutdown).await?
    else {
        // Stopped while waiting for the database.
        return Ok(());
    };
    run_with_rules(
        rules,
        &bus,
        pool,
        &metrics,
        &topology,
        &ConsumerSettings::from(&config.bus),
        shutdown,
    )
    .await
}

/// Runs the flow consumer with `rules` until `shutdown`.
pub async fn run_with_rules(
    rules: mesh_stage::RulesHandle,
    bus: &Bus,
    pool: PgPool,
    metrics: &MetricsRegistry,
    topology: &Topology,
    settings: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), FlowError> {
    let spec = topology.consumer(STAGE).ok_or(FlowError::MissingConsumer)?;
    let handler = FlowHandler::new(
        rules.clone(),
        Stage::new(STAGE, pool.clone(), bus.publisher(), metrics),
    );
    // Every mesh object is resolved again under each new rule version, beside the consumer.
    let sweep = mesh_stage::sweep_rule_versions(pool, rules, STAGE, shutdown.clone(), |rules| {
        let handler = &handler;
        async move { handler.sweep(&rules).await }
    });
    // The sweep ends only at shutdown; the consumer's end (or failure) ends the service.
    let sweep = async {
        sweep.await;
        std::future::pending::<()>().await;
    };
    tokio::select! {
        consumed = run_consumer(bus, spec, settings, &handler, shutdown) => consumed?,
        () = sweep => {}
    }
    Ok(())
}
