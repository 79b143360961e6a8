//! MeshQuery's answers as JSON documents (the `-o json|yaml` shapes, camelCase keys) and as
//! table cells.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use mesh_model::Value;
use mesh_proto::v1;
use serde_json::{Value as Json, json};

/// A wire value as a domain value; null when absent or malformed.
pub fn value(value: Option<&v1::Value>) -> Value {
    value
        .cloned()
        .and_then(|v| Value::try_from(v).ok())
        .unwrap_or(Value::Null)
}

/// A wire value as plain JSON (a timestamp as RFC 3339 text).
pub fn value_json(v: Option<&v1::Value>) -> Json {
    serde_json::to_value(value(v)).unwrap_or(Json::Null)
}

/// A wire value as a table cell: text as it is, lists in brackets.
pub fn value_text(v: Option<&v1::Value>) -> String {
    value(v).to_string()
}

/// A wire time as RFC 3339 text.
pub fn time(t: Option<&prost_types::Timestamp>) -> Option<String> {
    let t = t?;
    let nanos = u32::try_from(t.nanos).ok()?;
    DateTime::<Utc>::from_timestamp(t.seconds, nanos)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

/// A wire time as a table cell (`-` when absent).
pub fn time_text(t: Option<&prost_types::Timestamp>) -> String {
    time(t).unwrap_or_else(|| "-".to_owned())
}

/// A connector object reference as `connector/type/external-id` (empty when absent).
pub fn object_ref(r: Option<&v1::ConnectorObjectRef>) -> String {
    r.map(|r| format!("{}/{}/{}", r.connector, r.object_type, r.external_id))
        .unwrap_or_default()
}

/// An attribute map as a JSON object.
pub fn attributes_json(attributes: &BTreeMap<String, v1::Value>) -> Json {
    Json::Object(
        attributes
            .iter()
            .map(|(name, v)| (name.clone(), value_json(Some(v))))
            .collect(),
    )
}

/// A lifecycle state's name.
pub fn lifecycle(state: i32) -> &'static str {
    match v1::LifecycleState::try_from(state) {
        Ok(v1::LifecycleState::Active) => "active",
        Ok(v1::LifecycleState::Disabled) => "disabled",
        Ok(v1::LifecycleState::Leaver) => "leaver",
        Ok(v1::LifecycleState::Deleted) => "deleted",
        _ => "unknown",
    }
}

/// A mesh object.
pub fn mesh_object_json(o: &v1::MeshObject) -> Json {
    json!({
        "id": o.id,
        "objectType": o.object_type,
        "version": o.version,
        "lifecycle": lifecycle(o.lifecycle),
        "ruleVersion": o.rule_version,
        "createdAt": time(o.created_at.as_ref()),
        "updatedAt": time(o.updated_at.as_ref()),
        "connectorObjects": o.connector_objects.iter().map(|r| object_ref(Some(r))).collect::<Vec<_>>(),
        "attributes": attributes_json(&o.attributes),
    })
}

fn contribution_kind(kind: i32) -> &'static str {
    match v1::ContributionKind::try_from(kind) {
        Ok(v1::ContributionKind::InboundFlow) => "inboundFlow",
        Ok(v1::ContributionKind::Composer) => "composer",
        _ => "unknown",
    }
}

/// One contribution.
pub fn contribution_json(c: &v1::Contribution) -> Json {
    json!({
        "kind": contribution_kind(c.kind),
        "connector": (!c.connector.is_empty()).then_some(&c.connector),
        "connectorObject": c.connector_object.as_ref().map(|r| object_ref(Some(r))),
        "rule": c.rule,
        "confidence": c.confidence,
        "value": value_json(c.value.as_ref()),
        "eventId": c.event_id,
        "contributedAt": time(c.contributed_at.as_ref()),
        "ruleVersion": c.rule_version,
    })
}

/// Where a contribution comes from, in words: its connector object, or `composer`.
pub fn source_text(c: &v1::Contribution) -> String {
    match &c.connector_object {
        Some(r) => object_ref(Some(r)),
        None => "(composer)".to_owned(),
    }
}

/// An override.
pub fn override_json(o: &v1::AttributeOverride) -> Json {
    json!({
        "value": value_json(o.value.as_ref()),
        "actor": o.actor,
        "reason": o.reason,
        "setAt": time(o.set_at.as_ref()),
    })
}

