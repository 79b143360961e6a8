//! The projection service's tables: what each target holds per mesh object, the export
//! commands issued and how they ended, and the mass-deletion guard (migration 0004).
//!
//! Export commands of one (mesh object, target) are sent one at a time in issue order: a
//! command is due only when every earlier command of the same pair is confirmed or failed, so a
//! retried create can never land after the update behind it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh_engine::TargetState;
use mesh_model::{
    Attributes, ConnectorId, ExportOperation, LifecycleState, MeshObjectId, ObjectType,
};
use serde_json::Value as Json;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::StoreError;
use crate::json::{attributes_from_json, attributes_to_json};
use crate::pipeline::{lifecycle_from, malformed};

/// What projection reads of a mesh object: flow's resolved state.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// Its type.
    pub object_type: ObjectType,
    /// Its version.
    pub version: u64,
    /// Its lifecycle.
    pub lifecycle: LifecycleState,
    /// Its resolved attributes.
    pub attributes: Attributes,
}

/// Locks the projection rows of `ids` (creating missing ones) in id order and returns the
/// version each was last projected at (`None`: never).
pub async fn lock_objects(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashMap<MeshObjectId, Option<u64>>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    // The no-op update takes the row lock and returns the row whether it was new or not.
    let rows = sqlx::query(
        "INSERT INTO projection_objects (mesh_object, version) \
         SELECT id, -1 FROM unnest($1::uuid[]) AS t(id) ORDER BY id \
         ON CONFLICT (mesh_object) DO UPDATE SET version = projection_objects.version \
         RETURNING mesh_object, version",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("locking projection objects"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let version: i64 = row.get(1);
            (
                MeshObjectId::from_uuid(row.get(0)),
                u64::try_from(version).ok(),
            )
        })
        .collect())
}

/// Records the versions just projected.
pub async fn set_projected(
    conn: &mut PgConnection,
    versions: &[(MeshObjectId, u64)],
) -> Result<(), StoreError> {
    if versions.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = versions.iter().map(|(id, _)| id.as_uuid()).collect();
    let numbers: Vec<i64> = versions
        .iter()
        .map(|(_, v)| i64::try_from(*v).unwrap_or(i64::MAX))
        .collect();
    sqlx::query(
        "UPDATE projection_objects p SET version = t.version \
         FROM unnest($1::uuid[], $2::bigint[]) AS t(id, version) WHERE p.mesh_object = t.id",
    )
    .bind(&ids)
    .bind(&numbers)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("recording projected versions"))?;
    Ok(())
}

/// Reads the resolved state of mesh objects `ids` (without locking flow's rows).
pub async fn subjects(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashMap<MeshObjectId, Subject>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows = sqlx::query(
        "SELECT id, object_type, version, lifecycle, attributes FROM mesh_objects \
         WHERE id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("loading mesh objects to project"))?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        let object_type: String = row.get(1);
        let version: i64 = row.get(2);
        let lifecycle: String = row.get(3);
        let attributes: Json = row.get(4);
        found.insert(
            MeshObjectId::from_uuid(row.get(0)),
            Subject {
                object_type: ObjectType::parse(&object_type)
                    .map_err(|e| malformed("mesh object type")(e.to_string()))?,
                version: u64::try_from(version).unwrap_or(0),
                lifecycle: lifecycle_from(&lifecycle)?,
                attributes: attributes_from_json(&attributes)
                    .map_err(|e| malformed("mesh object attributes")(e.to_string()))?,
            },
        );
    }
    Ok(found)
}

