//! The provisioning agent: export commands -> SCIM 2.0, PostgreSQL and LDAP targets -> export
//! results.
//!
//! The `provisioning` consumer reads MESH_EXPORTS (`mesh.export.<target connector>`) in
//! micro-batches and applies each ExportCommand to the target its connector names (a
//! [`target::Target`] built from the connector's settings in the rules), then publishes an
//! ExportResult on MESH_RESULTS (`mesh.result.<target connector>`) for the projection service.
//! [`handler`] describes the batch; docs/provisioning.md the targets, their settings and the
//! operation semantics.
//!
//! Exactly one effect per command: the inbox drops a redelivered message; the
//! `provisioning_applied` table answers a command whose idempotency key was applied before
//! (delivered again under another message id) with ALREADY_APPLIED without touching the
//! target; and because the target is written before the commit, every target operation is
//! idempotent by itself for the crash in between. Retryable failures are answered, not retried
//! here: the projection service sends the command again with the next attempt after a backoff.
//! A result's `Nats-Msg-Id` derives from the idempotency key and the attempt.
//!
//! Ordering: the commands of one (target, mesh object) are applied in stream order, and
//! batches that touch the same pair (several agents share the consumer) are serialized by a
//! transaction-scoped advisory lock; different objects are applied concurrently.

pub mod handler;
pub mod metrics;
pub mod settings;
pub mod store;
pub mod target;

use std::sync::Arc;

use mesh_bus::{Bus, BusError, ConsumerSettings, Topology, run_consumer, topology::consumers};
use mesh_engine::RuleSet;
use mesh_runtime::config::MeshConfig;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_stage::{RulesError, Stage};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use handler::ProvisioningHandler;
pub use target::{Outcome, Request, Target, Targets};

/// The inbox consumer, outbox stage and audit chain of the provisioning agent.
pub const STAGE: &str = consumers::PROVISIONING;

/// Why the provisioning agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProvisioningError {
    /// The rules could not be loaded.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A target connector's settings are invalid.
    #[error("invalid target settings")]
    Settings(#[from] settings::SettingsError),
    /// The topology does not declare the provisioning consumer.
    #[error("the topology has no consumer {STAGE}")]
    MissingConsumer,
    /// The consume loop failed.
    #[error("consume loop failed")]
    Bus(#[from] BusError),
}

/// Runs the provisioning consumer until `shutdown` (the `meshd run provisioning-agent` entry
/// point): loads the rules, builds a target per exported connector, consumes.
pub async fn run(
    config: Arc<MeshConfig>,
    bus: Bus,
    pool: PgPool,
    metrics: MetricsRegistry,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), ProvisioningError> {
    // Targets are built once: a change of a target's connection settings needs a restart.
    let Some(rules) = mesh_stage::load_versioned_rules(&config, &pool, STAGE, &shutdown).await?
    else {
        // Stopped while waiting for the database.
        return Ok(());
    };
    let targets = Arc::new(Targets::from_rules(&rules)?);
    tracing::info!(
        targets = %targets.connectors().map(ToString::to_string).collect::<Vec<_>>().join(","),
        "provisioning targets built"
    );
    run_with_targets(
        targets,
        &bus,
        pool,
        &metrics,
        &topology,
        &ConsumerSettings::from(&config.bus),
        shutdown,
    )
    .await
}

/// Runs the provisioning consumer with the targets of `rules` until `shutdown`.
pub async fn run_with_rules(
    rules: &RuleSet,
    bus: &Bus,
    pool: PgPool,
    metrics: &MetricsRegistry,
    topology: &Topology,
    settings: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), ProvisioningError> {
    let targets = Arc::new(Targets::from_rules(rules)?);
    run_with_targets(targets, bus, pool, metrics, topology, settings, shutdown).await
}

/// Runs the provisioning consumer with `targets` until `shutdown`.
pub async fn run_with_targets(
    targets: Arc<Targets>,
    bus: &Bus,
    pool: PgPool,
    metrics: &MetricsRegistry,
    topology: &Topology,
    settings: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), ProvisioningError> {
    let spec = topology
        .consumer(STAGE)
        .ok_or(ProvisioningError::MissingConsumer)?;
    // Half the ack wait for the targets leaves the other half for the commit and the acks.
    let budget = spec.ack_wait / 2;
    let handler = ProvisioningHandler::new(
        targets,
        Stage::new(STAGE, pool, bus.publisher(), metrics),
        metrics::ExportMetrics::new(metrics),
        budget,
    );
    run_consumer(bus, spec, settings, &handler, shutdown).await?;
    Ok(())
}
