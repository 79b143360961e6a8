//! Reads for the query service (MeshQuery): mesh objects with their timestamps, the search by
//! attribute value, connector objects, the review queue, export summaries, the audit log.
//!
//! Nothing here writes or locks: every statement is a plain `SELECT`, so an operator's query
//! never makes the pipeline wait. Lists are keyset-paged: each takes the key of the last row of
//! the previous page (a cursor) and returns at most `limit` rows after it, in the order the key
//! sorts, so a page costs the same however deep it is.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use mesh_engine::MeshObjectState;
use mesh_model::{AttributeName, ConnectorObjectRef, EventId, MeshObjectId, Value};
use serde_json::Value as Json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::StoreError;
use crate::json::{attributes_from_json, value_from_json};
use crate::pipeline::{StoredConnectorObject, malformed, mesh_object_state, object_ref};

/// The audit kind of an override set through the query service; its detail names the
/// `attribute` and the `actor`. Lineage reads the actor of an override from it.
pub const OVERRIDE_SET: &str = "override.set";

/// The audit kind of a dead letter replayed through the query service; its detail names the
/// MESH_DLQ sequence as `dlqSequence`. The dead-letter list reads when it was replayed from it.
pub const DEAD_LETTER_REPLAYED: &str = "dead_letter.replayed";

/// A mesh object as stored, with when its row was written.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMeshObject {
    /// Its resolved state.
    pub state: MeshObjectState,
    /// When correlation created the row.
    pub created_at: DateTime<Utc>,
    /// When flow last wrote it (wall clock).
    pub updated_at: DateTime<Utc>,
    /// The rule version flow last resolved it under (0: not resolved yet).
    pub rule_version: u64,
}

/// Reads mesh objects `ids` (those that exist), in id order, without locking them.
pub async fn mesh_objects(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<Vec<StoredMeshObject>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows = sqlx::query(
        "SELECT id, object_type, anchor, version, lifecycle, authority_seen, attributes, lineage, \
                created_at, updated_at, rule_version \
         FROM mesh_objects WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("reading mesh objects"))?;
    rows.iter()
        .map(|row| {
            Ok(StoredMeshObject {
                state: mesh_object_state(row)?,
                created_at: row.get(8),
                updated_at: row.get(9),
                rule_version: u64::try_from(row.get::<i64, _>(10)).unwrap_or(0),
            })
        })
        .collect()
}

/// An override with who set it and when.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredOverride {
    /// The attribute it pins.
    pub name: AttributeName,
    /// The pinned value.
    pub value: Value,
    /// Why.
    pub reason: String,
    /// When it was set.
    pub set_at: DateTime<Utc>,
    /// Who set it (the query service's SetOverride records it).
    pub actor: Option<String>,
}

