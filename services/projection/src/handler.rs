//! The `projection` consumer's batch handler, and the projection step it shares with the grace
//! timer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing};
use mesh_engine::{ProjectInput, RuleSet, Trace, project};
use mesh_model::{ConnectorId, EventId, MeshObjectChanged, MeshObjectId};
use mesh_stage::{RulesHandle, Stage, store_error};
use mesh_store::audit::AuditEntry;
use mesh_store::projection::{self, ExportState, NewExport, is_deprovision};
use serde_json::json;
use sqlx::PgConnection;
use tokio::sync::Notify;

use crate::dispatch::export_message;
use crate::{ProjectionMetrics, ProjectionSettings};

/// Handles batches of mesh object changes.
#[derive(Debug)]
pub struct ProjectionHandler {
    rules: RulesHandle,
    settings: Arc<ProjectionSettings>,
    stage: Stage,
    metrics: ProjectionMetrics,
    wake: Arc<Notify>,
}

/// What projecting a set of mesh objects gave, to commit with the transaction.
#[derive(Debug)]
pub(crate) struct Projected {
    /// The audit entries to append.
    pub entries: Vec<AuditEntry>,
    /// The commands sent by the batch itself (attempt 1, recorded `sent`): their mesh object
    /// and target had nothing open, so no command waits before them. They go to the stage
    /// outbox and out after the commit.
    pub sends: Vec<Outgoing>,
    /// Whether a command was recorded queued: the dispatcher has work.
    pub queued: bool,
}

/// Why a mesh object is projected.
#[derive(Debug, Clone)]
pub(crate) struct Reason {
    /// The event the commands name as their cause.
    pub cause: EventId,
    /// The projection's clock: the change's time, or the wall clock for the grace timer.
    pub now: DateTime<Utc>,
    /// Project even when the version was projected before (the grace timer).
    pub again: bool,
    /// The W3C traceparent of the change's `mesh.consume` span, stored with the export
    /// commands so that sending them continues the change's trace.
    pub traceparent: Option<String>,
}

