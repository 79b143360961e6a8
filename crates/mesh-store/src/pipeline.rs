//! The pipeline's tables: the management space (correlation) and mesh objects with their links
//! (flow). Every function works on a batch, in one round trip, inside the caller's
//! transaction; rows are locked in key order so that concurrent batches cannot deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use mesh_engine::correlate::JoinQuery;
use mesh_engine::{
    DisconnectorDirectory, Found, JoinLookups, LineageMap, MeshDirectory, MeshObjectState,
    NewMeshObject, Override, RetryQuery,
};
use mesh_model::{
    AttributeName, Attributes, ConnectorId, ConnectorObjectRef, EventId, ExternalId, JoinState,
    LifecycleState, MeshObjectId, ObjectType,
};
use serde_json::Value as Json;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::StoreError;
use crate::json::{attributes_from_json, attributes_to_json, value_from_json};

/// A connector object as correlation keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnectorObject {
    /// Its raw attributes as last imported (empty once deleted).
    pub attributes: Attributes,
    /// Where it stands.
    pub join: JoinState,
    /// The change event applied last.
    pub last_event: EventId,
    /// That event's source time.
    pub last_event_time: DateTime<Utc>,
    /// That event's MESH_CHANGES stream sequence.
    pub last_sequence: u64,
}

/// The state name of a join state, as stored in `connector_objects.state`.
pub fn state_name(join: &JoinState) -> &'static str {
    match join {
        JoinState::Joined { .. } => "joined",
        JoinState::Disconnector => "disconnector",
        JoinState::Ambiguous { .. } => "ambiguous",
        JoinState::Deleted => "deleted",
    }
}

pub(crate) fn malformed(what: &'static str) -> impl Fn(String) -> StoreError {
    move |reason| StoreError::Malformed { what, reason }
}

pub(crate) fn object_ref(
    connector: &str,
    object_type: &str,
    external_id: &str,
) -> Result<ConnectorObjectRef, StoreError> {
    let bad = malformed("connector object key");
    Ok(ConnectorObjectRef {
        connector: ConnectorId::parse(connector).map_err(|e| bad(e.to_string()))?,
        object_type: ObjectType::parse(object_type).map_err(|e| bad(e.to_string()))?,
        external_id: ExternalId::parse(external_id).map_err(|e| bad(e.to_string()))?,
    })
}

fn key_columns<'a>(
    objects: impl IntoIterator<Item = &'a ConnectorObjectRef>,
) -> (Vec<&'a str>, Vec<&'a str>, Vec<&'a str>) {
    let mut connectors = Vec::new();
    let mut types = Vec::new();
    let mut ids = Vec::new();
    for object in objects {
        connectors.push(object.connector.as_str());
        types.push(object.object_type.as_str());
        ids.push(object.external_id.as_str());
    }
    (connectors, types, ids)
}

/// Loads the connector objects `objects` that exist, locking their rows.
pub async fn lock_connector_objects(
    conn: &mut PgConnection,
    objects: &BTreeSet<ConnectorObjectRef>,
) -> Result<HashMap<ConnectorObjectRef, StoredConnectorObject>, StoreError> {
    if objects.is_empty() {
        return Ok(HashMap::new());
    }
    let (connectors, types, ids) = key_columns(objects);
    let rows = sqlx::query(
        // A lateral index probe per key, in key order (the caller's set is sorted), so that
        // the plan stays a nested loop over the primary key however large the table grows
        // and concurrent batches lock in one order.
        "SELECT c.connector, c.object_type, c.external_id, c.attributes, c.join_state, \
                c.last_event, c.last_event_time, c.last_sequence \
         FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY \
           AS k(connector, object_type, external_id, n) \
         CROSS JOIN LATERAL ( \
           SELECT * FROM connector_objects c \
           WHERE c.connector = k.connector AND c.object_type = k.object_type \
             AND c.external_id = k.external_id \
           FOR UPDATE) c \
         ORDER BY k.n",
    )
    .bind(&connectors)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("loading connector objects"))?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let object = object_ref(row.get(0), row.get(1), row.get(2))?;
        let attributes: Json = row.get(3);
        let join: Json = row.get(4);
        let last_event: Uuid = row.get(5);
        let last_sequence: i64 = row.get(7);
        found.insert(
            object,
            StoredConnectorObject {
                attributes: attributes_from_json(&attributes)
                    .map_err(|e| malformed("connector object attributes")(e.to_string()))?,
                join: serde_json::from_value(join)
                    .map_err(|e| malformed("connector object join state")(e.to_string()))?,
                last_event: EventId::from_uuid(last_event),
                last_event_time: row.get(6),
                last_sequence: u64::try_from(last_sequence).unwrap_or(0),
            },
        );
    }
    Ok(found)
}