/// Reads the overrides of mesh object `id`, in name order.
pub async fn overrides(
    conn: &mut PgConnection,
    id: MeshObjectId,
) -> Result<Vec<StoredOverride>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.name, o.value, o.reason, o.set_at, nullif(o.actor, '') \
         FROM mesh_overrides o WHERE o.mesh_object = $1",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("reading overrides"))?;
    let mut found = rows
        .iter()
        .map(|row| {
            let name: String = row.get(0);
            let value: Json = row.get(1);
            Ok(StoredOverride {
                name: AttributeName::parse(&name)
                    .map_err(|e| malformed("override attribute")(e.to_string()))?,
                value: value_from_json(&value)
                    .map_err(|e| malformed("override value")(e.to_string()))?,
                reason: row.get(2),
                set_at: row.get(3),
                actor: row.get(4),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// A search of mesh objects by attribute value ([`find_mesh_objects`]).
#[derive(Debug, Clone)]
pub struct AttributeSearch<'a> {
    /// The object types whose attribute is in the join-key index (`mesh_attributes`): searched
    /// there.
    pub indexed_types: &'a [&'a str],
    /// The object types to scan (`mesh_objects`), comparing the stored values.
    pub scanned_types: &'a [&'a str],
    /// The attribute's folded name.
    pub name: &'a str,
    /// The value's join key.
    pub key: &'a str,
    /// Only mesh objects after this id (the last one of the previous page).
    pub after: Option<MeshObjectId>,
    /// At most this many.
    pub limit: i64,
}

/// Finds mesh objects whose attribute has join key `key`, in id order.
///
/// The indexed types are answered from `mesh_attributes` (a probe per type); the scanned ones
/// by reading `mesh_objects` in id order and comparing the join key of the stored value, or of
/// any item of a list (multi-valued attributes are not in the index). A scan reads every mesh
/// object of the scanned types with an id after the cursor until `limit` match: it costs as
/// much as the mesh is large, and is what a search of an attribute no join rule targets costs.
pub async fn find_mesh_objects(
    conn: &mut PgConnection,
    search: &AttributeSearch<'_>,
) -> Result<Vec<MeshObjectId>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        // The scalar join key of a stored (tagged JSON) value, as mesh_engine::join_key gives
        // it: the text of a string, number or boolean, the text of a tagged timestamp.
        "WITH indexed AS ( \
           SELECT a.mesh_object AS id FROM unnest($1::text[]) AS t(object_type) \
           CROSS JOIN LATERAL ( \
             SELECT mesh_object FROM mesh_attributes a \
             WHERE a.object_type = t.object_type AND a.name = $3 AND a.join_key = $4 \
               AND ($5::uuid IS NULL OR a.mesh_object > $5)) a), \
         scanned AS ( \
           SELECT m.id FROM mesh_objects m \
           WHERE m.object_type = ANY($2) AND ($5::uuid IS NULL OR m.id > $5) \
             AND EXISTS ( \
               SELECT 1 FROM jsonb_each(m.attributes) e \
               CROSS JOIN LATERAL ( \
                 SELECT e.value AS v WHERE jsonb_typeof(e.value) <> 'array' \
                 UNION ALL \
                 SELECT i.value FROM jsonb_array_elements( \
                   CASE WHEN jsonb_typeof(e.value) = 'array' THEN e.value ELSE '[]' END) AS i) \
                 AS item \
               WHERE lower(e.key) = $3 \
                 AND CASE jsonb_typeof(item.v) \
                       WHEN 'object' THEN item.v ->> '$ts' \
                       WHEN 'string' THEN item.v #>> '{}' \
                       WHEN 'number' THEN item.v #>> '{}' \
                       WHEN 'boolean' THEN item.v #>> '{}' \
                     END = $4) \
           ORDER BY m.id LIMIT $6) \
         SELECT id FROM (SELECT id FROM indexed UNION SELECT id FROM scanned) found \
         ORDER BY id LIMIT $6",
    )
    .bind(search.indexed_types)
    .bind(search.scanned_types)
    .bind(search.name)
    .bind(search.key)
    .bind(search.after.map(|id| id.as_uuid()))
    .bind(search.limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("searching mesh objects by attribute"))?;
    Ok(ids.into_iter().map(MeshObjectId::from_uuid).collect())
}

/// A connector object as correlation keeps it, with its key and row details.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorObjectRecord {
    /// Its key.
    pub object: ConnectorObjectRef,
    /// Its attributes, join state and last change.
    pub stored: StoredConnectorObject,
    /// The rule version that decided its join state.
    pub rule_version: u64,
    /// When correlation last wrote it (wall clock): when it entered the review queue, for a
    /// disconnector or an ambiguous match.
    pub updated_at: DateTime<Utc>,
}

fn connector_object_record(row: &PgRow) -> Result<ConnectorObjectRecord, StoreError> {
    let attributes: Json = row.get(3);
    let join: Json = row.get(4);
    let last_sequence: i64 = row.get(7);
    let rule_version: i64 = row.get(8);
    Ok(ConnectorObjectRecord {
        object: object_ref(row.get(0), row.get(1), row.get(2))?,
        stored: StoredConnectorObject {
            attributes: attributes_from_json(&attributes)
                .map_err(|e| malformed("connector object attributes")(e.to_string()))?,
            join: serde_json::from_value(join)
                .map_err(|e| malformed("connector object join state")(e.to_string()))?,
            last_event: EventId::from_uuid(row.get(5)),
            last_event_time: row.get(6),
            last_sequence: u64::try_from(last_sequence).unwrap_or(0),
        },
        rule_version: u64::try_from(rule_version).unwrap_or(0),
        updated_at: row.get(9),
    })
}

/// Reads one connector object, if correlation has seen it.
pub async fn connector_object(
    conn: &mut PgConnection,
    object: &ConnectorObjectRef,
) -> Result<Option<ConnectorObjectRecord>, StoreError> {
    let row = sqlx::query(
        "SELECT connector, object_type, external_id, attributes, join_state, last_event, \
                last_event_time, last_sequence, rule_version, updated_at \
         FROM connector_objects \
         WHERE connector = $1 AND object_type = $2 AND external_id = $3",
    )
    .bind(object.connector.as_str())
    .bind(object.object_type.as_str())
    .bind(object.external_id.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query("reading a connector object"))?;
    row.as_ref().map(connector_object_record).transpose()
}

