//! MeshQuery's operator changes: each runs in one transaction with its audit entry (chain
//! `query`), names the actor and the reason, and leaves the pipeline to carry it on.
//!
//! - A review entry joined by hand becomes a `Joined` (method `manual`) connector object and a
//!   correlated change on MESH_JOINED, published through the query service's outbox, so flow
//!   links it as it links any join; correlation keeps a joined object joined. Ignoring an
//!   entry hides it until the connector object changes.
//! - An override is written and its mesh object resolved again in the same transaction
//!   (the flow service's own resolution, run here), so the change goes out on MESH_OBJECTS
//!   like any other.
//! - Approving exports releases what the target's mass-deletion guard holds.
//! - Replaying a dead letter republishes its payload and headers on its original subject, with
//!   a message id derived from the original's and the dead letter's sequence.

use std::collections::BTreeSet;

use chrono::Utc;
use mesh_bus::Outgoing;
use mesh_model::{
    AttributeName, ChangeEvent, ChangeOperation, CorrelatedChange, EventId, JoinMethod, JoinState,
    MeshObjectId, Value,
};
use mesh_proto::v1;
use mesh_store::audit::{self, AuditEntry};
use mesh_store::json::value_to_json;
use mesh_store::pipeline::{self, ConnectorObjectWrite, StoredConnectorObject};
use serde_json::json;
use tonic::Status;

use crate::{AUDIT_WRITER, Query, review, status};

fn handler_error(error: mesh_bus::HandlerError) -> Status {
    Status::unavailable(format!("the change could not be committed, retry: {error}"))
}

/// A fresh event id for an operator's action.
fn action_event() -> EventId {
    EventId::from_uuid(uuid::Uuid::new_v4())
}