impl ProjectionHandler {
    /// A handler applying `rules` as `stage`; it wakes the dispatcher after each commit.
    pub fn new(
        rules: RulesHandle,
        settings: Arc<ProjectionSettings>,
        stage: Stage,
        metrics: ProjectionMetrics,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            rules,
            settings,
            stage,
            metrics,
            wake,
        }
    }

    pub(crate) fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The rule set in force.
    pub(crate) fn rules(&self) -> std::sync::Arc<RuleSet> {
        self.rules.current()
    }

    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }

    /// Projects mesh objects inside `conn`'s transaction: records the commands and what the
    /// targets will hold; returns the audit entries and the commands to send after the commit.
    ///
    /// A command whose (mesh object, target) has nothing open (queued, held or sent) is the
    /// head of its line: it is recorded `sent` with its first attempt and published from the
    /// stage outbox once the transaction commits, without waiting for the dispatcher's own
    /// transaction. The mesh objects' projection rows are locked, so no other projection of
    /// them can open a command meanwhile, and the dispatcher, the results consumer and
    /// `meshctl exports approve` only touch pairs that have one open (re-queuing failed
    /// commands by hand takes the same row locks, docs/operations.md). Every other command is
    /// queued (or held by the guard) for the dispatcher.
    pub(crate) async fn project_objects(
        &self,
        conn: &mut PgConnection,
        rules: &RuleSet,
        objects: &BTreeMap<MeshObjectId, Reason>,
    ) -> Result<Projected, HandlerError> {
        let ids: BTreeSet<MeshObjectId> = objects.keys().copied().collect();
        let projected = projection::lock_objects(conn, &ids)
            .await
            .map_err(store_error)?;
        let subjects = projection::subjects(conn, &ids)
            .await
            .map_err(store_error)?;
        let mut targets = projection::targets(conn, &ids).await.map_err(store_error)?;

        let mut entries = Vec::new();
        let mut exports = Vec::new();
        let mut traceparents = Vec::new();
        let mut target_changes = Vec::new();
        let mut versions = Vec::new();
        for (id, reason) in objects {
            let Some(subject) = subjects.get(id) else {
                // Flow commits a mesh object before it publishes its change.
                return Err(HandlerError::failed(format!(
                    "mesh object {id} is not in the store"
                )));
            };
            let last = projected.get(id).copied().flatten();
            if !reason.again && last.is_some_and(|v| v >= subject.version) {
                self.stage.metrics().outcome("already-projected");
                continue;
            }
            let held = targets.remove(id).unwrap_or_default();
            let outcome = project(
                rules,
                &ProjectInput {
                    mesh_object: *id,
                    object_type: &subject.object_type,
                    version: subject.version,
                    lifecycle: subject.lifecycle,
                    attributes: &subject.attributes,
                    targets: &held,
                    cause: reason.cause,
                },
                reason.now,
                Trace::disabled(),
            );
            versions.push((*id, subject.version));
            for error in outcome.transform_errors {
                self.stage.metrics().transform_error(&error.rule);
                entries.push(AuditEntry {
                    at: reason.now,
                    kind: "transform-error",
                    event_id: Some(error.event.as_uuid()),
                    mesh_object: Some(id.as_uuid()),
                    connector_object: None,
                    rule: Some(error.rule.clone()),
                    detail: json!({
                        "subject": error.subject,
                        "attribute": error.attribute.as_ref().map(|a| a.as_str()),
                        "code": error.code,
                        "message": error.message,
                    }),
                });
            }
            self.stage
                .metrics()
                .outcome(if outcome.commands.is_empty() {
                    "unchanged"
                } else {
                    "exported"
                });
            for command in outcome.commands {
                exports.push(command);
                traceparents.push(reason.traceparent.clone());
            }
            for (target, state) in outcome.targets {
                target_changes.push((*id, target, state));
            }
        }

        let mut states = self.admit(conn, &exports, &mut entries).await?;
        if !exports.is_empty() {
            let mut open = projection::open_pairs(conn, &ids)
                .await
                .map_err(store_error)?;
            for (command, state) in exports.iter().zip(states.iter_mut()) {
                // The first command of a pair with nothing open goes now, unless held; any
                // later one waits behind it.
                let first = open.insert((command.mesh_object, command.target.to_string()));
                if first && *state == ExportState::Queued {
                    *state = ExportState::Sent;
                }
            }
        }
        let encoded: Vec<Vec<u8>> = exports
            .iter()
            .map(|c| mesh_proto::WireEvent::into_wire(c.clone()))
            .collect();
        let keys: Vec<String> = exports
            .iter()
            .map(|c| c.idempotency_key.to_string())
            .collect();
        let rows: Vec<NewExport<'_>> = exports
            .iter()
            .zip(&states)
            .zip(encoded)
            .zip(&keys)
            .zip(traceparents)
            .map(
                |((((command, state), bytes), key), traceparent)| NewExport {
                    idempotency_key: key,
                    mesh_object: command.mesh_object,
                    target: command.target.as_str(),
                    operation: command.operation,
                    mesh_object_version: command.mesh_object_version,
                    rule: command.rule.as_str(),
                    command: bytes,
                    state: *state,
                    issued_at: command.issued_at,
                    traceparent,
                },
            )
            .collect();
        for (command, state) in exports.iter().zip(&states) {
            self.metrics.issued(
                command.target.as_str(),
                command.operation.as_str(),
                state.as_str(),
            );
            entries.push(AuditEntry {
                at: command.issued_at,
                kind: "export",
                event_id: Some(command.cause.as_uuid()),
                mesh_object: Some(command.mesh_object.as_uuid()),
                connector_object: None,
                rule: Some(command.rule.to_string()),
                detail: json!({
                    "target": command.target.as_str(),
                    "operation": command.operation.as_str(),
                    "key": command.idempotency_key.to_string(),
                    "version": command.mesh_object_version,
                    "state": state.as_str(),
                }),
            });
        }
        let recorded = projection::insert_exports(conn, &rows)
            .await
            .map_err(store_error)?;
        let mut sends = Vec::new();
        let mut queued = false;
        for ((command, state), row) in exports.iter().zip(&states).zip(&rows) {
            match state {
                // A key recorded before keeps its own row and state; only a new one is sent.
                ExportState::Sent if recorded.contains(row.idempotency_key) => {
                    let mut command = command.clone();
                    command.attempt = 1;
                    sends.push(export_message(command, row.traceparent.as_deref()));
                }
                ExportState::Queued => queued = true,
                _ => {}
            }
        }
        let changes: Vec<_> = target_changes
            .iter()
            .map(|(id, target, state)| (*id, target, state.as_ref()))
            .collect();
        projection::save_targets(conn, &changes)
            .await
            .map_err(store_error)?;
        projection::set_projected(conn, &versions)
            .await
            .map_err(store_error)?;
        mesh_stage::stamp_rule_version(&mut entries, rules.version());
        Ok(Projected {
            entries,
            sends,
            queued,
        })
    }

    /// Passes deprovisions through their target's mass-deletion guard: returns each command's
    /// initial state (queued, or held while the guard holds).
    async fn admit(
        &self,
        conn: &mut PgConnection,
        commands: &[mesh_model::ExportCommand],
        entries: &mut Vec<AuditEntry>,
    ) -> Result<Vec<ExportState>, HandlerError> {
        // Per target: is it holding, and how many deprovisions count so far.
        let mut guards: HashMap<&ConnectorId, (bool, i64)> = HashMap::new();
        let mut states = Vec::with_capacity(commands.len());
        for command in commands {
            if !is_deprovision(command.operation) {
                states.push(ExportState::Queued);
                continue;
            }
            let guard = self.settings.guard(&command.target);
            let (held, count) = match guards.get_mut(&command.target) {
                Some(state) => state,
                None => {
                    let state = projection::guard(conn, command.target.as_str(), guard.window)
                        .await
                        .map_err(store_error)?;
                    guards.entry(&command.target).or_insert(state)
                }
            };
            if !*held && *count >= i64::from(guard.threshold) {
                *held = true;
                projection::hold(conn, command.target.as_str())
                    .await
                    .map_err(store_error)?;
                tracing::warn!(
                    target_connector = %command.target,
                    threshold = guard.threshold,
                    window_secs = guard.window.as_secs(),
                    "mass-deletion guard holds the target's deprovisions until `meshctl exports approve`"
                );
                entries.push(AuditEntry {
                    at: command.issued_at,
                    kind: "guard-held",
                    event_id: Some(command.cause.as_uuid()),
                    mesh_object: None,
                    connector_object: None,
                    rule: Some(command.rule.to_string()),
                    detail: json!({
                        "target": command.target.as_str(),
                        "threshold": guard.threshold,
                        "windowSeconds": guard.window.as_secs(),
                    }),
                });
            }
            if *held {
                self.metrics
                    .guard_held
                    .get_or_create(&crate::TargetLabels {
                        target_connector: command.target.to_string(),
                    })
                    .inc();
                states.push(ExportState::Held);
            } else {
                *count += 1;
                states.push(ExportState::Queued);
            }
        }
        Ok(states)
    }
}

impl BatchHandler for ProjectionHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let mut changes = Vec::with_capacity(batch.len());
        for delivery in batch {
            let change: MeshObjectChanged = delivery.decode_event()?;
            changes.push((delivery, change));
        }
        let (mut tx, fresh) = self.stage.begin(batch).await?;
        // The latest change of each mesh object names the cause and the clock; projection
        // reads the object's current state, so earlier changes in the batch are covered.
        let mut objects: BTreeMap<MeshObjectId, Reason> = BTreeMap::new();
        for (delivery, change) in &changes {
            if !fresh.contains(delivery.msg_id().as_ref()) {
                continue;
            }
            objects.insert(
                change.mesh_object,
                Reason {
                    cause: change.event_id,
                    now: change.occurred_at,
                    again: false,
                    traceparent: mesh_runtime::telemetry::traceparent(delivery.span()),
                },
            );
        }
        let projected = self
            .project_objects(&mut tx, &self.rules.current(), &objects)
            .await?;
        self.stage
            .commit(tx, &projected.entries, projected.sends)
            .await?;
        if projected.queued {
            self.wake();
        }
        Ok(())
    }
}