/// One connector object to write.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorObjectWrite<'a> {
    /// The object.
    pub object: &'a ConnectorObjectRef,
    /// Its state after the change.
    pub stored: &'a StoredConnectorObject,
    /// The rule version that decided it.
    pub rule_version: u64,
}

/// Inserts or replaces connector objects (each key at most once per call).
pub async fn save_connector_objects(
    conn: &mut PgConnection,
    writes: &[ConnectorObjectWrite<'_>],
) -> Result<(), StoreError> {
    if writes.is_empty() {
        return Ok(());
    }
    let (connectors, types, ids) = key_columns(writes.iter().map(|w| w.object));
    let n = writes.len();
    let mut attributes = Vec::with_capacity(n);
    let mut states = Vec::with_capacity(n);
    let mut joins = Vec::with_capacity(n);
    let mut mesh_objects = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let mut times = Vec::with_capacity(n);
    let mut sequences = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    for write in writes {
        let stored = write.stored;
        attributes.push(attributes_to_json(&stored.attributes));
        states.push(state_name(&stored.join));
        joins.push(
            serde_json::to_value(&stored.join)
                .map_err(|e| malformed("connector object join state")(e.to_string()))?,
        );
        mesh_objects.push(match &stored.join {
            JoinState::Joined { mesh_object, .. } => Some(mesh_object.as_uuid()),
            _ => None,
        });
        events.push(stored.last_event.as_uuid());
        times.push(stored.last_event_time);
        sequences.push(i64::try_from(stored.last_sequence).unwrap_or(i64::MAX));
        versions.push(i64::try_from(write.rule_version).unwrap_or(i64::MAX));
    }
    sqlx::query(
        "INSERT INTO connector_objects (connector, object_type, external_id, attributes, state, \
           join_state, mesh_object, last_event, last_event_time, last_sequence, rule_version) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::text[], \
           $6::jsonb[], $7::uuid[], $8::uuid[], $9::timestamptz[], $10::bigint[], $11::bigint[]) \
         ON CONFLICT (connector, object_type, external_id) DO UPDATE SET \
           attributes = excluded.attributes, state = excluded.state, \
           join_state = excluded.join_state, mesh_object = excluded.mesh_object, \
           last_event = excluded.last_event, last_event_time = excluded.last_event_time, \
           last_sequence = excluded.last_sequence, rule_version = excluded.rule_version, \
           updated_at = now()",
    )
    .bind(&connectors)
    .bind(&types)
    .bind(&ids)
    .bind(&attributes)
    .bind(&states)
    .bind(&joins)
    .bind(&mesh_objects)
    .bind(&events)
    .bind(&times)
    .bind(&sequences)
    .bind(&versions)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("saving connector objects"))?;
    Ok(())
}

/// One value an unjoined connector object's join rule reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JoinValue {
    /// The object.
    pub object: ConnectorObjectRef,
    /// The raw attribute's folded name.
    pub source_attribute: String,
    /// Its join key.
    pub key: String,
}

