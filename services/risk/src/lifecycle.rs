//! Mesh objects into Redis: the `risk-lifecycle` consumer and the full copy.
//!
//! A MeshObjectChanged carries only what changed, and Redis may have lost what came before, so
//! the consumer copies each changed object's whole current state from PostgreSQL (one query
//! per batch). Order does not matter: whatever message arrives, the copy is the latest state.
//! The index entries of changed subject attributes are moved: the old value's entry is removed
//! when it still points at the object, the new value's is set.

use std::sync::Arc;

use mesh_bus::{BatchHandler, Delivery, HandlerError};
use mesh_model::{AttributeName, MeshObjectChanged};
use sqlx::{PgPool, Row};

use crate::Risk;
use crate::state::{ObjectRecord, index_text, record_from_row};

/// Copies changed mesh objects into Redis.
#[derive(Debug)]
pub struct LifecycleHandler {
    risk: Arc<Risk>,
    pool: PgPool,
}

impl LifecycleHandler {
    /// A handler writing through `risk`'s state, reading from `pool`.
    pub fn new(risk: Arc<Risk>, pool: PgPool) -> Self {
        Self { risk, pool }
    }
}

/// The attributes the index holds: the subject attributes and the owner key.
fn indexed(risk: &Risk) -> Vec<AttributeName> {
    let settings = &risk.policy().identity;
    let mut indexed = settings.subject_attributes.clone();
    if let Some(key) = &settings.owner_key_attribute
        && !indexed.contains(key)
    {
        indexed.push(key.clone());
    }
    indexed
}

async fn load(pool: &PgPool, ids: &[uuid::Uuid]) -> Result<Vec<ObjectRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, object_type, lifecycle, version, attributes, created_at \
         FROM mesh_objects WHERE id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(record).collect())
}

fn record(row: &sqlx::postgres::PgRow) -> ObjectRecord {
    let attributes: serde_json::Value = row.get("attributes");
    let lifecycle: String = row.get("lifecycle");
    record_from_row(
        row.get("id"),
        row.get("object_type"),
        &lifecycle,
        row.get("version"),
        &attributes,
        row.get("created_at"),
    )
}

impl BatchHandler for LifecycleHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let indexed = indexed(&self.risk);
        let mut ids = Vec::with_capacity(batch.len());
        let mut stale = Vec::new();
        for delivery in batch {
            let change: MeshObjectChanged = delivery.decode_event()?;
            let id = change.mesh_object.as_uuid();
            for c in &change.changes {
                if let Some(attribute) = indexed.iter().find(|a| **a == c.name)
                    && let Some(old) = index_text(&c.old)
                    && index_text(&c.new).as_deref() != Some(old.as_str())
                {
                    stale.push((attribute.clone(), old, change.mesh_object.to_string()));
                }
            }
            ids.push(id);
        }
        ids.sort_unstable();
        ids.dedup();
        let objects = load(&self.pool, &ids)
            .await
            .map_err(HandlerError::transient)?;
        self.risk
            .state()
            .write_objects(&indexed, &objects, &stale)
            .await
            .map_err(HandlerError::transient)?;
        Ok(())
    }
}

/// Copies every mesh object into Redis, a page at a time, then marks the copy complete.
/// Returns how many were copied.
pub async fn copy_all_objects(risk: &Risk, pool: &PgPool) -> Result<usize, CopyError> {
    const PAGE: i64 = 1000;
    let indexed = indexed(risk);
    let mut after = uuid::Uuid::nil();
    let mut copied = 0;
    loop {
        let rows = sqlx::query(
            "SELECT id, object_type, lifecycle, version, attributes, created_at \
             FROM mesh_objects WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.get("id");
        let objects: Vec<ObjectRecord> = rows.iter().map(record).collect();
        risk.state().write_objects(&indexed, &objects, &[]).await?;
        copied += objects.len();
        if (rows.len() as i64) < PAGE {
            break;
        }
    }
    risk.state().mark_synced().await?;
    Ok(copied)
}

/// Why the full copy stopped.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// PostgreSQL failed.
    #[error("reading mesh objects")]
    Store(#[from] sqlx::Error),
    /// Redis failed.
    #[error("writing mesh objects to redis")]
    Redis(#[from] redis::RedisError),
}
