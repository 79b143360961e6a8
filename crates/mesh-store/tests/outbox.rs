//! The stage outbox on a real PostgreSQL: rows come back in order until deleted, and a delete
//! takes exactly the rows it names, of its own stage, whatever their ids look like.

use mesh_store::outbox::{self, NewOutboxRow};
use mesh_testkit::TestDatabase;

async fn write(pool: &sqlx::PgPool, stage: &str, n: usize) -> Vec<i64> {
    let msg_ids: Vec<String> = (0..n).map(|i| format!("{stage}-{i}")).collect();
    let rows: Vec<NewOutboxRow<'_>> = msg_ids
        .iter()
        .map(|msg_id| NewOutboxRow {
            subject: "mesh.joined.hr",
            msg_id,
            schema: "mesh.v1.CorrelatedChange",
            payload: b"\x08\x01",
        })
        .collect();
    let mut tx = pool.begin().await.unwrap();
    let ids = outbox::insert(&mut tx, stage, &rows).await.unwrap();
    tx.commit().await.unwrap();
    ids
}

async fn pending_msg_ids(pool: &sqlx::PgPool, stage: &str) -> Vec<String> {
    outbox::pending(pool, stage, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.msg_id)
        .collect()
}

#[tokio::test]
async fn delete_takes_exactly_the_named_rows_of_its_stage() {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    let flow = write(&pool, "flow", 6).await;
    let correlation = write(&pool, "correlation", 3).await;
    assert_eq!(flow.len(), 6);

    // Not contiguous, not sorted, with ids of the other stage inside the range.
    let mut chosen = vec![flow[4], flow[0], flow[2]];
    chosen.extend(&correlation);
    outbox::delete(&pool, "flow", &chosen).await.unwrap();
    assert_eq!(
        pending_msg_ids(&pool, "flow").await,
        ["flow-1", "flow-3", "flow-5"]
    );
    assert_eq!(
        pending_msg_ids(&pool, "correlation").await,
        ["correlation-0", "correlation-1", "correlation-2"]
    );

    // Deleting again, or nothing, changes nothing.
    outbox::delete(&pool, "flow", &chosen).await.unwrap();
    outbox::delete(&pool, "flow", &[]).await.unwrap();
    assert_eq!(pending_msg_ids(&pool, "flow").await.len(), 3);

    outbox::delete(&pool, "flow", &[flow[5], flow[1], flow[3]])
        .await
        .unwrap();
    assert!(pending_msg_ids(&pool, "flow").await.is_empty());
    assert_eq!(pending_msg_ids(&pool, "correlation").await.len(), 3);
}