/// `ResolveReviewEntry`.
pub async fn resolve_review_entry(
    query: &Query,
    request: v1::ResolveReviewEntryRequest,
) -> Result<v1::ResolveReviewEntryResponse, Status> {
    let entry = status::uuid(&request.entry_id, "entry_id")?;
    let actor = status::required(&request.actor, "actor")?.to_owned();
    let reason = request.reason.trim().to_owned();
    let resolution = request.resolution.ok_or_else(|| {
        Status::invalid_argument("resolution is required: join (with a mesh object) or ignore")
    })?;
    let queued = pipeline::review_keys(&query.pool)
        .await
        .map_err(|e| status::store(&e))?;
    let Some((object, last_event)) = queued
        .into_iter()
        .find(|(object, event)| review::entry_id(object, event.as_uuid()) == entry)
    else {
        return Err(Status::not_found(format!(
            "review entry {entry} is not in the queue (resolved, or its connector object changed since); list the queue again"
        )));
    };
    let stage = query.flow.stage();
    let mut tx = stage.begin_without_inbox().await.map_err(handler_error)?;
    let keys = BTreeSet::from([object.clone()]);
    let mut locked = pipeline::lock_connector_objects(&mut tx, &keys)
        .await
        .map_err(|e| status::store(&e))?;
    let Some(stored) = locked.remove(&object).filter(|s| {
        s.last_event == last_event
            && matches!(
                s.join,
                JoinState::Disconnector | JoinState::Ambiguous { .. }
            )
    }) else {
        return Err(Status::failed_precondition(format!(
            "{object} changed since entry {entry} was listed; list the queue again"
        )));
    };
    let previous = pipeline::state_name(&stored.join);
    let at = Utc::now();
    let (join, detail, outgoing) = match resolution {
        v1::resolve_review_entry_request::Resolution::Join(join) => {
            let mesh_object =
                MeshObjectId::from_uuid(status::uuid(&join.mesh_object_id, "join.mesh_object_id")?);
            let object_type = pipeline::mesh_object_type(&mut tx, mesh_object)
                .await
                .map_err(|e| status::store(&e))?
                .ok_or_else(|| {
                    Status::failed_precondition(format!("mesh object {mesh_object} does not exist"))
                })?;
            if object_type != object.object_type.as_str() {
                return Err(Status::failed_precondition(format!(
                    "mesh object {mesh_object} is a {object_type}; {object} is a {}",
                    object.object_type
                )));
            }
            let join = JoinState::Joined {
                mesh_object,
                rule: None,
                method: JoinMethod::Manual,
            };
            let rules = query.rules.current();
            let joined = StoredConnectorObject {
                join: join.clone(),
                ..stored.clone()
            };
            pipeline::save_connector_objects(
                &mut tx,
                &[ConnectorObjectWrite {
                    object: &object,
                    stored: &joined,
                    rule_version: rules.version(),
                }],
            )
            .await
            .map_err(|e| status::store(&e))?;
            pipeline::replace_join_values(&mut tx, &keys, &[])
                .await
                .map_err(|e| status::store(&e))?;
            let mut name = entry.as_bytes().to_vec();
            name.extend_from_slice(mesh_object.as_uuid().as_bytes());
            let correlated = CorrelatedChange {
                event_id: EventId::derive("review", &name),
                change: ChangeEvent {
                    event_id: stored.last_event,
                    object: object.clone(),
                    operation: ChangeOperation::Upsert,
                    attributes: stored.attributes.clone(),
                    source_time: stored.last_event_time,
                },
                join: join.clone(),
                previous_mesh_object: None,
                rule_version: rules.version(),
                source_sequence: stored.last_sequence,
            };
            let subject = format!("mesh.joined.{}", object.connector);
            let msg_id = correlated.event_id.to_string();
            let detail = json!({
                "resolution": "join",
                "meshObject": mesh_object.to_string(),
                "previous": previous,
                "actor": actor,
                "reason": reason,
            });
            (
                join,
                detail,
                vec![Outgoing::event(subject, msg_id, correlated)],
            )
        }
        v1::resolve_review_entry_request::Resolution::Ignore(_) => {
            pipeline::ignore_review(&mut tx, &object, stored.last_sequence)
                .await
                .map_err(|e| status::store(&e))?;
            let detail = json!({
                "resolution": "ignore",
                "previous": previous,
                "actor": actor,
                "reason": reason,
            });
            (stored.join.clone(), detail, Vec::new())
        }
    };
    let mesh_object = match &join {
        JoinState::Joined { mesh_object, .. } => Some(mesh_object.as_uuid()),
        _ => None,
    };
    let mut entries = [AuditEntry {
        at,
        kind: "review.resolved",
        event_id: Some(stored.last_event.as_uuid()),
        mesh_object,
        connector_object: Some(object.to_string()),
        rule: None,
        detail,
    }];
    mesh_stage::stamp_rule_version(&mut entries, query.rules.current().version());
    let audit_sequence = stage
        .commit_audited(tx, &entries, outgoing)
        .await
        .map_err(handler_error)?;
    tracing::info!(%object, %actor, entry = %entry, "review entry resolved");
    Ok(v1::ResolveReviewEntryResponse {
        join: Some(join.into()),
        audit_sequence,
    })
}

fn attribute(name: &str) -> Result<AttributeName, Status> {
    AttributeName::parse(status::required(name, "attribute")?)
        .map_err(|e| Status::invalid_argument(format!("attribute {name:?}: {e}")))
}

/// `SetOverride`.
pub async fn set_override(
    query: &Query,
    request: v1::SetOverrideRequest,
) -> Result<v1::SetOverrideResponse, Status> {
    let id = MeshObjectId::from_uuid(status::uuid(&request.mesh_object_id, "mesh_object_id")?);
    let name = attribute(&request.attribute)?;
    let actor = status::required(&request.actor, "actor")?;
    let reason = request.reason.trim();
    let value = Value::try_from(
        request
            .value
            .ok_or_else(|| Status::invalid_argument("value is required"))?,
    )
    .map_err(|e| Status::invalid_argument(format!("value: {e}")))?;
    let stage = query.flow.stage();
    let mut tx = stage.begin_without_inbox().await.map_err(handler_error)?;
    exists(&mut tx, id).await?;
    pipeline::set_override(&mut tx, id, &name, &value, reason, actor)
        .await
        .map_err(|e| status::store(&e))?;
    let entry = AuditEntry {
        at: Utc::now(),
        kind: "override.set",
        event_id: None,
        mesh_object: Some(id.as_uuid()),
        connector_object: None,
        rule: None,
        detail: json!({
            "attribute": name.as_str(),
            "value": value_to_json(&value),
            "actor": actor,
            "reason": reason,
        }),
    };
    let resolved = resolve(query, tx, id, entry).await?;
    tracing::info!(mesh_object = %id, attribute = %name, actor, "override set");
    Ok(v1::SetOverrideResponse {
        mesh_object_version: resolved.versions.get(&id).copied().unwrap_or(0),
        audit_sequence: resolved.audit_sequence,
    })
}

