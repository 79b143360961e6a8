//! The `projection-results` consumer: export results -> confirmed, retried or failed exports.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing};
use mesh_model::{DeadLetter, ExportResult, ExportStatus, MeshObjectId};
use mesh_proto::WireEvent;
use mesh_stage::{Stage, store_error};
use mesh_store::audit::AuditEntry;
use mesh_store::projection::{self, ExportRow, ExportState, ExportUpdate};
use serde_json::json;
use tokio::sync::Notify;

use crate::{ProjectionMetrics, ProjectionSettings};

/// Handles batches of export results.
#[derive(Debug)]
pub struct ResultsHandler {
    settings: Arc<ProjectionSettings>,
    stage: Stage,
    metrics: ProjectionMetrics,
    wake: Arc<Notify>,
}

impl ResultsHandler {
    /// A handler recording results as `stage`; it wakes the dispatcher after each commit.
    pub fn new(
        settings: Arc<ProjectionSettings>,
        stage: Stage,
        metrics: ProjectionMetrics,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            settings,
            stage,
            metrics,
            wake,
        }
    }
}

/// The stored name of a result status.
fn status_name(status: ExportStatus) -> &'static str {
    match status {
        ExportStatus::Applied => "applied",
        ExportStatus::AlreadyApplied => "already-applied",
        ExportStatus::RetryableFailure => "retryable-failure",
        ExportStatus::PermanentFailure => "permanent-failure",
    }
}

impl BatchHandler for ResultsHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let mut results = Vec::with_capacity(batch.len());
        for delivery in batch {
            let result: ExportResult = delivery.decode_event()?;
            results.push((delivery, result));
        }
        let (mut tx, fresh) = self.stage.begin(batch).await?;
        results.retain(|(delivery, _)| fresh.contains(delivery.msg_id().as_ref()));
        let keys: Vec<String> = results
            .iter()
            .map(|(_, r)| r.idempotency_key.to_string())
            .collect();
        let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut rows = projection::lock_by_keys(&mut tx, &key_refs)
            .await
            .map_err(store_error)?;

        let now = Utc::now();
        let mut updates: BTreeMap<i64, ExportUpdate> = BTreeMap::new();
        let mut learned: Vec<(MeshObjectId, String, String)> = Vec::new();
        let mut entries = Vec::new();
        let mut outgoing = Vec::new();
        for ((_, result), key) in results.iter().zip(&keys) {
            let Some(row) = rows.get_mut(key) else {
                tracing::warn!(key = %key, "result for an export this mesh never issued; ignored");
                self.metrics.result(result.target.as_str(), "stale");
                continue;
            };
            // Only the answer to the send in flight counts: a repeated or late answer to an
            // earlier attempt is stale.
            if row.state != ExportState::Sent || result.attempt != row.attempts {
                self.metrics.result(result.target.as_str(), "stale");
                continue;
            }
            let status = status_name(result.status);
            let (state, next, outcome) = match result.status {
                ExportStatus::Applied | ExportStatus::AlreadyApplied => {
                    (ExportState::Confirmed, None, "confirmed")
                }
                ExportStatus::RetryableFailure if row.attempts < self.settings.max_attempts => {
                    let wait = self.settings.backoff(row.attempts);
                    let next =
                        now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
                    (ExportState::Queued, Some(next), "retry")
                }
                ExportStatus::RetryableFailure | ExportStatus::PermanentFailure => {
                    (ExportState::Failed, None, "failed")
                }
            };
            self.metrics.result(result.target.as_str(), outcome);
            row.state = state;
            if let Some(object_id) = &result.target_object_id
                && state == ExportState::Confirmed
            {
                learned.push((row.mesh_object, row.target.clone(), object_id.clone()));
            }
            if state == ExportState::Failed {
                tracing::warn!(
                    key = %key,
                    attempts = row.attempts,
                    message = %result.message,
                    "export failed for good; dead-lettered"
                );
                entries.push(AuditEntry {
                    at: result.completed_at,
                    kind: "export-failed",
                    event_id: None,
                    mesh_object: Some(row.mesh_object.as_uuid()),
                    connector_object: None,
                    rule: Some(row.rule.clone()),
                    detail: json!({
                        "target": row.target,
                        "operation": row.operation,
                        "key": key,
                        "attempts": row.attempts,
                        "status": status,
                        "message": result.message,
                    }),
                });
                outgoing.push(dead_letter(row, result));
            }
            updates.insert(
                row.seq,
                ExportUpdate {
                    seq: row.seq,
                    state,
                    result: status,
                    message: result.message.clone(),
                    target_object_id: result.target_object_id.clone(),
                    next_attempt_at: next,
                },
            );
        }
        let list: Vec<ExportUpdate> = updates.into_values().collect();
        projection::update_exports(&mut tx, &list)
            .await
            .map_err(store_error)?;
        let learned: Vec<(MeshObjectId, &str, &str)> = learned
            .iter()
            .map(|(id, t, o)| (*id, t.as_str(), o.as_str()))
            .collect();
        projection::learn_target_object_ids(&mut tx, &learned)
            .await
            .map_err(store_error)?;
        self.stage.commit(tx, &entries, outgoing).await?;
        if !list.is_empty() {
            self.wake.notify_one();
        }
        Ok(())
    }
}

/// The failed command, as a dead letter of the projection stage.
fn dead_letter(row: &ExportRow, result: &ExportResult) -> Outgoing {
    let letter = DeadLetter {
        stage: crate::STAGE.to_owned(),
        subject: format!("mesh.export.{}", row.target),
        stream: mesh_bus::topology::streams::EXPORTS.to_owned(),
        stream_sequence: 0,
        schema: Some(<mesh_model::ExportCommand as WireEvent>::SCHEMA.to_owned()),
        headers: BTreeMap::new(),
        payload: row.command.clone(),
        reason: format!(
            "{} after {} attempt(s): {}",
            status_name(result.status),
            row.attempts,
            result.message
        ),
        attempts: row.attempts,
        failed_at: result.completed_at,
    };
    Outgoing::event(
        format!("mesh.dlq.{}", crate::STAGE),
        format!("dlq:{}:export:{}", crate::STAGE, row.idempotency_key),
        letter,
    )
}