/// Replaces the join values of `objects` with `values` (which name only those objects).
pub async fn replace_join_values(
    conn: &mut PgConnection,
    objects: &BTreeSet<ConnectorObjectRef>,
    values: &[JoinValue],
) -> Result<(), StoreError> {
    if !objects.is_empty() {
        let (connectors, types, ids) = key_columns(objects);
        sqlx::query(
            "DELETE FROM connector_object_join_values WHERE ctid = ANY(ARRAY( \
               SELECT v.ctid FROM unnest($1::text[], $2::text[], $3::text[]) \
                 AS k(connector, object_type, external_id) \
               CROSS JOIN LATERAL ( \
                 SELECT ctid FROM connector_object_join_values v \
                 WHERE v.connector = k.connector AND v.object_type = k.object_type \
                   AND v.external_id = k.external_id) v))",
        )
        .bind(&connectors)
        .bind(&types)
        .bind(&ids)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("clearing join values"))?;
    }
    if values.is_empty() {
        return Ok(());
    }
    let (connectors, types, ids) = key_columns(values.iter().map(|v| &v.object));
    let attributes: Vec<&str> = values.iter().map(|v| v.source_attribute.as_str()).collect();
    let keys: Vec<&str> = values.iter().map(|v| v.key.as_str()).collect();
    sqlx::query(
        "INSERT INTO connector_object_join_values \
           (connector, object_type, external_id, source_attribute, join_key) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(&connectors)
    .bind(&types)
    .bind(&ids)
    .bind(&attributes)
    .bind(&keys)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("saving join values"))?;
    Ok(())
}

/// Finds the unjoined connector objects that the retry searches `queries` name, each with
/// the index of the first query that found it, in that order.
pub async fn find_unjoined(
    conn: &mut PgConnection,
    queries: &[RetryQuery],
) -> Result<Vec<(ConnectorObjectRef, usize)>, StoreError> {
    if queries.is_empty() {
        return Ok(Vec::new());
    }
    let connectors: Vec<&str> = queries.iter().map(|q| q.connector.as_str()).collect();
    let types: Vec<&str> = queries.iter().map(|q| q.object_type.as_str()).collect();
    let attributes: Vec<&str> = queries.iter().map(|q| q.source_attribute.key()).collect();
    let keys: Vec<&str> = queries.iter().map(|q| q.key.as_str()).collect();
    let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
        "SELECT v.connector, v.object_type, v.external_id, min(q.n) AS first \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY \
           AS q(c, t, a, k, n) \
         CROSS JOIN LATERAL ( \
           SELECT connector, object_type, external_id FROM connector_object_join_values v \
           WHERE v.connector = q.c AND v.object_type = q.t AND v.source_attribute = q.a \
             AND v.join_key = q.k) v \
         GROUP BY v.connector, v.object_type, v.external_id \
         ORDER BY first, v.connector, v.object_type, v.external_id",
    )
    .bind(&connectors)
    .bind(&types)
    .bind(&attributes)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("searching disconnectors"))?;
    rows.iter()
        .map(|(c, t, e, n)| {
            Ok((
                object_ref(c, t, e)?,
                usize::try_from(n - 1).unwrap_or_default(),
            ))
        })
        .collect()
}

/// Answers correlation's searches (attribute matches and anchors) in two queries.
pub async fn join_lookups(
    conn: &mut PgConnection,
    queries: &[JoinQuery],
) -> Result<JoinLookups, StoreError> {
    let mut lookups = JoinLookups::new();
    if queries.is_empty() {
        return Ok(lookups);
    }
    let types: Vec<&str> = queries.iter().map(|q| q.object_type.as_str()).collect();
    let names: Vec<&str> = queries.iter().map(|q| q.target_attribute.key()).collect();
    let keys: Vec<&str> = queries.iter().map(|q| q.key.as_str()).collect();
    let rows: Vec<(String, String, String, Uuid)> = sqlx::query_as(
        "SELECT DISTINCT q.object_type, q.name, q.key, a.mesh_object \
         FROM unnest($1::text[], $2::text[], $3::text[]) AS q(object_type, name, key) \
         CROSS JOIN LATERAL ( \
           SELECT mesh_object FROM mesh_attributes a \
           WHERE a.object_type = q.object_type AND a.name = q.name AND a.join_key = q.key) a",
    )
    .bind(&types)
    .bind(&names)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("searching mesh attributes"))?;
    let mut matches: BTreeMap<(String, String, String), BTreeSet<MeshObjectId>> = BTreeMap::new();
    for (object_type, name, key, id) in rows {
        matches
            .entry((object_type, name, key))
            .or_default()
            .insert(MeshObjectId::from_uuid(id));
    }
    for ((object_type, name, key), ids) in matches {
        let object_type = ObjectType::parse(&object_type)
            .map_err(|e| malformed("mesh attribute type")(e.to_string()))?;
        let name = AttributeName::parse(&name)
            .map_err(|e| malformed("mesh attribute name")(e.to_string()))?;
        lookups.insert_attribute_matches(object_type, &name, key, ids);
    }
    let anchors: Vec<(String, String, Uuid)> = sqlx::query_as(
        "SELECT DISTINCT q.object_type, q.key, m.id \
         FROM unnest($1::text[], $2::text[]) AS q(object_type, key) \
         CROSS JOIN LATERAL ( \
           SELECT id FROM mesh_objects m \
           WHERE m.object_type = q.object_type AND m.anchor = q.key \
             AND m.anchor IS NOT NULL) m",
    )
    .bind(&types)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("searching mesh object anchors"))?;
    for (object_type, anchor, id) in anchors {
        let object_type = ObjectType::parse(&object_type)
            .map_err(|e| malformed("mesh object type")(e.to_string()))?;
        lookups.insert_anchor(object_type, anchor, MeshObjectId::from_uuid(id));
    }
    Ok(lookups)
}