/// Loads what every target holds for mesh objects `ids`.
pub async fn targets(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashMap<MeshObjectId, BTreeMap<ConnectorId, TargetState>>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows = sqlx::query(
        "SELECT mesh_object, target, status, attributes, target_object_id, delete_after \
         FROM projection_targets WHERE mesh_object = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("loading projection targets"))?;
    let mut found: HashMap<MeshObjectId, BTreeMap<ConnectorId, TargetState>> = HashMap::new();
    for row in rows {
        let target: String = row.get(1);
        let target = ConnectorId::parse(&target)
            .map_err(|e| malformed("projection target")(e.to_string()))?;
        let status: String = row.get(2);
        let attributes: Json = row.get(3);
        let attributes = attributes_from_json(&attributes)
            .map_err(|e| malformed("projection target attributes")(e.to_string()))?;
        let target_object_id: Option<String> = row.get(4);
        let state = match status.as_str() {
            "provisioned" => TargetState::Provisioned {
                attributes,
                target_object_id,
            },
            "disabled" => TargetState::Disabled {
                attributes,
                target_object_id,
                delete_after: row.get(5),
            },
            other => return Err(malformed("projection target status")(other.to_owned())),
        };
        found
            .entry(MeshObjectId::from_uuid(row.get(0)))
            .or_default()
            .insert(target, state);
    }
    Ok(found)
}

/// Replaces what targets hold: `Some` upserts, `None` removes the row.
pub async fn save_targets(
    conn: &mut PgConnection,
    changes: &[(MeshObjectId, &ConnectorId, Option<&TargetState>)],
) -> Result<(), StoreError> {
    let mut removed_ids = Vec::new();
    let mut removed_targets = Vec::new();
    let mut ids = Vec::new();
    let mut names = Vec::new();
    let mut statuses = Vec::new();
    let mut attributes = Vec::new();
    let mut object_ids = Vec::new();
    let mut deadlines: Vec<Option<DateTime<Utc>>> = Vec::new();
    for (id, target, state) in changes {
        match state {
            None => {
                removed_ids.push(id.as_uuid());
                removed_targets.push(target.as_str());
            }
            Some(state) => {
                ids.push(id.as_uuid());
                names.push(target.as_str());
                let (status, values, object_id, deadline) = match state {
                    TargetState::Provisioned {
                        attributes,
                        target_object_id,
                    } => ("provisioned", attributes, target_object_id, None),
                    TargetState::Disabled {
                        attributes,
                        target_object_id,
                        delete_after,
                    } => ("disabled", attributes, target_object_id, *delete_after),
                };
                statuses.push(status);
                attributes.push(attributes_to_json(values));
                object_ids.push(object_id.clone());
                deadlines.push(deadline);
            }
        }
    }
    if !removed_ids.is_empty() {
        sqlx::query(
            "DELETE FROM projection_targets p USING unnest($1::uuid[], $2::text[]) AS t(id, target) \
             WHERE p.mesh_object = t.id AND p.target = t.target",
        )
        .bind(&removed_ids)
        .bind(&removed_targets)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("removing projection targets"))?;
    }
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO projection_targets \
               (mesh_object, target, status, attributes, target_object_id, delete_after) \
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::text[], \
               $6::timestamptz[]) \
             ON CONFLICT (mesh_object, target) DO UPDATE SET status = excluded.status, \
               attributes = excluded.attributes, \
               target_object_id = COALESCE(excluded.target_object_id, \
                 projection_targets.target_object_id), \
               delete_after = excluded.delete_after",
        )
        .bind(&ids)
        .bind(&names)
        .bind(&statuses)
        .bind(&attributes)
        .bind(&object_ids)
        .bind(&deadlines)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("saving projection targets"))?;
    }
    Ok(())
}

/// Mesh objects with a disabled target whose grace period ended by `now`, oldest first.
pub async fn due_deletions(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<MeshObjectId>, StoreError> {
    let rows = sqlx::query(
        "SELECT mesh_object FROM projection_targets WHERE delete_after <= $1 \
         GROUP BY mesh_object ORDER BY min(delete_after) LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::query("finding due deletions"))?;
    Ok(rows
        .into_iter()
        .map(|row| MeshObjectId::from_uuid(row.get(0)))
        .collect())
}

/// Where an export stands (`exports.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ExportState {
    /// Waiting to be sent (at `next_attempt_at`, after the commands before it).
    Queued,
    /// A deprovision the mass-deletion guard holds until approval.
    Held,
    /// Sent; waiting for its result.
    Sent,
    /// Applied (or found already applied) by the target.
    Confirmed,
    /// Failed for good and dead-lettered.
    Failed,
}

impl ExportState {
    /// Every state with its stored name.
    pub const ALL: [(Self, &'static str); 5] = [
        (Self::Queued, "queued"),
        (Self::Held, "held"),
        (Self::Sent, "sent"),
        (Self::Confirmed, "confirmed"),
        (Self::Failed, "failed"),
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map_or("queued", |(_, n)| n)
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(s, _)| *s)
    }
}

/// Returns true for the operations the mass-deletion guard counts.
pub fn is_deprovision(operation: ExportOperation) -> bool {
    matches!(
        operation,
        ExportOperation::Disable | ExportOperation::Delete
    )
}

/// An export command to record.
#[derive(Debug, Clone)]
pub struct NewExport<'a> {
    /// The command's idempotency key.
    pub idempotency_key: &'a str,
    /// The mesh object.
    pub mesh_object: MeshObjectId,
    /// The target connector.
    pub target: &'a str,
    /// The operation.
    pub operation: ExportOperation,
    /// The mesh object version.
    pub mesh_object_version: u64,
    /// The projection rule.
    pub rule: &'a str,
    /// The encoded command.
    pub command: Vec<u8>,
    /// Queued, held, or sent (sent by the projection batch itself, after its commit, as
    /// attempt 1: nothing else of its mesh object and target was open).
    pub state: ExportState,
    /// The command's issued_at.
    pub issued_at: DateTime<Utc>,
    /// The W3C traceparent of the projection that issued it.
    pub traceparent: Option<String>,
}