/// `RemoveOverride`.
pub async fn remove_override(
    query: &Query,
    request: v1::RemoveOverrideRequest,
) -> Result<v1::RemoveOverrideResponse, Status> {
    let id = MeshObjectId::from_uuid(status::uuid(&request.mesh_object_id, "mesh_object_id")?);
    let name = attribute(&request.attribute)?;
    let actor = status::required(&request.actor, "actor")?;
    let reason = request.reason.trim();
    let stage = query.flow.stage();
    let mut tx = stage.begin_without_inbox().await.map_err(handler_error)?;
    let version = exists(&mut tx, id).await?;
    let removed = pipeline::remove_override(&mut tx, id, &name)
        .await
        .map_err(|e| status::store(&e))?;
    if !removed {
        return Ok(v1::RemoveOverrideResponse {
            removed: false,
            mesh_object_version: version,
            audit_sequence: 0,
        });
    }
    let entry = AuditEntry {
        at: Utc::now(),
        kind: "override.removed",
        event_id: None,
        mesh_object: Some(id.as_uuid()),
        connector_object: None,
        rule: None,
        detail: json!({ "attribute": name.as_str(), "actor": actor, "reason": reason }),
    };
    let resolved = resolve(query, tx, id, entry).await?;
    tracing::info!(mesh_object = %id, attribute = %name, actor, "override removed");
    Ok(v1::RemoveOverrideResponse {
        removed: true,
        mesh_object_version: resolved.versions.get(&id).copied().unwrap_or(version),
        audit_sequence: resolved.audit_sequence,
    })
}

/// Resolves mesh object `id` again inside `tx` (which changed its overrides) under the rules
/// in force, audits `entry` with it, commits and publishes.
async fn resolve(
    query: &Query,
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    id: MeshObjectId,
    entry: AuditEntry,
) -> Result<flow::ResolvedAgain, Status> {
    let rules = query.rules.current();
    query
        .flow
        .resolve_again(
            tx,
            &rules,
            &BTreeSet::from([id]),
            action_event(),
            vec![entry],
        )
        .await
        .map_err(handler_error)
}

/// Refuses a mesh object that does not exist; returns its version, its row locked.
async fn exists(tx: &mut sqlx::PgConnection, id: MeshObjectId) -> Result<u64, Status> {
    let ids = BTreeSet::from([id]);
    let states = pipeline::lock_mesh_objects(tx, &ids)
        .await
        .map_err(|e| status::store(&e))?;
    states
        .get(&id)
        .map(|s| s.version)
        .ok_or_else(|| Status::not_found(format!("mesh object {id} does not exist")))
}

