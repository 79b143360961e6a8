//! The `provisioning` consumer's batch handler.
//!
//! Per batch: decode the export commands; open the batch transaction and claim the message
//! ids in the inbox ([`Stage::begin`]); lock the (target, mesh object) pairs the batch touches;
//! read which idempotency keys are applied and which object each target holds; apply the
//! commands, each object's in stream order and different objects concurrently; record the
//! applied keys and the target objects, append an audit row per command, write an
//! ExportResult per command to the outbox; commit; publish; ack.
//!
//! The target is written before the commit, so a crash in between applies the command again
//! on redelivery; the targets' operations are idempotent for that reason (see
//! [`crate::target`]). Failures are not recorded: a retry (the projection service sends the
//! command again with the next attempt) reaches the target again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt as _;
use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing};
use mesh_model::{ConnectorId, EventId, ExportCommand, ExportResult, ExportStatus, MeshObjectId};
use mesh_stage::{Stage, store_error};
use mesh_store::audit::AuditEntry;
use serde_json::json;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::ExportMetrics;
use crate::store::{self, AppliedRow, NewApplied, ObjectChange};
use crate::target::{Outcome, Request, Targets};

/// Handles batches of export commands.
#[derive(Debug)]
pub struct ProvisioningHandler {
    targets: Arc<Targets>,
    stage: Stage,
    metrics: ExportMetrics,
    /// Objects whose commands are applied at once, per target.
    concurrency: usize,
    /// After this long, the batch's remaining commands are answered retryable without being
    /// tried, so that the batch finishes well within the consumer's ack wait.
    budget: Duration,
}

/// One command's answer.
struct Answer {
    outcome: Outcome,
    /// When the target answered (the result's `completed_at`): a fast target's results do
    /// not take the time of the slowest command in the batch.
    finished: chrono::DateTime<Utc>,
    /// Answered from `provisioning_applied` (or an earlier copy in the batch).
    repeat: bool,
}

/// What applying one group's commands gave: each command's answer by its index in the
/// batch, and what the group learned about the target's object.
type GroupResult = (Vec<(usize, Answer)>, Option<ObjectChange>);

/// The commands of one (target, mesh object), in stream order.
struct Group {
    target: ConnectorId,
    mesh_object: MeshObjectId,
    indices: Vec<usize>,
}

/// The default of [`ProvisioningHandler::with_concurrency`].
pub const DEFAULT_CONCURRENCY: usize = 64;

impl ProvisioningHandler {
    /// A handler applying commands to `targets` as `stage`, giving up on starting new
    /// commands after `budget`.
    pub fn new(
        targets: Arc<Targets>,
        stage: Stage,
        metrics: ExportMetrics,
        budget: Duration,
    ) -> Self {
        Self {
            targets,
            stage,
            metrics,
            concurrency: DEFAULT_CONCURRENCY,
            budget,
        }
    }

    /// Sets how many objects' commands are applied at once per target.
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    async fn apply_group(
        &self,
        group: &Group,
        commands: &[ExportCommand],
        deliveries: &[&Delivery],
        applied: &HashMap<String, AppliedRow>,
        known: Option<String>,
        deadline: Instant,
    ) -> GroupResult {
        let mut known = known;
        let mut change = None;
        // Keys applied earlier in this batch (a command delivered twice in one batch).
        let mut earlier: HashMap<&str, Option<String>> = HashMap::new();
        let mut answers = Vec::with_capacity(group.indices.len());
        for &index in &group.indices {
            let Some(command) = commands.get(index) else {
                continue;
            };
            let key = command.idempotency_key.as_str();
            let recorded = applied
                .get(key)
                .map(|row| row.target_object_id.clone())
                .or_else(|| earlier.get(key).cloned());
            if let Some(target_object_id) = recorded {
                answers.push((
                    index,
                    Answer {
                        outcome: Outcome::AlreadyApplied { target_object_id },
                        finished: Utc::now(),
                        repeat: true,
                    },
                ));
                continue;
            }
            // The target write, in the trace of the command's message.
            let span = tracing::info_span!(
                parent: deliveries.get(index).and_then(|d| d.span().id()),
                "export apply",
                target_connector = %command.target,
                operation = command.operation.as_str(),
                status = tracing::field::Empty,
            );
            let outcome = self
                .apply_one(command, known.as_deref(), deadline)
                .instrument(span.clone())
                .await;
            span.record("status", status_name(outcome.status()));
            if outcome.succeeded() {
                earlier.insert(key, outcome.target_object_id().map(str::to_owned));
                if command.operation == mesh_model::ExportOperation::Delete {
                    known = None;
                    change = Some(ObjectChange::Deleted);
                } else if let Some(id) = outcome.target_object_id() {
                    known = Some(id.to_owned());
                    change = Some(ObjectChange::Holds(id.to_owned()));
                }
            }
            answers.push((
                index,
                Answer {
                    outcome,
                    finished: Utc::now(),
                    repeat: false,
                },
            ));
        }
        (answers, change)
    }