/// The store as the engine's search ports see it, for a known set of searches: the answers are
/// loaded in a few queries ([`StoreDirectory::load`]) and then served synchronously, as the
/// stages need them. A search not loaded finds nothing.
#[derive(Debug, Clone, Default)]
pub struct StoreDirectory {
    lookups: JoinLookups,
    unjoined: BTreeMap<(ConnectorId, ObjectType, String, String), BTreeSet<ConnectorObjectRef>>,
}

impl StoreDirectory {
    /// Loads the answers to `joins` (mesh searches) and `retries` (disconnector searches).
    pub async fn load(
        conn: &mut PgConnection,
        joins: &[JoinQuery],
        retries: &[RetryQuery],
    ) -> Result<Self, StoreError> {
        let lookups = join_lookups(&mut *conn, joins).await?;
        let mut unjoined: BTreeMap<_, BTreeSet<ConnectorObjectRef>> = BTreeMap::new();
        // find_unjoined names the first query that found an object; ask one query at a time
        // so that every query gets all its objects.
        for query in retries {
            for (object, _) in find_unjoined(&mut *conn, std::slice::from_ref(query)).await? {
                unjoined
                    .entry((
                        query.connector.clone(),
                        query.object_type.clone(),
                        query.source_attribute.key().to_owned(),
                        query.key.clone(),
                    ))
                    .or_default()
                    .insert(object);
            }
        }
        Ok(Self { lookups, unjoined })
    }
}

impl MeshDirectory for StoreDirectory {
    fn find_by_attribute(
        &self,
        object_type: &ObjectType,
        attribute: &AttributeName,
        key: &str,
    ) -> Found {
        self.lookups.find_by_attribute(object_type, attribute, key)
    }

    fn find_by_anchor(&self, object_type: &ObjectType, key: &str) -> Option<MeshObjectId> {
        self.lookups.find_by_anchor(object_type, key)
    }
}

impl DisconnectorDirectory for StoreDirectory {
    fn find_unjoined(
        &self,
        connector: &ConnectorId,
        object_type: &ObjectType,
        source_attribute: &AttributeName,
        key: &str,
    ) -> BTreeSet<ConnectorObjectRef> {
        self.unjoined
            .get(&(
                connector.clone(),
                object_type.clone(),
                source_attribute.key().to_owned(),
                key.to_owned(),
            ))
            .cloned()
            .unwrap_or_default()
    }
}

/// Inserts mesh objects projected by anchor rules; one that exists already (the same anchor,
/// hence the same derived id) is left as it is.
pub async fn insert_mesh_objects(
    conn: &mut PgConnection,
    objects: &[NewMeshObject],
) -> Result<(), StoreError> {
    if objects.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = objects.iter().map(|o| o.id.as_uuid()).collect();
    let types: Vec<&str> = objects.iter().map(|o| o.object_type.as_str()).collect();
    let anchors: Vec<&str> = objects.iter().map(|o| o.anchor.as_str()).collect();
    let attributes: Vec<&str> = objects
        .iter()
        .map(|o| o.anchor_attribute.as_str())
        .collect();
    sqlx::query(
        "INSERT INTO mesh_objects (id, object_type, anchor, anchor_attribute) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) \
         ORDER BY 1 ON CONFLICT DO NOTHING",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&anchors)
    .bind(&attributes)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("inserting mesh objects"))?;
    Ok(())
}

