//! The audit log: search and verification.
//!
//! The log has many chains (one per concurrent writer of each stage, `flow/<uuid>`), each with
//! its own gap-free sequence: an entry's `sequence` is its position in its chain. A search
//! returns entries in (time, chain, sequence) order.
//!
//! An entry's fields come from its row: `action` is the row's kind, `connector` the connector of
//! its connector object or the export `target` its detail names, `actor` the detail's `actor`
//! (an operator) or else the stage that writes the chain (`audit_heads.writer`),
//! `rule_version` the detail's `ruleVersion` (the version itself for a rule version applied or
//! rolled back; 0 where the row does not record one), `details` the detail's top-level fields.

use std::collections::BTreeMap;

use mesh_model::{ConnectorId, ConnectorObjectRef, MeshObjectId};
use mesh_proto::v1;
use mesh_store::query::{self as stored, AuditCursor, AuditFilter, AuditRow};
use serde_json::Value as Json;
use tonic::Status;

use super::filter;
use crate::{Query, page, status};

/// `SearchAudit`.
pub async fn search_audit(
    query: &Query,
    request: v1::SearchAuditRequest,
) -> Result<v1::SearchAuditResponse, Status> {
    let mesh_object = filter(&request.mesh_object_id)
        .map(|id| status::uuid(id, "mesh_object_id").map(MeshObjectId::from_uuid))
        .transpose()?;
    let connector_object = request
        .connector_object
        .map(|object| {
            ConnectorObjectRef::try_from(object)
                .map(|o| o.to_string())
                .map_err(|e| Status::invalid_argument(format!("connector_object: {e}")))
        })
        .transpose()?;
    let connector = filter(&request.connector)
        .map(|c| {
            ConnectorId::parse(c).map_err(|e| Status::invalid_argument(format!("connector: {e}")))
        })
        .transpose()?;
    let since = request
        .since
        .as_ref()
        .map(|t| status::time(t, "since"))
        .transpose()?;
    let until = request
        .until
        .as_ref()
        .map(|t| status::time(t, "until"))
        .transpose()?;
    let kinds: Vec<String> = request
        .actions
        .iter()
        .filter_map(|a| filter(a))
        .map(str::to_owned)
        .collect();
    let after = page::parse(&request.page_token, "audit", 3)?
        .map(|key| {
            Ok::<_, Status>(AuditCursor {
                at: page::time(key[0])?,
                seq: page::number(key[1])?,
                chain: key[2].to_owned(),
            })
        })
        .transpose()?;
    let size = query.page_size(request.page_size);
    let mut conn = query.pool.acquire().await.map_err(status::sql)?;
    let rows = stored::search_audit(
        &mut conn,
        &AuditFilter {
            mesh_object,
            connector_object: connector_object.as_deref(),
            connector: connector.as_ref().map(ConnectorId::as_str),
            rule: filter(&request.rule),
            since,
            until,
            kinds: &kinds,
            after: after.as_ref(),
            limit: page::fetch_limit(size),
        },
    )
    .await
    .map_err(|e| status::store(&e))?;
    let (rows, next_page_token) = page::finish(rows, size, "audit", |row| {
        format!("{}/{}/{}", page::micros(row.at), row.seq, row.chain)
    });
    Ok(v1::SearchAuditResponse {
        entries: rows.iter().map(entry).collect(),
        next_page_token,
    })
}

/// A text field of the detail.
fn text<'a>(detail: &'a Json, key: &str) -> Option<&'a str> {
    detail.get(key).and_then(Json::as_str)
}

fn entry(row: &AuditRow) -> v1::AuditEntry {
    let detail = &row.detail;
    let object = row.connector_object.as_deref().map(object_ref);
    let connector = object
        .as_ref()
        .map(|o| o.connector.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| text(detail, "target").map(str::to_owned))
        .unwrap_or_default();
    let actor = text(detail, "actor")
        .map(str::to_owned)
        .or_else(|| row.writer.clone())
        .unwrap_or_else(|| row.chain.split('/').next().unwrap_or_default().to_owned());
    v1::AuditEntry {
        sequence: u64::try_from(row.seq).unwrap_or(0),
        recorded_at: Some(status::timestamp(row.at)),
        actor,
        action: row.kind.clone(),
        mesh_object_id: row.mesh_object.map(|id| id.to_string()).unwrap_or_default(),
        connector_object: object,
        connector,
        rule: row.rule.clone().unwrap_or_default(),
        rule_version: rule_version(row),
        event_id: row.event_id.map(|id| id.to_string()).unwrap_or_default(),
        message: message(row),
        details: details(detail),
        previous_hash: hex::encode(&row.prev_hash),
        hash: hex::encode(&row.hash),
    }
}

/// A stored `connector/type/external-id` as a reference (the external id may hold `/`).
fn object_ref(text: &str) -> v1::ConnectorObjectRef {
    let mut parts = text.splitn(3, '/');
    v1::ConnectorObjectRef {
        connector: parts.next().unwrap_or_default().to_owned(),
        object_type: parts.next().unwrap_or_default().to_owned(),
        external_id: parts.next().unwrap_or_default().to_owned(),
    }
}