    async fn apply_one(
        &self,
        command: &ExportCommand,
        known: Option<&str>,
        deadline: Instant,
    ) -> Outcome {
        let Some(entry) = self.targets.get(&command.target) else {
            return Outcome::Permanent(format!(
                "no target connector {} (no projection rule of the loaded rules exports to it)",
                command.target
            ));
        };
        if Instant::now() >= deadline {
            return Outcome::Retryable(
                "not attempted: the batch ran out of time before this command's turn".to_owned(),
            );
        }
        let Ok(_permit) = entry.concurrency.acquire().await else {
            return Outcome::Retryable("the target is shutting down".to_owned());
        };
        // The agent's record is fresher than the command's id: the projection service learns
        // a rename only from the result of the command that made it.
        let target_object_id = known.or(command.target_object_id.as_deref());
        let request = Request {
            command,
            target_object_id,
        };
        // A command makes at most three requests (search, write, read back).
        let limit = entry.timeout.saturating_mul(3);
        match tokio::time::timeout(limit, entry.target.apply(request)).await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Retryable(format!("no answer from the target within {limit:?}")),
        }
    }
}

impl BatchHandler for ProvisioningHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let started = Instant::now();
        let mut items = Vec::with_capacity(batch.len());
        for delivery in batch {
            let command: ExportCommand = delivery.decode_event()?;
            items.push((delivery, command));
        }

        let (mut tx, fresh) = self.stage.begin(batch).await?;
        items.retain(|(delivery, _)| fresh.contains(delivery.msg_id().as_ref()));
        if items.is_empty() {
            return self.stage.commit(tx, &[], Vec::new()).await;
        }
        let (deliveries, commands): (Vec<&Delivery>, Vec<ExportCommand>) =
            items.into_iter().unzip();

        let mut groups: Vec<Group> = Vec::new();
        let mut group_of: BTreeMap<(ConnectorId, MeshObjectId), usize> = BTreeMap::new();
        for (index, command) in commands.iter().enumerate() {
            let pair = (command.target.clone(), command.mesh_object);
            let slot = *group_of.entry(pair).or_insert_with(|| {
                groups.push(Group {
                    target: command.target.clone(),
                    mesh_object: command.mesh_object,
                    indices: Vec::new(),
                });
                groups.len() - 1
            });
            if let Some(group) = groups.get_mut(slot) {
                group.indices.push(index);
            }
        }
        let lock_keys: Vec<String> = groups
            .iter()
            .map(|g| format!("{}/{}", g.target, g.mesh_object))
            .collect();
        store::lock_objects(&mut tx, &lock_keys)
            .await
            .map_err(store_error)?;
        let keys: Vec<&str> = commands
            .iter()
            .map(|c| c.idempotency_key.as_str())
            .collect();
        let applied = store::applied(&mut tx, &keys).await.map_err(store_error)?;
        let pairs: Vec<(String, Uuid)> = groups
            .iter()
            .map(|g| (g.target.to_string(), g.mesh_object.as_uuid()))
            .collect();
        let objects = store::objects(&mut tx, &pairs).await.map_err(store_error)?;

        let deadline = started + self.budget;
        // The futures are built first and only then streamed: a closure inside the stream
        // would make the handler's future not provably Send. Each target gets its own stream,
        // so that groups waiting for a slow target's permits never hold the places of another
        // target's groups: every target goes at its own pace within the batch.
        let mut pending: BTreeMap<&ConnectorId, Vec<_>> = BTreeMap::new();
        for group in &groups {
            let known = objects
                .get(&(group.target.to_string(), group.mesh_object.as_uuid()))
                .cloned();
            let applied =
                self.apply_group(group, &commands, &deliveries, &applied, known, deadline);
            pending
                .entry(&group.target)
                .or_default()
                .push(async move { (group, applied.await) });
        }
        let mut per_target = Vec::with_capacity(pending.len());
        for groups in pending.into_values() {
            let concurrency = self.concurrency;
            // A loop rather than `collect`, for the same reason as above.
            per_target.push(async move {
                let mut applying = futures::stream::iter(groups).buffer_unordered(concurrency);
                let mut done = Vec::new();
                while let Some(result) = applying.next().await {
                    done.push(result);
                }
                done
            });
        }
        let results: Vec<(&Group, GroupResult)> = futures::future::join_all(per_target)
            .await
            .into_iter()
            .flatten()
            .collect();

        let mut answers: Vec<Option<Answer>> = commands.iter().map(|_| None).collect();
        let mut changes = Vec::new();
        for (group, (group_answers, change)) in results {
            for (index, answer) in group_answers {
                if let Some(slot) = answers.get_mut(index) {
                    *slot = Some(answer);
                }
            }
            if let Some(change) = change {
                changes.push((
                    (group.target.to_string(), group.mesh_object.as_uuid()),
                    change,
                ));
            }
        }

        let mut records = Vec::new();
        let mut entries = Vec::with_capacity(commands.len());
        let mut outgoing = Vec::with_capacity(commands.len());
        let targets: Vec<String> = commands.iter().map(|c| c.target.to_string()).collect();
        for (index, ((command, delivery), answer)) in
            commands.iter().zip(&deliveries).zip(answers).enumerate()
        {
            let Some(Answer {
                outcome,
                finished: completed_at,
                repeat,
            }) = answer
            else {
                return Err(HandlerError::failed(format!(
                    "export command {} got no answer",
                    command.idempotency_key
                )));
            };
            let status = outcome.status();
            self.metrics
                .count(&command.target, command.operation, status);
            let attempt = command.attempt.max(1);
            let target_object_id = outcome.target_object_id().map(str::to_owned);
            log_outcome(command, &outcome, repeat);
            if outcome.succeeded() && !repeat {
                records.push(NewApplied {
                    key: command.idempotency_key.as_str(),
                    target: targets.get(index).map_or("", String::as_str),
                    mesh_object: command.mesh_object.as_uuid(),
                    operation: command.operation.as_str(),
                    version: i64::try_from(command.mesh_object_version).unwrap_or(i64::MAX),
                    status: status_name(status),
                    target_object_id: target_object_id.clone(),
                    attempt: i32::try_from(attempt).unwrap_or(i32::MAX),
                });
            }
            entries.push(AuditEntry {
                at: completed_at,
                kind: "export",
                event_id: Some(command.cause.as_uuid()),
                mesh_object: Some(command.mesh_object.as_uuid()),
                connector_object: target_object_id
                    .as_ref()
                    .map(|id| format!("{}/{}/{id}", command.target, command.object_type)),
                rule: Some(command.rule.to_string()),
                detail: json!({
                    "idempotencyKey": command.idempotency_key.as_str(),
                    "target": command.target.as_str(),
                    "operation": command.operation.as_str(),
                    "version": command.mesh_object_version,
                    "attempt": attempt,
                    "status": status_name(status),
                    "repeat": repeat,
                    "targetObjectId": target_object_id,
                    "message": outcome.message(),
                }),
            });
            let result = ExportResult {
                idempotency_key: command.idempotency_key.clone(),
                target: command.target.clone(),
                operation: command.operation,
                mesh_object: command.mesh_object,
                mesh_object_version: command.mesh_object_version,
                status,
                target_object_id,
                message: outcome.message().to_owned(),
                attempt,
                completed_at,
            };
            let subject = format!("mesh.result.{}", command.target);
            let msg_id = result_msg_id(command.idempotency_key.as_str(), attempt);
            outgoing.push(
                delivery
                    .span()
                    .in_scope(|| Outgoing::event(subject, msg_id, result)),
            );
        }
        store::record_applied(&mut tx, &records)
            .await
            .map_err(store_error)?;
        store::save_objects(&mut tx, &changes)
            .await
            .map_err(store_error)?;
        self.stage.commit(tx, &entries, outgoing).await
    }
}

