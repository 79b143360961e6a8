//! The inbox: exactly-once effects on top of at-least-once delivery.
//!
//! JetStream deduplicates publishes within its duplicate window and redelivers unacknowledged
//! messages; neither makes a consumer's effect happen once. A consumer claims the ids of a batch
//! inside the transaction that applies the batch's effect: ids claimed before (by a previous
//! delivery whose ack was lost, or a republish after the duplicate window) come back as already
//! processed and the handler skips them. The claim and the effect commit or roll back together.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::StoreError;

/// Claims `message_ids` for `consumer` and returns the ids that were not claimed before (the
/// ones whose effect must be applied now). Call it inside the effect's transaction.
pub async fn claim(
    conn: &mut PgConnection,
    consumer: &str,
    message_ids: &[&str],
) -> Result<HashSet<String>, StoreError> {
    if message_ids.is_empty() {
        return Ok(HashSet::new());
    }
    let claimed: Vec<(String,)> = sqlx::query_as(
        "INSERT INTO inbox (consumer, message_id) \
         SELECT $1, id FROM unnest($2::text[]) AS t(id) \
         ON CONFLICT DO NOTHING \
         RETURNING message_id",
    )
    .bind(consumer)
    .bind(message_ids)
    .fetch_all(conn)
    .await
    .map_err(StoreError::query("claiming inbox ids"))?;
    Ok(claimed.into_iter().map(|(id,)| id).collect())
}

/// Deletes inbox rows older than `older_than` and returns how many went. Keep the horizon longer
/// than any replay: a message republished after its row is pruned would take effect again.
pub async fn prune(pool: &PgPool, older_than: Duration) -> Result<u64, StoreError> {
    let seconds = older_than.as_secs_f64();
    let result =
        sqlx::query("DELETE FROM inbox WHERE processed_at < now() - make_interval(secs => $1)")
            .bind(seconds)
            .execute(pool)
            .await
            .map_err(StoreError::query("pruning the inbox"))?;
    Ok(result.rows_affected())
}
