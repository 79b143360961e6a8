//! The agent's tables (migration 0005): `provisioning_applied`, the idempotency keys applied,
//! and `provisioning_objects`, the object each target holds for a mesh object. Every function
//! runs in the caller's batch transaction.

use std::collections::HashMap;

use mesh_store::StoreError;
use sqlx::PgConnection;
use sqlx::Row as _;
use uuid::Uuid;

/// A command recorded as applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedRow {
    /// The object's id in the target after it.
    pub target_object_id: Option<String>,
}

/// A command to record as applied.
#[derive(Debug, Clone)]
pub struct NewApplied<'a> {
    /// Its idempotency key.
    pub key: &'a str,
    /// The target connector.
    pub target: &'a str,
    /// The mesh object.
    pub mesh_object: Uuid,
    /// `create`, `update`, ...
    pub operation: &'a str,
    /// The mesh object version it reflected.
    pub version: i64,
    /// `applied` or `already_applied`.
    pub status: &'a str,
    /// The object's id in the target after it.
    pub target_object_id: Option<String>,
    /// The attempt that applied it.
    pub attempt: i32,
}

/// What a batch learned about the object a target holds for a mesh object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectChange {
    /// The target holds this object (created, adopted, renamed).
    Holds(String),
    /// The target's object was deleted.
    Deleted,
}

/// Serializes batches that touch the same (target, mesh object) pairs, so that two agents
/// never apply commands of one object at once. Transaction-scoped advisory locks, taken in
/// key order so that two batches cannot deadlock.
pub async fn lock_objects(conn: &mut PgConnection, keys: &[String]) -> Result<(), StoreError> {
    let mut keys = keys.to_vec();
    keys.sort();
    keys.dedup();
    sqlx::query(
        "SELECT count(pg_advisory_xact_lock(hashtextextended('provisioning/' || k, 0))) \
         FROM unnest($1::text[]) AS u(k)",
    )
    .bind(&keys)
    .execute(conn)
    .await
    .map_err(StoreError::query("locking provisioned objects"))?;
    Ok(())
}

/// The commands among `keys` already applied.
pub async fn applied(
    conn: &mut PgConnection,
    keys: &[&str],
) -> Result<HashMap<String, AppliedRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT idempotency_key, target_object_id FROM provisioning_applied \
         WHERE idempotency_key = ANY($1)",
    )
    .bind(keys)
    .fetch_all(conn)
    .await
    .map_err(StoreError::query("reading applied export commands"))?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.get::<String, _>(0),
                AppliedRow {
                    target_object_id: row.get(1),
                },
            )
        })
        .collect())
}

/// The objects the targets hold for `pairs` of (target, mesh object).
pub async fn objects(
    conn: &mut PgConnection,
    pairs: &[(String, Uuid)],
) -> Result<HashMap<(String, Uuid), String>, StoreError> {
    let targets: Vec<&str> = pairs.iter().map(|(t, _)| t.as_str()).collect();
    let objects: Vec<Uuid> = pairs.iter().map(|(_, o)| *o).collect();
    let rows = sqlx::query(
        "SELECT p.target, p.mesh_object, p.target_object_id FROM provisioning_objects p \
         JOIN unnest($1::text[], $2::uuid[]) AS u(target, mesh_object) \
           ON p.target = u.target AND p.mesh_object = u.mesh_object",
    )
    .bind(&targets)
    .bind(&objects)
    .fetch_all(conn)
    .await
    .map_err(StoreError::query("reading provisioned objects"))?;
    Ok(rows
        .into_iter()
        .map(|row| ((row.get(0), row.get(1)), row.get(2)))
        .collect())
}

/// Records applied commands; a key recorded already keeps its first row.
pub async fn record_applied(
    conn: &mut PgConnection,
    rows: &[NewApplied<'_>],
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = rows.iter().map(|r| r.key).collect();
    let targets: Vec<&str> = rows.iter().map(|r| r.target).collect();
    let objects: Vec<Uuid> = rows.iter().map(|r| r.mesh_object).collect();
    let operations: Vec<&str> = rows.iter().map(|r| r.operation).collect();
    let versions: Vec<i64> = rows.iter().map(|r| r.version).collect();
    let statuses: Vec<&str> = rows.iter().map(|r| r.status).collect();
    let ids: Vec<Option<&str>> = rows.iter().map(|r| r.target_object_id.as_deref()).collect();
    let attempts: Vec<i32> = rows.iter().map(|r| r.attempt).collect();
    sqlx::query(
        "INSERT INTO provisioning_applied \
           (idempotency_key, target, mesh_object, operation, mesh_object_version, status, \
            target_object_id, attempt) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::bigint[], \
                              $6::text[], $7::text[], $8::int[]) \
         ON CONFLICT (idempotency_key) DO NOTHING",
    )
    .bind(&keys)
    .bind(&targets)
    .bind(&objects)
    .bind(&operations)
    .bind(&versions)
    .bind(&statuses)
    .bind(&ids)
    .bind(&attempts)
    .execute(conn)
    .await
    .map_err(StoreError::query("recording applied export commands"))?;
    Ok(())
}

/// Saves what the batch learned about target objects.
pub async fn save_objects(
    conn: &mut PgConnection,
    changes: &[((String, Uuid), ObjectChange)],
) -> Result<(), StoreError> {
    let mut held: (Vec<&str>, Vec<Uuid>, Vec<&str>) = (Vec::new(), Vec::new(), Vec::new());
    let mut deleted: (Vec<&str>, Vec<Uuid>) = (Vec::new(), Vec::new());
    for ((target, object), change) in changes {
        match change {
            ObjectChange::Holds(id) => {
                held.0.push(target);
                held.1.push(*object);
                held.2.push(id);
            }
            ObjectChange::Deleted => {
                deleted.0.push(target);
                deleted.1.push(*object);
            }
        }
    }
    if !held.0.is_empty() {
        sqlx::query(
            "INSERT INTO provisioning_objects (target, mesh_object, target_object_id) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[]) \
             ON CONFLICT (target, mesh_object) DO UPDATE \
               SET target_object_id = EXCLUDED.target_object_id, updated_at = now()",
        )
        .bind(&held.0)
        .bind(&held.1)
        .bind(&held.2)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("saving provisioned objects"))?;
    }
    if !deleted.0.is_empty() {
        sqlx::query(
            "DELETE FROM provisioning_objects p USING unnest($1::text[], $2::uuid[]) \
               AS u(target, mesh_object) \
             WHERE p.target = u.target AND p.mesh_object = u.mesh_object",
        )
        .bind(&deleted.0)
        .bind(&deleted.1)
        .execute(&mut *conn)
        .await
        .map_err(StoreError::query("removing deleted provisioned objects"))?;
    }
    Ok(())
}