/// The position of a review entry in the queue's order: (queued at, connector, object type,
/// external id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewCursor {
    /// When it was queued (`connector_objects.updated_at`).
    pub queued_at: DateTime<Utc>,
    /// Its connector.
    pub connector: String,
    /// Its object type.
    pub object_type: String,
    /// Its external id.
    pub external_id: String,
}

/// Which review entries to list.
#[derive(Debug, Clone, Default)]
pub struct ReviewFilter<'a> {
    /// Only this connector.
    pub connector: Option<&'a str>,
    /// Only these states (`disconnector`, `ambiguous`); empty means both.
    pub states: &'a [&'a str],
    /// Only entries after this one.
    pub after: Option<&'a ReviewCursor>,
    /// At most this many.
    pub limit: i64,
}

/// Lists the review queue, oldest first: disconnectors and ambiguous matches, except those an
/// operator ignored since their last change (migration 0007).
pub async fn review_queue(
    conn: &mut PgConnection,
    filter: &ReviewFilter<'_>,
) -> Result<Vec<ConnectorObjectRecord>, StoreError> {
    let states: &[&str] = if filter.states.is_empty() {
        &["disconnector", "ambiguous"]
    } else {
        filter.states
    };
    let after = filter.after;
    let rows = sqlx::query(concat!(
        "SELECT connector, object_type, external_id, attributes, join_state, last_event, \
                last_event_time, last_sequence, rule_version, updated_at \
         FROM connector_objects WHERE ",
        in_review_queue!(),
        " AND state = ANY($1) \
           AND ($2::text IS NULL OR connector = $2) \
           AND ($3::timestamptz IS NULL \
             OR (updated_at, connector, object_type, external_id) > ($3, $4, $5, $6)) \
         ORDER BY updated_at, connector, object_type, external_id LIMIT $7"
    ))
    .bind(states)
    .bind(filter.connector)
    .bind(after.map(|a| a.queued_at))
    .bind(after.map(|a| a.connector.as_str()))
    .bind(after.map(|a| a.object_type.as_str()))
    .bind(after.map(|a| a.external_id.as_str()))
    .bind(filter.limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("listing the review queue"))?;
    rows.iter().map(connector_object_record).collect()
}

/// What the export commands of one mesh object tell about one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSummary {
    /// The target connector.
    pub target: String,
    /// The projection rule of the newest command.
    pub rule: String,
    /// The newest mesh object version the target confirmed, if any.
    pub confirmed_version: Option<u64>,
}

/// Summarizes the export commands of mesh object `id` per target (only `target` when given),
/// in target order.
pub async fn export_summaries(
    conn: &mut PgConnection,
    id: MeshObjectId,
    target: Option<&str>,
) -> Result<Vec<ExportSummary>, StoreError> {
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT target, (array_agg(rule ORDER BY seq DESC))[1], \
           max(mesh_object_version) FILTER (WHERE status = 'confirmed') \
         FROM exports WHERE mesh_object = $1 AND ($2::text IS NULL OR target = $2) \
         GROUP BY target ORDER BY target",
    )
    .bind(id.as_uuid())
    .bind(target)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("summarizing export commands"))?;
    Ok(rows
        .into_iter()
        .map(|(target, rule, confirmed)| ExportSummary {
            target,
            rule,
            confirmed_version: confirmed.and_then(|v| u64::try_from(v).ok()),
        })
        .collect())
}

/// The position of an audit row in the search order: (time, chain, sequence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its chain.
    pub chain: String,
    /// Its sequence in the chain.
    pub seq: i64,
}

/// Which audit rows to list. Filters combine with AND; `None` and empty match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter<'a> {
    /// Only rows about this mesh object.
    pub mesh_object: Option<MeshObjectId>,
    /// Only rows about this connector object (`connector/type/external-id`).
    pub connector_object: Option<&'a str>,
    /// Only rows about this connector: of one of its connector objects, or naming it as the
    /// `target` of an export.
    pub connector: Option<&'a str>,
    /// Only rows of this rule.
    pub rule: Option<&'a str>,
    /// Only rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only rows before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only rows of these kinds.
    pub kinds: &'a [String],
    /// Only rows after this one.
    pub after: Option<&'a AuditCursor>,
    /// At most this many.
    pub limit: i64,
}