/// Records export commands (a key recorded before is left as it is); returns the keys
/// recorded now. A command recorded `sent` counts its first attempt.
pub async fn insert_exports(
    conn: &mut PgConnection,
    exports: &[NewExport<'_>],
) -> Result<HashSet<String>, StoreError> {
    if exports.is_empty() {
        return Ok(HashSet::new());
    }
    let keys: Vec<&str> = exports.iter().map(|e| e.idempotency_key).collect();
    let ids: Vec<Uuid> = exports.iter().map(|e| e.mesh_object.as_uuid()).collect();
    let targets: Vec<&str> = exports.iter().map(|e| e.target).collect();
    let operations: Vec<&str> = exports.iter().map(|e| e.operation.as_str()).collect();
    let versions: Vec<i64> = exports
        .iter()
        .map(|e| i64::try_from(e.mesh_object_version).unwrap_or(i64::MAX))
        .collect();
    let rules: Vec<&str> = exports.iter().map(|e| e.rule).collect();
    let commands: Vec<&[u8]> = exports.iter().map(|e| e.command.as_slice()).collect();
    let states: Vec<&str> = exports.iter().map(|e| e.state.as_str()).collect();
    let issued: Vec<DateTime<Utc>> = exports.iter().map(|e| e.issued_at).collect();
    let traces: Vec<Option<&str>> = exports.iter().map(|e| e.traceparent.as_deref()).collect();
    // WITH ORDINALITY keeps the batch's order in `seq`.
    sqlx::query_scalar(
        "INSERT INTO exports (idempotency_key, mesh_object, target, operation, \
           mesh_object_version, rule, command, status, attempts, issued_at, traceparent, \
           next_attempt_at) \
         SELECT key, id, target, operation, version, rule, command, status, \
           CASE WHEN status = 'sent' THEN 1 ELSE 0 END, issued, trace, now() \
         FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], \
           $7::bytea[], $8::text[], $9::timestamptz[], $10::text[]) WITH ORDINALITY \
           AS t(key, id, target, operation, version, rule, command, status, issued, trace, n) \
         ORDER BY n \
         ON CONFLICT (idempotency_key) DO NOTHING \
         RETURNING idempotency_key",
    )
    .bind(&keys)
    .bind(&ids)
    .bind(&targets)
    .bind(&operations)
    .bind(&versions)
    .bind(&rules)
    .bind(&commands)
    .bind(&states)
    .bind(&issued)
    .bind(&traces)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("recording export commands"))
    .map(|keys: Vec<String>| keys.into_iter().collect())
}

/// The (mesh object, target) pairs of mesh objects `ids` that have a command open (queued,
/// held or sent): a new command of such a pair waits its turn.
pub async fn open_pairs(
    conn: &mut PgConnection,
    ids: &BTreeSet<MeshObjectId>,
) -> Result<HashSet<(MeshObjectId, String)>, StoreError> {
    let ids: Vec<Uuid> = ids.iter().map(MeshObjectId::as_uuid).collect();
    let rows: Vec<(Uuid, String)> = sqlx::query_as(
        "SELECT DISTINCT mesh_object, target FROM exports \
         WHERE mesh_object = ANY($1) AND status IN ('queued', 'held', 'sent')",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("finding open export commands"))?;
    Ok(rows
        .into_iter()
        .map(|(id, target)| (MeshObjectId::from_uuid(id), target))
        .collect())
}