/// `ApproveExports`.
pub async fn approve_exports(
    query: &Query,
    request: v1::ApproveExportsRequest,
) -> Result<v1::ApproveExportsResponse, Status> {
    let target = status::required(&request.target_connector, "target_connector")?;
    let actor = status::required(&request.actor, "actor")?;
    let reason = request.reason.trim();
    let mut tx = query.pool.begin().await.map_err(status::sql)?;
    let released = mesh_store::projection::approve_in(&mut tx, target)
        .await
        .map_err(|e| status::store(&e))?
        .ok_or_else(|| {
            Status::failed_precondition(format!(
                "the mass-deletion guard of {target} is not holding; nothing to approve"
            ))
        })?;
    let entry = AuditEntry {
        at: Utc::now(),
        kind: "exports.approved",
        event_id: None,
        mesh_object: None,
        connector_object: None,
        rule: None,
        detail: json!({ "target": target, "released": released, "actor": actor, "reason": reason }),
    };
    let audit_sequence = audit::append(&mut tx, AUDIT_WRITER, &[entry])
        .await
        .map_err(|e| status::store(&e))?;
    tx.commit().await.map_err(status::sql)?;
    tracing::info!(target, released, actor, "held deprovisions approved");
    Ok(v1::ApproveExportsResponse {
        released: u32::try_from(released).unwrap_or(u32::MAX),
        audit_sequence,
    })
}

/// `ReplayDeadLetter`.
pub async fn replay_dead_letter(
    query: &Query,
    request: v1::ReplayDeadLetterRequest,
) -> Result<v1::ReplayDeadLetterResponse, Status> {
    use prost::Message as _;
    let actor = status::required(&request.actor, "actor")?;
    let reason = request.reason.trim();
    if request.dlq_sequence == 0 {
        return Err(Status::invalid_argument("dlq_sequence is required"));
    }
    let jetstream = query.bus.jetstream();
    let stream = jetstream
        .get_stream(mesh_bus::topology::streams::DLQ)
        .await
        .map_err(|e| Status::unavailable(format!("MESH_DLQ is unavailable: {e}")))?;
    let message = stream
        .get_raw_message(request.dlq_sequence)
        .await
        .map_err(|e| {
            Status::not_found(format!(
                "no dead letter at MESH_DLQ sequence {}: {e}",
                request.dlq_sequence
            ))
        })?;
    let letter = v1::DeadLetter::decode(message.payload.as_ref()).map_err(|e| {
        Status::failed_precondition(format!(
            "MESH_DLQ sequence {} is not a DeadLetter: {e}",
            request.dlq_sequence
        ))
    })?;
    // The message id is the original's with the dead letter's sequence: the stage never
    // claimed the original (it gave up on it), a replay is not dropped as a duplicate of it,
    // and replaying one dead letter twice still has one effect (JetStream's window, then the
    // stage's inbox).
    let mut headers = async_nats::HeaderMap::new();
    for (name, values) in &letter.headers {
        for value in &values.values {
            if name.eq_ignore_ascii_case("Nats-Msg-Id") {
                let replay_id = format!("{value}:replay:{}", request.dlq_sequence);
                headers.append(name.as_str(), replay_id.as_str());
            } else {
                headers.append(name.as_str(), value.as_str());
            }
        }
    }
    let ack = jetstream
        .publish_with_headers(
            letter.subject.clone(),
            headers,
            letter.payload.clone().into(),
        )
        .await
        .map_err(|e| Status::unavailable(format!("republishing on {}: {e}", letter.subject)))?
        .await
        .map_err(|e| Status::unavailable(format!("republishing on {}: {e}", letter.subject)))?;
    let mut tx = query.pool.begin().await.map_err(status::sql)?;
    let entry = AuditEntry {
        at: Utc::now(),
        kind: "dead_letter.replayed",
        event_id: None,
        mesh_object: None,
        connector_object: None,
        rule: None,
        detail: json!({
            "dlqSequence": request.dlq_sequence,
            "stage": letter.stage,
            "subject": letter.subject,
            "streamSequence": ack.sequence,
            "duplicate": ack.duplicate,
            "actor": actor,
            "reason": reason,
        }),
    };
    let audit_sequence = audit::append(&mut tx, AUDIT_WRITER, &[entry])
        .await
        .map_err(|e| status::store(&e))?;
    tx.commit().await.map_err(status::sql)?;
    tracing::info!(dlq_sequence = request.dlq_sequence, subject = %letter.subject, actor, "dead letter replayed");
    Ok(v1::ReplayDeadLetterResponse {
        subject: letter.subject,
        stream_sequence: ack.sequence,
        duplicate: ack.duplicate,
        audit_sequence,
    })
}
