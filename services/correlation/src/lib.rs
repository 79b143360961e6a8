//! The correlation service: which mesh object each connector object belongs to.
//!
//! Two consumers, one crate:
//! - `correlation` reads change events (MESH_CHANGES) in micro-batches. Per batch, in one
//!   transaction: claim the message ids in the inbox, lock the connector objects the batch
//!   touches, answer every join search of the batch in two queries, run the pure
//!   [`mesh_engine::correlate`] per event in stream order, then write the management space,
//!   the mesh objects anchor rules projected, the audit rows and the correlated changes (to the
//!   stage outbox). After the commit the correlated changes are published to MESH_JOINED and
//!   the batch is acked.
//! - `correlation-rejoin` reads mesh object changes (MESH_OBJECTS) and retries the
//!   disconnectors and ambiguous objects whose join rules target an attribute that changed
//!   (or the anchor of a new mesh object).
//!
//! Ordering (docs/pipeline.md): each connector object remembers the MESH_CHANGES stream
//! sequence of the change applied last, and a change with a lower or equal sequence is stale
//! and skipped; rows are locked, so several workers may share the consumer. Two connectors
//! importing the same person at once derive the same mesh object id from the anchor, and the
//! unique anchor index makes the second insert a no-op.

mod changes;
mod rejoin;

use std::sync::Arc;

use mesh_bus::{Bus, BusError, ConsumerSettings, Topology, run_consumer, topology::consumers};
use mesh_engine::RuleSet;
use mesh_runtime::config::MeshConfig;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_stage::{RulesError, Stage};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use changes::ChangeHandler;
pub use rejoin::RejoinHandler;

/// The inbox consumer, outbox stage and audit chain of change correlation.
pub const STAGE: &str = consumers::CORRELATION;
/// The inbox consumer, outbox stage and audit chain of disconnector retries.
pub const REJOIN_STAGE: &str = consumers::CORRELATION_REJOIN;

/// Why the correlation service stopped.
#[derive(Debug, thiserror::Error)]
pub enum CorrelationError {
    /// The rules could not be loaded.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The topology does not declare a consumer this service needs.
    #[error("the topology has no consumer {0}")]
    MissingConsumer(&'static str),
    /// A consume loop failed.
    #[error("consume loop failed")]
    Bus(#[from] BusError),
}

/// Runs both consumers until `shutdown` (the `meshd run correlation` entry point).
pub async fn run(
    config: Arc<MeshConfig>,
    bus: Bus,
    pool: PgPool,
    metrics: MetricsRegistry,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), CorrelationError> {
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

/// Runs both consumers with `rules` (switched by the caller) until `shutdown`.
pub async fn run_with_rules(
    rules: mesh_stage::RulesHandle,
    bus: &Bus,
    pool: PgPool,
    metrics: &MetricsRegistry,
    topology: &Topology,
    settings: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), CorrelationError> {
    let changes_spec = topology
        .consumer(STAGE)
        .ok_or(CorrelationError::MissingConsumer(STAGE))?;
    let rejoin_spec = topology
        .consumer(REJOIN_STAGE)
        .ok_or(CorrelationError::MissingConsumer(REJOIN_STAGE))?;
    let changes = ChangeHandler::new(
        rules.clone(),
        Stage::new(STAGE, pool.clone(), bus.publisher(), metrics),
    );
    let rejoin = RejoinHandler::new(
        rules.clone(),
        Stage::new(REJOIN_STAGE, pool.clone(), bus.publisher(), metrics),
    );
    // Every waiting object is correlated again under each new rule version.
    let sweep = mesh_stage::sweep_rule_versions(pool, rules, STAGE, shutdown.clone(), |rules| {
        let rejoin = &rejoin;
        async move { rejoin.sweep(&rules).await }
    });
    let (a, b, ()) = tokio::join!(
        run_consumer(bus, changes_spec, settings, &changes, shutdown.clone()),
        run_consumer(bus, rejoin_spec, settings, &rejoin, shutdown),
        sweep,
    );
    a?;
    b?;
    Ok(())
}

/// The subject of a correlated change: `mesh.joined.<connector>`.
pub(crate) fn joined_subject(connector: &mesh_model::ConnectorId) -> String {
    format!("mesh.joined.{connector}")
}

/// The join values an unjoined connector object's rules read, for the re-join index.
pub(crate) fn join_values(
    rules: &RuleSet,
    object: &mesh_model::ConnectorObjectRef,
    attributes: &mesh_model::Attributes,
) -> Vec<mesh_store::pipeline::JoinValue> {
    rules
        .join_rules(&object.connector)
        .iter()
        .filter(|r| r.applies_to(&object.object_type))
        .filter_map(|r| {
            let key = attributes
                .get(&r.source_attribute)
                .and_then(mesh_engine::join_key)?;
            Some(mesh_store::pipeline::JoinValue {
                object: object.clone(),
                source_attribute: r.source_attribute.key().to_owned(),
                key,
            })
        })
        .collect()
}

/// The audit row of a join outcome, when the outcome is worth one (a new state; an
/// `existing` join that stays is not).
pub(crate) fn audit_outcome(
    object: &mesh_model::ConnectorObjectRef,
    before: Option<&mesh_model::JoinState>,
    correlation: &mesh_engine::Correlation,
    event: mesh_model::EventId,
    at: chrono::DateTime<chrono::Utc>,
    retry: bool,
) -> Option<mesh_store::audit::AuditEntry> {
    use mesh_model::{JoinMethod, JoinState};
    use serde_json::json;
    let (kind, mesh_object, rule, detail) = match &correlation.outcome {
        JoinState::Joined {
            method: JoinMethod::Existing,
            ..
        } => return None,
        JoinState::Joined {
            mesh_object,
            rule,
            method,
        } => {
            let kind = if *method == JoinMethod::Projected {
                "projection"
            } else {
                "join"
            };
            let detail = match &correlation.new_mesh_object {
                Some(new) => {
                    json!({"method": method, "anchor": new.anchor, "anchorAttribute": new.anchor_attribute.as_str(), "retry": retry})
                }
                None => json!({"method": method, "retry": retry}),
            };
            (
                kind,
                Some(*mesh_object),
                rule.as_ref().map(ToString::to_string),
                detail,
            )
        }
        JoinState::Disconnector => {
            if matches!(before, Some(JoinState::Disconnector)) {
                return None;
            }
            (
                "disconnector",
                None,
                None,
                json!({"reason": "no join rule matched and no anchor rule applies"}),
            )
        }
        JoinState::Ambiguous { rule, candidates } => {
            if before == Some(&correlation.outcome) {
                return None;
            }
            (
                "ambiguous",
                None,
                Some(rule.to_string()),
                json!({"candidates": candidates}),
            )
        }
        JoinState::Deleted => (
            "delete",
            correlation.previous_mesh_object,
            None,
            json!({"previousMeshObject": correlation.previous_mesh_object}),
        ),
    };
    Some(mesh_store::audit::AuditEntry {
        at,
        kind,
        event_id: Some(event.as_uuid()),
        mesh_object: mesh_object.map(|id| id.as_uuid()),
        connector_object: Some(object.to_string()),
        rule,
        detail,
    })
}