/// One audit row as stored, with the writer of its chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRow {
    /// The chain.
    pub chain: String,
    /// Its sequence in the chain, from 1.
    pub seq: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// What happened.
    pub kind: String,
    /// The event that caused it.
    pub event_id: Option<Uuid>,
    /// The mesh object concerned.
    pub mesh_object: Option<Uuid>,
    /// The connector object concerned, as `connector/type/external-id`.
    pub connector_object: Option<String>,
    /// The rule that decided it.
    pub rule: Option<String>,
    /// Everything else.
    pub detail: Json,
    /// The previous row's hash.
    pub prev_hash: Vec<u8>,
    /// This row's hash.
    pub hash: Vec<u8>,
    /// The stage or service whose batches append to the chain (`audit_heads.writer`).
    pub writer: Option<String>,
}

/// Searches the audit log in (time, chain, sequence) order.
pub async fn search_audit(
    conn: &mut PgConnection,
    filter: &AuditFilter<'_>,
) -> Result<Vec<AuditRow>, StoreError> {
    let after = filter.after;
    let rows = sqlx::query(
        "SELECT l.chain, l.seq, l.at, l.kind, l.event_id, l.mesh_object, l.connector_object, \
                l.rule, l.detail, l.prev_hash, l.hash, h.writer \
         FROM audit_log l LEFT JOIN audit_heads h ON h.chain = l.chain \
         WHERE ($1::uuid IS NULL OR l.mesh_object = $1) \
           AND ($2::text IS NULL OR l.connector_object = $2) \
           AND ($3::text IS NULL OR split_part(l.connector_object, '/', 1) = $3 \
             OR l.detail ->> 'target' = $3) \
           AND ($4::text IS NULL OR l.rule = $4) \
           AND ($5::timestamptz IS NULL OR l.at >= $5) \
           AND ($6::timestamptz IS NULL OR l.at < $6) \
           AND (cardinality($7::text[]) = 0 OR l.kind = ANY($7)) \
           AND ($8::timestamptz IS NULL OR (l.at, l.chain, l.seq) > ($8, $9, $10)) \
         ORDER BY l.at, l.chain, l.seq LIMIT $11",
    )
    .bind(filter.mesh_object.map(|id| id.as_uuid()))
    .bind(filter.connector_object)
    .bind(filter.connector)
    .bind(filter.rule)
    .bind(filter.since)
    .bind(filter.until)
    .bind(filter.kinds)
    .bind(after.map(|a| a.at))
    .bind(after.map(|a| a.chain.as_str()))
    .bind(after.map(|a| a.seq))
    .bind(filter.limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("searching the audit log"))?;
    Ok(rows
        .iter()
        .map(|row| AuditRow {
            chain: row.get(0),
            seq: row.get(1),
            at: row.get(2),
            kind: row.get(3),
            event_id: row.get(4),
            mesh_object: row.get(5),
            connector_object: row.get(6),
            rule: row.get(7),
            detail: row.get(8),
            prev_hash: row.get(9),
            hash: row.get(10),
            writer: row.get(11),
        })
        .collect())
}

/// When each of the MESH_DLQ sequences `sequences` was last replayed, for those that were:
/// the newest [`DEAD_LETTER_REPLAYED`] row of the chains of `writer` (the query service).
pub async fn dead_letter_replays(
    conn: &mut PgConnection,
    writer: &str,
    sequences: &[u64],
) -> Result<HashMap<u64, DateTime<Utc>>, StoreError> {
    if sequences.is_empty() {
        return Ok(HashMap::new());
    }
    let texts: Vec<String> = sequences.iter().map(ToString::to_string).collect();
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        // Only the writer's chains: operator actions are few, the pipeline's rows many.
        "SELECT l.detail ->> 'dlqSequence', max(l.at) FROM audit_log l \
         WHERE l.chain IN (SELECT chain FROM audit_heads WHERE writer = $1) \
           AND l.kind = $2 AND l.detail ->> 'dlqSequence' = ANY($3) \
         GROUP BY 1",
    )
    .bind(writer)
    .bind(DEAD_LETTER_REPLAYED)
    .bind(&texts)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("reading dead-letter replays"))?;
    Ok(rows
        .into_iter()
        .filter_map(|(seq, at)| Some((seq.parse().ok()?, at)))
        .collect())
}