/// The lineage of one attribute.
pub fn lineage_json(l: &v1::AttributeLineage) -> Json {
    json!({
        "name": l.name,
        "value": value_json(l.value.as_ref()),
        "winner": l.winner.as_ref().map(contribution_json),
        "candidates": l.candidates.iter().map(contribution_json).collect::<Vec<_>>(),
        "override": l.r#override.as_ref().map(override_json),
    })
}

/// A join state.
pub fn join_json(join: Option<&v1::JoinState>) -> Json {
    use v1::join_state::State;
    match join.and_then(|j| j.state.as_ref()) {
        Some(State::Joined(j)) => json!({
            "state": "joined",
            "meshObject": j.mesh_object,
            "rule": j.rule,
            "method": match v1::JoinMethod::try_from(j.method) {
                Ok(v1::JoinMethod::Matched) => "matched",
                Ok(v1::JoinMethod::Projected) => "projected",
                Ok(v1::JoinMethod::Existing) => "existing",
                Ok(v1::JoinMethod::Manual) => "manual",
                _ => "unknown",
            },
        }),
        Some(State::Disconnector(_)) => json!({"state": "disconnector"}),
        Some(State::Ambiguous(a)) => json!({
            "state": "ambiguous",
            "rule": a.rule,
            "candidates": a.candidates,
        }),
        Some(State::Deleted(_)) => json!({"state": "deleted"}),
        None => json!({"state": "unknown"}),
    }
}

/// A connector object.
pub fn connector_object_json(o: &v1::ConnectorObject) -> Json {
    json!({
        "object": object_ref(o.object.as_ref()),
        "join": join_json(o.join.as_ref()),
        "lastEventId": o.last_event_id,
        "lastChangedAt": time(o.last_changed_at.as_ref()),
        "ruleVersion": o.rule_version,
        "attributes": attributes_json(&o.attributes),
    })
}

/// A review reason's name.
pub fn reason(reason: i32) -> &'static str {
    match v1::ReviewReason::try_from(reason) {
        Ok(v1::ReviewReason::Disconnector) => "disconnector",
        Ok(v1::ReviewReason::Ambiguous) => "ambiguous",
        _ => "unknown",
    }
}

/// A review entry.
pub fn review_entry_json(e: &v1::ReviewEntry) -> Json {
    json!({
        "id": e.id,
        "object": object_ref(e.object.as_ref()),
        "reason": reason(e.reason),
        "rule": (!e.rule.is_empty()).then_some(&e.rule),
        "candidates": e.candidates,
        "message": e.message,
        "eventId": e.event_id,
        "queuedAt": time(e.queued_at.as_ref()),
    })
}

/// An audit entry.
pub fn audit_entry_json(e: &v1::AuditEntry) -> Json {
    json!({
        "sequence": e.sequence,
        "recordedAt": time(e.recorded_at.as_ref()),
        "actor": e.actor,
        "action": e.action,
        "meshObjectId": (!e.mesh_object_id.is_empty()).then_some(&e.mesh_object_id),
        "connectorObject": e.connector_object.as_ref().map(|r| object_ref(Some(r))),
        "connector": (!e.connector.is_empty()).then_some(&e.connector),
        "rule": (!e.rule.is_empty()).then_some(&e.rule),
        "ruleVersion": e.rule_version,
        "eventId": (!e.event_id.is_empty()).then_some(&e.event_id),
        "message": e.message,
        "details": attributes_json(&e.details),
        "previousHash": e.previous_hash,
        "hash": e.hash,
    })
}

/// A dead letter; the payload as hex, as it may be any bytes.
pub fn dead_letter_json(e: &v1::DeadLetterEntry) -> Json {
    let d = e.dead_letter.clone().unwrap_or_default();
    json!({
        "dlqSequence": e.dlq_sequence,
        "stage": d.stage,
        "subject": d.subject,
        "stream": d.stream,
        "streamSequence": d.stream_sequence,
        "schema": d.schema,
        "reason": d.reason,
        "attempts": d.attempts,
        "failedAt": time(d.failed_at.as_ref()),
        "replayedAt": time(e.replayed_at.as_ref()),
        "payloadHex": d.payload.iter().map(|b| format!("{b:02x}")).collect::<String>(),
    })
}