/// Returns the anchors of mesh objects `ids` (those that have one).
pub async fn anchors(
    conn: &mut PgConnection,
    ids: &[MeshObjectId],
) -> Result<HashMap<MeshObjectId, String>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT id, anchor FROM mesh_objects WHERE id = ANY($1) AND anchor IS NOT NULL",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("reading mesh object anchors"))?;
    Ok(rows
        .into_iter()
        .map(|(id, anchor)| (MeshObjectId::from_uuid(id), anchor))
        .collect())
}

pub(crate) fn lifecycle_from(name: &str) -> Result<LifecycleState, StoreError> {
    Ok(match name {
        "active" => LifecycleState::Active,
        "disabled" => LifecycleState::Disabled,
        "leaver" => LifecycleState::Leaver,
        "deleted" => LifecycleState::Deleted,
        other => return Err(malformed("mesh object lifecycle")(other.to_owned())),
    })
}

/// Up to `limit` ids of resolved mesh objects (version above 0) greater than `after`, in id
/// order: a rule-change sweep's next page.
pub async fn mesh_object_ids_after<'c>(
    executor: impl sqlx::PgExecutor<'c>,
    after: Option<MeshObjectId>,
    limit: i64,
) -> Result<Vec<MeshObjectId>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM mesh_objects WHERE ($1::uuid IS NULL OR id > $1) AND version > 0 \
         ORDER BY id LIMIT $2",
    )
    .bind(after.map(|id| id.as_uuid()))
    .bind(limit)
    .fetch_all(executor)
    .await
    .map_err(StoreError::query("listing mesh objects"))?;
    Ok(ids.into_iter().map(MeshObjectId::from_uuid).collect())
}

/// Loads mesh objects `ids`, locking their rows.
pub async fn lock_mesh_objects(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashMap<MeshObjectId, MeshObjectState>, StoreError> {
    load_mesh_objects(
        conn,
        ids,
        "SELECT id, object_type, anchor, version, lifecycle, authority_seen, attributes, lineage \
         FROM mesh_objects WHERE id = ANY($1) ORDER BY id FOR UPDATE",
    )
    .await
}

/// Reads mesh objects `ids` without locking them: for readers (the query service's queries
/// and previews) that must never make the pipeline wait.
pub async fn read_mesh_objects(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashMap<MeshObjectId, MeshObjectState>, StoreError> {
    load_mesh_objects(
        conn,
        ids,
        "SELECT id, object_type, anchor, version, lifecycle, authority_seen, attributes, lineage \
         FROM mesh_objects WHERE id = ANY($1)",
    )
    .await
}

async fn load_mesh_objects(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
    sql: &'static str,
) -> Result<HashMap<MeshObjectId, MeshObjectState>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows = sqlx::query(sql)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::query("loading mesh objects"))?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let state = mesh_object_state(&row)?;
        found.insert(state.id, state);
    }
    Ok(found)
}

/// Reads a mesh object from a row whose first columns are `id, object_type, anchor, version,
/// lifecycle, authority_seen, attributes, lineage`.
pub(crate) fn mesh_object_state(row: &PgRow) -> Result<MeshObjectState, StoreError> {
    let object_type: String = row.get(1);
    let version: i64 = row.get(3);
    let lifecycle: String = row.get(4);
    let attributes: Json = row.get(6);
    let lineage: Json = row.get(7);
    let lineage: LineageMap = serde_json::from_value(lineage)
        .map_err(|e| malformed("mesh object lineage")(e.to_string()))?;
    Ok(MeshObjectState {
        id: MeshObjectId::from_uuid(row.get(0)),
        object_type: ObjectType::parse(&object_type)
            .map_err(|e| malformed("mesh object type")(e.to_string()))?,
        anchor: row.get(2),
        version: u64::try_from(version).unwrap_or(0),
        lifecycle: lifecycle_from(&lifecycle)?,
        authority_seen: row.get(5),
        attributes: attributes_from_json(&attributes)
            .map_err(|e| malformed("mesh object attributes")(e.to_string()))?,
        lineage,
    })
}