/// Locks the guard row of `target` and tells whether it holds, and how many deprovisions of
/// the target count towards its threshold (issued within `window` and since the last approval).
pub async fn guard(
    conn: &mut PgConnection,
    target: &str,
    window: Duration,
) -> Result<(bool, i64), StoreError> {
    let window_secs = window.as_secs_f64();
    let row = sqlx::query(
        "WITH g AS ( \
           INSERT INTO export_guards (target) VALUES ($1) \
           ON CONFLICT (target) DO UPDATE SET held = export_guards.held \
           RETURNING held, approved_at) \
         SELECT g.held, (SELECT count(*) FROM exports e WHERE e.target = $1 \
             AND e.operation IN ('disable', 'delete') \
             AND e.created_at > now() - make_interval(secs => $2) \
             AND (g.approved_at IS NULL OR e.created_at > g.approved_at)) \
         FROM g",
    )
    .bind(target)
    .bind(window_secs)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::query("reading the mass-deletion guard"))?;
    Ok((row.get(0), row.get(1)))
}

/// Trips the guard of `target`.
pub async fn hold(conn: &mut PgConnection, target: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE export_guards SET held = true, held_since = now() WHERE target = $1 AND NOT held",
    )
    .bind(target)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("holding a target's deprovisions"))?;
    Ok(())
}

/// Releases the guard of `target`: its held deprovisions are queued and the threshold counts
/// afresh from now. Returns how many commands were released, or `None` when the guard was
/// not holding.
pub async fn approve(pool: &PgPool, target: &str) -> Result<Option<u64>, StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::query("approving held deprovisions"))?;
    let released = approve_in(&mut tx, target).await?;
    tx.commit()
        .await
        .map_err(StoreError::query("approving held deprovisions"))?;
    Ok(released)
}

/// [`approve`] inside the caller's transaction (which audits it), waking the dispatchers at
/// its commit.
pub async fn approve_in(tx: &mut PgConnection, target: &str) -> Result<Option<u64>, StoreError> {
    let held: Option<bool> =
        sqlx::query_scalar("SELECT held FROM export_guards WHERE target = $1 FOR UPDATE")
            .bind(target)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::query("approving held deprovisions"))?;
    if held != Some(true) {
        return Ok(None);
    }
    let released = sqlx::query(
        "UPDATE exports SET status = 'queued', next_attempt_at = now(), updated_at = now() \
         WHERE target = $1 AND status = 'held'",
    )
    .bind(target)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("approving held deprovisions"))?
    .rows_affected();
    sqlx::query(
        "UPDATE export_guards SET held = false, held_since = NULL, approved_at = now() \
         WHERE target = $1",
    )
    .bind(target)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("approving held deprovisions"))?;
    sqlx::query("SELECT pg_notify('mesh_exports', $1)")
        .bind(target)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("approving held deprovisions"))?;
    Ok(Some(released))
}

/// The notification channel that wakes export dispatchers (`approve` sends on it).
pub const NOTIFY_CHANNEL: &str = "mesh_exports";

/// An export command ready to send.
#[derive(Debug, Clone)]
pub struct DueExport {
    /// Its row.
    pub seq: i64,
    /// The encoded command as issued.
    pub command: Vec<u8>,
    /// Sends so far.
    pub attempts: u32,
    /// The target object id learned since it was issued, if any.
    pub target_object_id: Option<String>,
    /// The W3C traceparent of the projection that issued it.
    pub traceparent: Option<String>,
}

/// Locks up to `limit` due commands (queued, due, and first among the open commands of their
/// mesh object and target), skipping rows another dispatcher holds.
pub async fn lock_due(conn: &mut PgConnection, limit: i64) -> Result<Vec<DueExport>, StoreError> {
    let rows = sqlx::query(
        "SELECT e.seq, e.command, e.attempts, \
           (SELECT t.target_object_id FROM projection_targets t \
             WHERE t.mesh_object = e.mesh_object AND t.target = e.target), \
           e.traceparent \
         FROM exports e \
         WHERE e.status = 'queued' AND e.next_attempt_at <= now() \
           AND NOT EXISTS (SELECT 1 FROM exports p WHERE p.mesh_object = e.mesh_object \
             AND p.target = e.target AND p.seq < e.seq AND p.status IN ('queued', 'held', 'sent')) \
         ORDER BY e.next_attempt_at, e.seq LIMIT $1 FOR UPDATE OF e SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("finding due exports"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let attempts: i32 = row.get(2);
            DueExport {
                seq: row.get(0),
                command: row.get(1),
                attempts: u32::try_from(attempts).unwrap_or(0),
                target_object_id: row.get(3),
                traceparent: row.get(4),
            }
        })
        .collect())
}