fn rule_version(row: &AuditRow) -> u64 {
    let number = |key: &str| row.detail.get(key).and_then(Json::as_u64);
    number("ruleVersion").unwrap_or_else(|| match row.kind.as_str() {
        "rules.applied" | "rules.rolled_back" => number("version").unwrap_or(0),
        _ => 0,
    })
}

/// The detail's top-level fields as values. A field the value model cannot hold (an object, a
/// list of objects) is given as its JSON text.
fn details(detail: &Json) -> BTreeMap<String, v1::Value> {
    let Json::Object(fields) = detail else {
        return BTreeMap::new();
    };
    fields
        .iter()
        .map(|(key, json)| {
            let value = mesh_store::json::value_from_json(json)
                .unwrap_or_else(|_| mesh_model::Value::from(json.to_string().as_str()));
            (key.clone(), value.into())
        })
        .collect()
}

/// The entry in words, from its kind and detail.
fn message(row: &AuditRow) -> String {
    let detail = &row.detail;
    let field = |key: &str| match detail.get(key) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => "?".to_owned(),
        Some(other) => other.to_string(),
    };
    let object = row.connector_object.as_deref().unwrap_or("?");
    let mesh = row
        .mesh_object
        .map_or_else(|| "?".to_owned(), |id| id.to_string());
    let rule = row.rule.as_deref().unwrap_or("?");
    match row.kind.as_str() {
        "join" => format!(
            "{object} joined mesh object {mesh} by join rule {rule} ({})",
            field("method")
        ),
        "projection" => {
            format!("{object} projected a new mesh object {mesh} by anchor rule {rule}")
        }
        "disconnector" => format!("{object} stays a disconnector: {}", field("reason")),
        "ambiguous" => format!(
            "join rule {rule} matched {} mesh objects for {object}; it waits in the review queue",
            detail
                .get("candidates")
                .and_then(Json::as_array)
                .map_or(0, Vec::len)
        ),
        "delete" => format!("{object} was deleted in its system"),
        "values" => {
            let names: Vec<String> = detail
                .get("changes")
                .and_then(Json::as_array)
                .map(|changes| {
                    changes
                        .iter()
                        .filter_map(|c| c.get("attribute").and_then(Json::as_str))
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "mesh object {mesh} version {}: {} changed",
                field("version"),
                names.join(", ")
            )
        }
        "lifecycle" => format!(
            "mesh object {mesh} went from {} to {}",
            field("from"),
            field("to")
        ),
        "transform-error" => format!(
            "rule {rule} failed on {}: {}",
            field("subject"),
            field("message")
        ),
        "export" => format!(
            "{} of mesh object {mesh} in {}: {}",
            field("operation"),
            field("target"),
            detail
                .get("status")
                .or_else(|| detail.get("state"))
                .and_then(Json::as_str)
                .unwrap_or("?")
        ),
        "export-failed" => format!(
            "{} of mesh object {mesh} in {} failed for good after {} attempts: {}",
            field("operation"),
            field("target"),
            field("attempts"),
            field("message")
        ),
        "guard-held" => format!(
            "the mass-deletion guard of {} holds its deprovisions (more than {} in {} s)",
            field("target"),
            field("threshold"),
            field("windowSeconds")
        ),
        "rules.applied" | "rules.rolled_back" => format!(
            "rule version {} applied by {}: {}",
            field("version"),
            field("actor"),
            field("reason")
        ),
        "decision" => format!(
            "{} {} on {}: {}",
            field("decision"),
            field("subject"),
            field("resource"),
            rule
        ),
        other => text(detail, "message")
            .or_else(|| text(detail, "reason"))
            .map_or_else(|| other.to_owned(), |m| format!("{other}: {m}")),
    }
}

/// `VerifyAuditChain`: recomputes every chain ([`mesh_store::audit::verify`]).
///
/// The whole log is always verified: a row's hash covers the one before it, so a range cannot
/// be trusted without what precedes it. `from_sequence` and `to_sequence` restrict which
/// broken rows are reported (by their sequence in their chain); `entries_checked` counts every
/// row read, and `head_hash` is the hash of the newest row.
pub async fn verify_audit_chain(
    query: &Query,
    request: v1::VerifyAuditChainRequest,
) -> Result<v1::VerifyAuditChainResponse, Status> {
    let from = request.from_sequence.unwrap_or(1);
    let to = request.to_sequence.unwrap_or(u64::MAX);
    if from > to {
        return Err(Status::invalid_argument(format!(
            "from_sequence {from} is after to_sequence {to}"
        )));
    }
    let report = mesh_store::audit::verify(&query.pool)
        .await
        .map_err(|e| status::store(&e))?;
    let first = report.broken.iter().find(|b| (from..=to).contains(&b.seq));
    Ok(v1::VerifyAuditChainResponse {
        valid: first.is_none(),
        entries_checked: report.rows,
        first_bad_sequence: first.map(|b| b.seq),
        problem: first.map(|b| b.problem.clone()).unwrap_or_default(),
        head_hash: hex::encode(&report.newest_hash),
    })
}