/// Writes the resolved state of mesh objects (version, lifecycle, attributes, lineage) and the
/// rule version they were resolved under.
pub async fn save_mesh_objects(
    conn: &mut PgConnection,
    states: &[&MeshObjectState],
    rule_version: u64,
) -> Result<(), StoreError> {
    if states.is_empty() {
        return Ok(());
    }
    let n = states.len();
    let mut ids = Vec::with_capacity(n);
    let mut versions = Vec::with_capacity(n);
    let mut lifecycles = Vec::with_capacity(n);
    let mut authority = Vec::with_capacity(n);
    let mut attributes = Vec::with_capacity(n);
    let mut lineages = Vec::with_capacity(n);
    for state in states {
        ids.push(state.id.as_uuid());
        versions.push(i64::try_from(state.version).unwrap_or(i64::MAX));
        lifecycles.push(state.lifecycle.as_str());
        authority.push(state.authority_seen);
        attributes.push(attributes_to_json(&state.attributes));
        lineages.push(
            serde_json::to_value(&state.lineage)
                .map_err(|e| malformed("mesh object lineage")(e.to_string()))?,
        );
    }
    sqlx::query(
        "UPDATE mesh_objects m SET version = t.version, lifecycle = t.lifecycle, \
           authority_seen = t.authority_seen, attributes = t.attributes, lineage = t.lineage, \
           rule_version = $7, updated_at = now() \
         FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bool[], $5::jsonb[], $6::jsonb[]) \
           AS t(id, version, lifecycle, authority_seen, attributes, lineage) \
         WHERE m.id = t.id AND m.id = ANY($1)",
    )
    .bind(&ids)
    .bind(&versions)
    .bind(&lifecycles)
    .bind(&authority)
    .bind(&attributes)
    .bind(&lineages)
    .bind(i64::try_from(rule_version).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("saving mesh objects"))?;
    Ok(())
}

/// One change to the join-search index of mesh attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeIndexChange {
    /// The mesh object.
    pub mesh_object: MeshObjectId,
    /// Its type.
    pub object_type: ObjectType,
    /// The attribute's folded name.
    pub name: String,
    /// Its join key now; `None` removes it from the index.
    pub key: Option<String>,
}

/// Applies changes to `mesh_attributes` (each (mesh object, name) at most once per call).
pub async fn index_mesh_attributes(
    conn: &mut PgConnection,
    changes: &[AttributeIndexChange],
) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = changes.iter().map(|c| c.mesh_object.as_uuid()).collect();
    let names: Vec<&str> = changes.iter().map(|c| c.name.as_str()).collect();
    sqlx::query(
        "DELETE FROM mesh_attributes a WHERE a.mesh_object = ANY($1) \
           AND (a.mesh_object, a.name) IN (SELECT * FROM unnest($1::uuid[], $2::text[]))",
    )
    .bind(&ids)
    .bind(&names)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("clearing mesh attribute index rows"))?;
    let set: Vec<&AttributeIndexChange> = changes.iter().filter(|c| c.key.is_some()).collect();
    if set.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = set.iter().map(|c| c.mesh_object.as_uuid()).collect();
    let types: Vec<&str> = set.iter().map(|c| c.object_type.as_str()).collect();
    let names: Vec<&str> = set.iter().map(|c| c.name.as_str()).collect();
    let keys: Vec<&str> = set.iter().filter_map(|c| c.key.as_deref()).collect();
    sqlx::query(
        "INSERT INTO mesh_attributes (mesh_object, object_type, name, join_key) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&names)
    .bind(&keys)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("indexing mesh attributes"))?;
    Ok(())
}

/// Flow's record of one connector object joined (or formerly joined) to a mesh object.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLink {
    /// False for a withdrawal tombstone.
    pub linked: bool,
    /// The raw attributes its contributions come from.
    pub attributes: Attributes,
    /// The change event they came from.
    pub event: EventId,
    /// That event's source time.
    pub event_time: DateTime<Utc>,
    /// That event's MESH_CHANGES stream sequence.
    pub source_sequence: u64,
}