/// Marks commands sent (one more attempt each).
pub async fn mark_sent(conn: &mut PgConnection, seqs: &[i64]) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE exports SET status = 'sent', attempts = attempts + 1, updated_at = now() \
         WHERE seq = ANY($1)",
    )
    .bind(seqs)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("marking exports sent"))?;
    Ok(())
}

/// The earliest instant still to come at which a queued command becomes due (a retry's
/// backoff), if any. A command due already is sent at once or waits for the command before it,
/// whose result wakes the dispatcher; counting it here would make the dispatcher spin.
pub async fn next_due(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>, StoreError> {
    sqlx::query_scalar(
        "SELECT min(next_attempt_at) FROM exports \
         WHERE status = 'queued' AND next_attempt_at > now()",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::query("finding the next due export"))
}

/// One export as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRow {
    /// Its row (issue order).
    pub seq: i64,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The mesh object.
    pub mesh_object: MeshObjectId,
    /// The target connector.
    pub target: String,
    /// The operation (`create`, ...).
    pub operation: String,
    /// The mesh object version.
    pub mesh_object_version: u64,
    /// The projection rule.
    pub rule: String,
    /// Where it stands.
    pub state: ExportState,
    /// Sends so far.
    pub attempts: u32,
    /// The agent's last answer, if any.
    pub result: Option<String>,
    /// What the target said.
    pub message: Option<String>,
    /// The object's id in the target.
    pub target_object_id: Option<String>,
    /// The encoded command as issued.
    pub command: Vec<u8>,
    /// When it was issued (the causing event's time).
    pub issued_at: DateTime<Utc>,
    /// When its row last changed.
    pub updated_at: DateTime<Utc>,
    /// When it is (or was last) due to be sent: for a queued command after a retryable
    /// failure, when the retry is due.
    pub next_attempt_at: DateTime<Utc>,
}

const EXPORT_COLUMNS: &str = "seq, idempotency_key, mesh_object, target, operation, \
    mesh_object_version, rule, status, attempts, result, message, target_object_id, command, \
    issued_at, updated_at, next_attempt_at";

fn export_row(row: &sqlx::postgres::PgRow) -> Result<ExportRow, StoreError> {
    let status: String = row.get(7);
    let version: i64 = row.get(5);
    let attempts: i32 = row.get(8);
    Ok(ExportRow {
        seq: row.get(0),
        idempotency_key: row.get(1),
        mesh_object: MeshObjectId::from_uuid(row.get(2)),
        target: row.get(3),
        operation: row.get(4),
        mesh_object_version: u64::try_from(version).unwrap_or(0),
        rule: row.get(6),
        state: ExportState::parse(&status)
            .ok_or_else(|| malformed("export status")(status.clone()))?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        result: row.get(9),
        message: row.get(10),
        target_object_id: row.get(11),
        command: row.get(12),
        issued_at: row.get(13),
        updated_at: row.get(14),
        next_attempt_at: row.get(15),
    })
}

/// Locks the exports with these idempotency keys.
pub async fn lock_by_keys(
    conn: &mut PgConnection,
    keys: &[&str],
) -> Result<HashMap<String, ExportRow>, StoreError> {
    let sql = format!(
        "SELECT {EXPORT_COLUMNS} FROM exports WHERE idempotency_key = ANY($1) ORDER BY seq \
         FOR UPDATE"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::query("loading exports"))?;
    rows.iter()
        .map(|row| export_row(row).map(|e| (e.idempotency_key.clone(), e)))
        .collect()
}

/// What a result does to its export.
#[derive(Debug, Clone)]
pub struct ExportUpdate {
    /// The row.
    pub seq: i64,
    /// Its new state.
    pub state: ExportState,
    /// The agent's answer (`applied`, ...).
    pub result: &'static str,
    /// What the target said.
    pub message: String,
    /// The target object id, when the result told it.
    pub target_object_id: Option<String>,
    /// For a retry: when to send again.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Applies results to their exports.
pub async fn update_exports(
    conn: &mut PgConnection,
    updates: &[ExportUpdate],
) -> Result<(), StoreError> {
    if updates.is_empty() {
        return Ok(());
    }
    let seqs: Vec<i64> = updates.iter().map(|u| u.seq).collect();
    let states: Vec<&str> = updates.iter().map(|u| u.state.as_str()).collect();
    let results: Vec<&str> = updates.iter().map(|u| u.result).collect();
    let messages: Vec<&str> = updates.iter().map(|u| u.message.as_str()).collect();
    let object_ids: Vec<Option<&str>> = updates
        .iter()
        .map(|u| u.target_object_id.as_deref())
        .collect();
    let next: Vec<Option<DateTime<Utc>>> = updates.iter().map(|u| u.next_attempt_at).collect();
    sqlx::query(
        "UPDATE exports e SET status = t.status, result = t.result, message = t.message, \
           target_object_id = COALESCE(t.object_id, e.target_object_id), \
           next_attempt_at = COALESCE(t.next, e.next_attempt_at), updated_at = now() \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], \
           $6::timestamptz[]) AS t(seq, status, result, message, object_id, next) \
         WHERE e.seq = t.seq",
    )
    .bind(&seqs)
    .bind(&states)
    .bind(&results)
    .bind(&messages)
    .bind(&object_ids)
    .bind(&next)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("recording export results"))?;
    Ok(())
}

