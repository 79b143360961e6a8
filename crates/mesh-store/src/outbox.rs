//! The stage outbox: messages a stage committed, kept until JetStream has them.
//!
//! A stage writes its output messages in the transaction of the batch that produced them,
//! publishes them after the commit and then deletes them. A crash (or a NATS outage) between
//! the commit and the deletion leaves rows behind; the stage publishes those first when it
//! starts or recovers, with their original message ids, so JetStream's duplicate window or the
//! next stage's inbox drops whatever had already gone out. Outputs are never lost and never
//! recomputed from state that has moved on.

use sqlx::{PgConnection, PgPool};

use crate::StoreError;

/// One committed message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    /// Its position in the stage's outbox (publish order).
    pub id: i64,
    /// The subject.
    pub subject: String,
    /// The `Nats-Msg-Id`.
    pub msg_id: String,
    /// The `Mesh-Schema`.
    pub schema: String,
    /// The encoded message.
    pub payload: Vec<u8>,
}

/// A message to write.
#[derive(Debug, Clone, Copy)]
pub struct NewOutboxRow<'a> {
    /// The subject.
    pub subject: &'a str,
    /// The `Nats-Msg-Id`.
    pub msg_id: &'a str,
    /// The `Mesh-Schema`.
    pub schema: &'a str,
    /// The encoded message.
    pub payload: &'a [u8],
}

/// Writes `rows` for `stage` inside the caller's transaction and returns their ids, in order.
pub async fn insert(
    conn: &mut PgConnection,
    stage: &str,
    rows: &[NewOutboxRow<'_>],
) -> Result<Vec<i64>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let subjects: Vec<&str> = rows.iter().map(|r| r.subject).collect();
    let msg_ids: Vec<&str> = rows.iter().map(|r| r.msg_id).collect();
    let schemas: Vec<&str> = rows.iter().map(|r| r.schema).collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| r.payload).collect();
    let ids: Vec<(i64,)> = sqlx::query_as(
        "INSERT INTO stage_outbox (stage, subject, msg_id, schema, payload) \
         SELECT $1, subject, msg_id, schema, payload FROM unnest($2::text[], $3::text[], $4::text[], $5::bytea[]) \
           WITH ORDINALITY AS t(subject, msg_id, schema, payload, n) ORDER BY n \
         RETURNING id",
    )
    .bind(stage)
    .bind(&subjects)
    .bind(&msg_ids)
    .bind(&schemas)
    .bind(&payloads)
    .fetch_all(conn)
    .await
    .map_err(StoreError::query("writing the stage outbox"))?;
    let mut ids: Vec<i64> = ids.into_iter().map(|(id,)| id).collect();
    ids.sort_unstable();
    Ok(ids)
}

/// Returns up to `limit` rows of `stage` left unpublished, oldest first.
pub async fn pending(pool: &PgPool, stage: &str, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    sqlx::query_as(
        "SELECT id, subject, msg_id, schema, payload FROM stage_outbox \
         WHERE stage = $1 ORDER BY id LIMIT $2",
    )
    .bind(stage)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(StoreError::query("reading the stage outbox"))
}

/// Deletes the published rows `ids` of `stage`.
pub async fn delete(pool: &PgPool, stage: &str, ids: &[i64]) -> Result<(), StoreError> {
    let (Some(first), Some(last)) = (ids.iter().min(), ids.iter().max()) else {
        return Ok(());
    };
    // The id range bounds the index scan. Without it the plan scanned every index entry of the
    // stage, the dead ones of the rows deleted since the last vacuum included: a table this
    // busy looks empty to the planner, and each delete grew slower until autovacuum came.
    sqlx::query(
        "DELETE FROM stage_outbox WHERE stage = $1 AND id BETWEEN $2 AND $3 AND id = ANY($4)",
    )
    .bind(stage)
    .bind(first)
    .bind(last)
    .bind(ids)
    .execute(pool)
    .await
    .map_err(StoreError::query("deleting published outbox rows"))?;
    Ok(())
}