/// Loads every link of mesh objects `ids`, tombstones included.
pub async fn links(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashMap<MeshObjectId, BTreeMap<ConnectorObjectRef, StoredLink>>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows = sqlx::query(
        "SELECT mesh_object, connector, object_type, external_id, linked, attributes, event_id, \
                event_time, source_sequence \
         FROM mesh_links WHERE mesh_object = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("loading mesh links"))?;
    let mut found: HashMap<MeshObjectId, BTreeMap<ConnectorObjectRef, StoredLink>> = HashMap::new();
    for row in rows {
        let id = MeshObjectId::from_uuid(row.get(0));
        let object = object_ref(row.get(1), row.get(2), row.get(3))?;
        let attributes: Json = row.get(5);
        let sequence: i64 = row.get(8);
        found.entry(id).or_default().insert(
            object,
            StoredLink {
                linked: row.get(4),
                attributes: attributes_from_json(&attributes)
                    .map_err(|e| malformed("mesh link attributes")(e.to_string()))?,
                event: EventId::from_uuid(row.get(6)),
                event_time: row.get(7),
                source_sequence: u64::try_from(sequence).unwrap_or(0),
            },
        );
    }
    Ok(found)
}

/// Inserts or replaces links (each key at most once per call).
pub async fn save_links(
    conn: &mut PgConnection,
    links: &[(MeshObjectId, &ConnectorObjectRef, &StoredLink)],
) -> Result<(), StoreError> {
    if links.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = links.iter().map(|(id, _, _)| id.as_uuid()).collect();
    let (connectors, types, external_ids) = key_columns(links.iter().map(|(_, o, _)| *o));
    let linked: Vec<bool> = links.iter().map(|(_, _, l)| l.linked).collect();
    let attributes: Vec<Json> = links
        .iter()
        .map(|(_, _, l)| attributes_to_json(&l.attributes))
        .collect();
    let events: Vec<Uuid> = links.iter().map(|(_, _, l)| l.event.as_uuid()).collect();
    let times: Vec<DateTime<Utc>> = links.iter().map(|(_, _, l)| l.event_time).collect();
    let sequences: Vec<i64> = links
        .iter()
        .map(|(_, _, l)| i64::try_from(l.source_sequence).unwrap_or(i64::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO mesh_links (mesh_object, connector, object_type, external_id, linked, \
           attributes, event_id, event_time, source_sequence) \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], \
           $6::jsonb[], $7::uuid[], $8::timestamptz[], $9::bigint[]) \
         ON CONFLICT (mesh_object, connector, object_type, external_id) DO UPDATE SET \
           linked = excluded.linked, attributes = excluded.attributes, \
           event_id = excluded.event_id, event_time = excluded.event_time, \
           source_sequence = excluded.source_sequence",
    )
    .bind(&ids)
    .bind(&connectors)
    .bind(&types)
    .bind(&external_ids)
    .bind(&linked)
    .bind(&attributes)
    .bind(&events)
    .bind(&times)
    .bind(&sequences)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("saving mesh links"))?;
    Ok(())
}

