//! Export status: what each target holds for a mesh object and the commands still open, and
//! the list of export commands (the projection tables, migrations 0004 and 0005).
//!
//! A command's stored state maps to its phase: `queued` and `sent` are PENDING, `confirmed`
//! is CONFIRMED, `failed` (failed for good and dead-lettered) is FAILED, `held` (a
//! deprovision the mass-deletion guard holds) is HELD.

use std::collections::{BTreeMap, BTreeSet};

use mesh_model::{ConnectorId, MeshObjectId};
use mesh_proto::v1;
use mesh_store::projection::{self, ExportFilter, ExportRow, ExportState};
use mesh_store::query as stored;
use prost::Message as _;
use tonic::Status;

use super::{done, filter, snapshot};
use crate::{Query, page, status};

/// The most outstanding commands shown per target: a target that keeps failing for good
/// collects failed commands, and the newest are the ones worth reading.
const OUTSTANDING_LIMIT: i64 = 1000;

/// `GetExportStatus`: one entry per target that holds or held the mesh object (a row in
/// `projection_targets`, or any export command), in target order.
///
/// `in_scope` is what projection last decided: the object is in scope exactly when the target
/// holds it provisioned (out of scope it is disabled or gone). `rule` is the projection rule
/// of the newest command, and `container` that rule's container in the rule set in force.
pub async fn get_export_status(
    query: &Query,
    request: v1::GetExportStatusRequest,
) -> Result<v1::GetExportStatusResponse, Status> {
    let id = MeshObjectId::from_uuid(status::uuid(&request.mesh_object_id, "mesh_object_id")?);
    let target = target_filter(&request.target_connector)?;
    let rules = query.rules.current();
    let mut tx = snapshot(&query.pool).await?;
    let exists = stored::mesh_objects(&mut tx, &BTreeSet::from([id]))
        .await
        .map_err(|e| status::store(&e))?;
    let mut holds = projection::targets(&mut tx, &BTreeSet::from([id]))
        .await
        .map_err(|e| status::store(&e))?
        .remove(&id)
        .unwrap_or_default();
    let summaries = stored::export_summaries(&mut tx, id, target.as_ref().map(ConnectorId::as_str))
        .await
        .map_err(|e| status::store(&e))?;
    done(tx).await?;
    if exists.is_empty() && holds.is_empty() && summaries.is_empty() {
        return Err(Status::not_found(format!(
            "mesh object {id} does not exist and no target ever held it"
        )));
    }
    if let Some(target) = &target {
        holds.retain(|t, _| t == target);
    }
    let mut targets: BTreeMap<String, v1::ExportTarget> = BTreeMap::new();
    for (name, state) in holds {
        targets.insert(name.to_string(), held_pb(&name, state));
    }
    for summary in summaries {
        let entry = targets
            .entry(summary.target.clone())
            .or_insert_with(|| v1::ExportTarget {
                target_connector: summary.target.clone(),
                ..Default::default()
            });
        entry.container = container(&rules, &summary.rule);
        entry.rule = summary.rule;
        entry.confirmed_version = summary.confirmed_version.unwrap_or(0);
    }
    let outstanding = projection::list(
        &query.pool,
        &ExportFilter {
            target: target.map(String::from),
            states: vec![
                ExportState::Queued,
                ExportState::Held,
                ExportState::Sent,
                ExportState::Failed,
            ],
            mesh_object: Some(id),
            limit: OUTSTANDING_LIMIT,
        },
    )
    .await
    .map_err(|e| status::store(&e))?;
    // Newest first from the store; oldest first on the wire.
    for row in outstanding.iter().rev() {
        if let Some(entry) = targets.get_mut(&row.target) {
            entry.outstanding.push(record(row));
        }
    }
    Ok(v1::GetExportStatusResponse {
        targets: targets.into_values().collect(),
    })
}

fn target_filter(text: &str) -> Result<Option<ConnectorId>, Status> {
    filter(text)
        .map(|t| {
            ConnectorId::parse(t)
                .map_err(|e| Status::invalid_argument(format!("target_connector: {e}")))
        })
        .transpose()
}

/// What a target holds, on the wire (rule, container and versions are filled in after).
fn held_pb(target: &ConnectorId, state: mesh_engine::TargetState) -> v1::ExportTarget {
    use mesh_engine::TargetState;
    let (in_scope, attributes, target_object_id, delete_after) = match state {
        TargetState::Provisioned {
            attributes,
            target_object_id,
        } => (true, attributes, target_object_id, None),
        TargetState::Disabled {
            attributes,
            target_object_id,
            delete_after,
        } => (false, attributes, target_object_id, delete_after),
    };
    v1::ExportTarget {
        target_connector: target.to_string(),
        in_scope,
        target_object_id,
        exported_attributes: mesh_proto::attributes_to_pb(attributes)
            .into_iter()
            .collect(),
        delete_due_at: delete_after.map(status::timestamp),
        ..Default::default()
    }
}