/// The `Nats-Msg-Id` of a command's result: one per idempotency key and attempt, so that a
/// redelivered (or duplicated) command republishes the id JetStream already has.
pub fn result_msg_id(idempotency_key: &str, attempt: u32) -> String {
    let name = format!("{idempotency_key}\n{}", attempt.max(1));
    EventId::derive("provisioning", name.as_bytes()).to_string()
}

/// The status as the metric label and the stored column spell it.
pub fn status_name(status: ExportStatus) -> &'static str {
    match status {
        ExportStatus::Applied => "applied",
        ExportStatus::AlreadyApplied => "already_applied",
        ExportStatus::RetryableFailure => "retryable_failure",
        ExportStatus::PermanentFailure => "permanent_failure",
    }
}

fn log_outcome(command: &ExportCommand, outcome: &Outcome, repeat: bool) {
    let key = command.idempotency_key.as_str();
    let target = command.target.as_str();
    let operation = command.operation.as_str();
    match outcome {
        Outcome::Applied { target_object_id } | Outcome::AlreadyApplied { target_object_id } => {
            tracing::debug!(
                target_connector = target,
                operation,
                key,
                repeat,
                status = status_name(outcome.status()),
                target_object = target_object_id.as_deref().unwrap_or(""),
                "export applied"
            );
        }
        Outcome::Retryable(message) => tracing::warn!(
            target_connector = target,
            operation,
            key,
            attempt = command.attempt,
            error = %message,
            "export failed; the projection service retries it"
        ),
        Outcome::Permanent(message) => tracing::error!(
            target_connector = target,
            operation,
            key,
            attempt = command.attempt,
            error = %message,
            "export failed permanently"
        ),
    }
}