/// Loads the overrides of mesh objects `ids`.
pub async fn overrides(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashMap<MeshObjectId, BTreeMap<AttributeName, Override>>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows: Vec<(Uuid, String, Json, String)> = sqlx::query_as(
        "SELECT mesh_object, name, value, reason FROM mesh_overrides WHERE mesh_object = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("loading overrides"))?;
    let mut found: HashMap<MeshObjectId, BTreeMap<AttributeName, Override>> = HashMap::new();
    for (id, name, value, reason) in rows {
        let name = AttributeName::parse(&name)
            .map_err(|e| malformed("override attribute")(e.to_string()))?;
        let value =
            value_from_json(&value).map_err(|e| malformed("override value")(e.to_string()))?;
        found
            .entry(MeshObjectId::from_uuid(id))
            .or_default()
            .insert(name, Override { value, reason });
    }
    Ok(found)
}

/// Every connector object in the review queue (a disconnector or an ambiguous match not
/// ignored since its last change) with the event that queued it.
pub async fn review_keys(
    pool: &sqlx::PgPool,
) -> Result<Vec<(ConnectorObjectRef, EventId)>, StoreError> {
    let rows: Vec<(String, String, String, Uuid)> = sqlx::query_as(concat!(
        "SELECT connector, object_type, external_id, last_event FROM connector_objects \
             WHERE ",
        in_review_queue!()
    ))
    .fetch_all(pool)
    .await
    .map_err(StoreError::query("listing the review queue"))?;
    rows.into_iter()
        .map(|(c, t, e, event)| Ok((object_ref(&c, &t, &e)?, EventId::from_uuid(event))))
        .collect()
}

/// Takes a connector object out of the review queue until its next change (the change at
/// `sequence` is the one ignored).
pub async fn ignore_review(
    conn: &mut PgConnection,
    object: &ConnectorObjectRef,
    sequence: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE connector_objects SET review_ignored_sequence = $4, updated_at = now() \
         WHERE connector = $1 AND object_type = $2 AND external_id = $3",
    )
    .bind(object.connector.as_str())
    .bind(object.object_type.as_str())
    .bind(object.external_id.as_str())
    .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(StoreError::query("ignoring a review entry"))
}

/// The type of mesh object `id`, if it exists.
pub async fn mesh_object_type(
    conn: &mut PgConnection,
    id: MeshObjectId,
) -> Result<Option<String>, StoreError> {
    sqlx::query_scalar("SELECT object_type FROM mesh_objects WHERE id = $1")
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await
        .map_err(StoreError::query("reading a mesh object's type"))
}

/// Pins attribute `name` of mesh object `id` to `value` (replacing an earlier pin).
pub async fn set_override(
    conn: &mut PgConnection,
    id: MeshObjectId,
    name: &AttributeName,
    value: &mesh_model::Value,
    reason: &str,
    actor: &str,
) -> Result<(), StoreError> {
    // Names are case-insensitive: a pin spelled differently replaces the earlier one.
    remove_override(&mut *conn, id, name).await?;
    sqlx::query(
        "INSERT INTO mesh_overrides (mesh_object, name, value, reason, actor) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id.as_uuid())
    .bind(name.as_str())
    .bind(crate::json::value_to_json(value))
    .bind(reason)
    .bind(actor)
    .execute(conn)
    .await
    .map(|_| ())
    .map_err(StoreError::query("setting an override"))
}

/// Removes the pin of attribute `name` of mesh object `id`; false when there was none.
pub async fn remove_override(
    conn: &mut PgConnection,
    id: MeshObjectId,
    name: &AttributeName,
) -> Result<bool, StoreError> {
    sqlx::query("DELETE FROM mesh_overrides WHERE mesh_object = $1 AND lower(name) = lower($2)")
        .bind(id.as_uuid())
        .bind(name.as_str())
        .execute(conn)
        .await
        .map(|r| r.rows_affected() > 0)
        .map_err(StoreError::query("removing an override"))
}

/// Up to `limit` waiting connector objects (disconnectors and ambiguous matches) after
/// `after` in key order: a rule-change sweep's next page.
pub async fn unjoined_after(
    pool: &sqlx::PgPool,
    after: Option<&ConnectorObjectRef>,
    limit: i64,
) -> Result<Vec<ConnectorObjectRef>, StoreError> {
    let (c, t, e) = after.map_or(("", "", ""), |o| {
        (
            o.connector.as_str(),
            o.object_type.as_str(),
            o.external_id.as_str(),
        )
    });
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        r#"SELECT connector, object_type, external_id FROM connector_objects
           WHERE state IN ('disconnector', 'ambiguous')
             AND (connector COLLATE "C", object_type COLLATE "C", external_id COLLATE "C")
                 > ($1 COLLATE "C", $2 COLLATE "C", $3 COLLATE "C")
           ORDER BY connector COLLATE "C", object_type COLLATE "C", external_id COLLATE "C"
           LIMIT $4"#,
    )
    .bind(c)
    .bind(t)
    .bind(e)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::query("listing waiting connector objects"))?;
    rows.iter().map(|(c, t, e)| object_ref(c, t, e)).collect()
}