/// The container of projection rule `rule` in the rule set in force; empty when the rule is
/// gone.
fn container(rules: &mesh_engine::RuleSet, rule: &str) -> String {
    rules
        .projection_rules()
        .iter()
        .find(|r| r.name.as_str() == rule)
        .map(|r| r.container.clone())
        .unwrap_or_default()
}

/// `ListExports`: export commands newest first, by phase and target.
pub async fn list_exports(
    query: &Query,
    request: v1::ListExportsRequest,
) -> Result<v1::ListExportsResponse, Status> {
    let states = match v1::ExportPhase::try_from(request.phase) {
        Ok(v1::ExportPhase::Unspecified) => Vec::new(),
        Ok(v1::ExportPhase::Pending) => vec![ExportState::Queued, ExportState::Sent],
        Ok(v1::ExportPhase::Confirmed) => vec![ExportState::Confirmed],
        Ok(v1::ExportPhase::Failed) => vec![ExportState::Failed],
        Ok(v1::ExportPhase::Held) => vec![ExportState::Held],
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "phase {} is not an ExportPhase",
                request.phase
            )));
        }
    };
    let target = target_filter(&request.target_connector)?;
    let before = page::parse(&request.page_token, "exports", 1)?
        .map(|key| page::number::<i64>(key[0]))
        .transpose()?;
    let size = query.page_size(request.page_size);
    let rows = projection::list_page(
        &query.pool,
        &ExportFilter {
            target: target.map(String::from),
            states,
            mesh_object: None,
            limit: page::fetch_limit(size),
        },
        before,
    )
    .await
    .map_err(|e| status::store(&e))?;
    let (rows, next_page_token) = page::finish(rows, size, "exports", |row| row.seq.to_string());
    Ok(v1::ListExportsResponse {
        exports: rows.iter().map(record).collect(),
        next_page_token,
    })
}

fn phase(state: ExportState) -> v1::ExportPhase {
    match state {
        ExportState::Queued | ExportState::Sent => v1::ExportPhase::Pending,
        ExportState::Confirmed => v1::ExportPhase::Confirmed,
        ExportState::Failed => v1::ExportPhase::Failed,
        ExportState::Held => v1::ExportPhase::Held,
    }
}

fn result_status(result: &str) -> v1::ExportStatus {
    match result {
        "applied" => v1::ExportStatus::Applied,
        "already-applied" => v1::ExportStatus::AlreadyApplied,
        "retryable-failure" => v1::ExportStatus::RetryableFailure,
        "permanent-failure" => v1::ExportStatus::PermanentFailure,
        _ => v1::ExportStatus::Unspecified,
    }
}

/// One export command on the wire.
///
/// `completed_at` is when the row last changed, for a command a result has reached and that
/// has not been sent again since (confirmed, failed, or queued for a retry); `next_attempt_at`
/// is set for a queued command a retryable failure sent back.
fn record(row: &ExportRow) -> v1::ExportRecord {
    let mut command = v1::ExportCommand::decode(row.command.as_slice()).unwrap_or_else(|error| {
        tracing::warn!(seq = row.seq, %error, "a stored export command does not decode");
        v1::ExportCommand::default()
    });
    // The row's columns are the record of what was issued; the encoded command adds the
    // attributes and the container.
    command.idempotency_key.clone_from(&row.idempotency_key);
    command.target_connector.clone_from(&row.target);
    command.mesh_object = row.mesh_object.to_string();
    command.mesh_object_version = row.mesh_object_version;
    command.rule.clone_from(&row.rule);
    command.issued_at = Some(status::timestamp(row.issued_at));
    if let Some(operation) = v1::ExportOperation::from_str_name(&format!(
        "EXPORT_OPERATION_{}",
        row.operation.to_uppercase()
    )) {
        command.operation = operation.into();
    }
    let command = Some(command);
    let answered = row.result.is_some();
    let retry_due = answered && row.state == ExportState::Queued;
    let completed = answered
        && matches!(
            row.state,
            ExportState::Confirmed | ExportState::Failed | ExportState::Queued
        );
    v1::ExportRecord {
        command,
        phase: phase(row.state).into(),
        last_status: row
            .result
            .as_deref()
            .map_or(v1::ExportStatus::Unspecified, result_status)
            .into(),
        last_message: row.message.clone().unwrap_or_default(),
        attempts: row.attempts,
        completed_at: completed.then(|| status::timestamp(row.updated_at)),
        next_attempt_at: retry_due.then(|| status::timestamp(row.next_attempt_at)),
    }
}