/// Records target object ids learned from results on what the targets hold.
pub async fn learn_target_object_ids(
    conn: &mut PgConnection,
    learned: &[(MeshObjectId, &str, &str)],
) -> Result<(), StoreError> {
    if learned.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = learned.iter().map(|(id, _, _)| id.as_uuid()).collect();
    let targets: Vec<&str> = learned.iter().map(|(_, t, _)| *t).collect();
    let object_ids: Vec<&str> = learned.iter().map(|(_, _, o)| *o).collect();
    sqlx::query(
        "UPDATE projection_targets p SET target_object_id = t.object_id \
         FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, target, object_id) \
         WHERE p.mesh_object = t.id AND p.target = t.target",
    )
    .bind(&ids)
    .bind(&targets)
    .bind(&object_ids)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("recording target object ids"))?;
    Ok(())
}

/// Which exports to list.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    /// Only this target.
    pub target: Option<String>,
    /// Only these states (all when empty).
    pub states: Vec<ExportState>,
    /// Only this mesh object.
    pub mesh_object: Option<MeshObjectId>,
    /// At most this many, newest first.
    pub limit: i64,
}

/// Lists exports, newest first.
pub async fn list(pool: &PgPool, filter: &ExportFilter) -> Result<Vec<ExportRow>, StoreError> {
    list_page(pool, filter, None).await
}

/// Lists exports, newest first, issued before the export `before` (a row's `seq`) when given:
/// the next page after a page that ended at `before`.
pub async fn list_page(
    pool: &PgPool,
    filter: &ExportFilter,
    before: Option<i64>,
) -> Result<Vec<ExportRow>, StoreError> {
    let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
    let sql = format!(
        "SELECT {EXPORT_COLUMNS} FROM exports \
         WHERE ($1::text IS NULL OR target = $1) \
           AND (cardinality($2::text[]) = 0 OR status = ANY($2)) \
           AND ($3::uuid IS NULL OR mesh_object = $3) \
           AND ($5::bigint IS NULL OR seq < $5) \
         ORDER BY seq DESC LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(filter.target.as_deref())
        .bind(&states)
        .bind(filter.mesh_object.map(|id| id.as_uuid()))
        .bind(filter.limit)
        .bind(before)
        .fetch_all(pool)
        .await
        .map_err(StoreError::query("listing exports"))?;
    rows.iter().map(export_row).collect()
}

/// Counts the open exports (queued, held, sent) per target and state.
pub async fn open_counts(
    pool: &PgPool,
) -> Result<BTreeMap<(String, ExportState), i64>, StoreError> {
    let rows = sqlx::query(
        "SELECT target, status, count(*) FROM exports \
         WHERE status IN ('queued', 'held', 'sent') GROUP BY target, status",
    )
    .fetch_all(pool)
    .await
    .map_err(StoreError::query("counting exports"))?;
    let mut found = BTreeMap::new();
    for row in rows {
        let status: String = row.get(1);
        let state = ExportState::parse(&status)
            .ok_or_else(|| malformed("export status")(status.clone()))?;
        found.insert((row.get(0), state), row.get(2));
    }
    Ok(found)
}

/// The targets whose guard holds, with since when.
pub async fn held_guards(pool: &PgPool) -> Result<Vec<(String, DateTime<Utc>)>, StoreError> {
    let rows =
        sqlx::query("SELECT target, held_since FROM export_guards WHERE held ORDER BY target")
            .fetch_all(pool)
            .await
            .map_err(StoreError::query("reading mass-deletion guards"))?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect())
}
