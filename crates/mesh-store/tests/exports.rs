//! The export commands' table against a real PostgreSQL database: what projection records sent
//! at once, what it finds open, and what the dispatcher waits for.

use std::collections::BTreeSet;

use chrono::Utc;
use mesh_model::{ExportOperation, MeshObjectId};
use mesh_store::projection::{self, ExportState, NewExport};
use mesh_testkit::TestDatabase;

fn export<'a>(
    key: &'a str,
    mesh_object: MeshObjectId,
    target: &'a str,
    state: ExportState,
) -> NewExport<'a> {
    NewExport {
        idempotency_key: key,
        mesh_object,
        target,
        operation: ExportOperation::Create,
        mesh_object_version: 1,
        rule: "r",
        command: Vec::new(),
        state,
        issued_at: Utc::now(),
        traceparent: None,
    }
}

#[tokio::test]
async fn a_command_sent_by_projection_opens_its_pair_and_counts_its_attempt() {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    let (a, b) = (
        MeshObjectId::from_uuid(uuid::Uuid::new_v4()),
        MeshObjectId::from_uuid(uuid::Uuid::new_v4()),
    );

    let mut tx = pool.begin().await.unwrap();
    let recorded = projection::insert_exports(
        &mut tx,
        &[
            export("a/1", a, "payroll", ExportState::Sent),
            export("a/2", a, "payroll", ExportState::Queued),
        ],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(recorded.len(), 2);

    let mut tx = pool.begin().await.unwrap();
    // A key recorded before keeps its row: it is not reported, so it is not sent again.
    let recorded = projection::insert_exports(
        &mut tx,
        &[
            export("a/1", a, "payroll", ExportState::Sent),
            export("b/1", b, "payroll", ExportState::Held),
        ],
    )
    .await
    .unwrap();
    assert_eq!(recorded, ["b/1".to_owned()].into_iter().collect());
    let open = projection::open_pairs(&mut tx, &BTreeSet::from([a, b]))
        .await
        .unwrap();
    assert_eq!(
        open,
        [(a, "payroll".to_owned()), (b, "payroll".to_owned())]
            .into_iter()
            .collect()
    );
    // The queued command waits behind the sent one: it is not due, and being due already it
    // is no reason to wake up before the sent one's result.
    assert!(projection::lock_due(&mut tx, 10).await.unwrap().is_empty());
    assert_eq!(projection::next_due(&mut tx).await.unwrap(), None);
    tx.commit().await.unwrap();

    let attempts: Vec<(String, String, i32)> = sqlx::query_as(
        "SELECT idempotency_key, status, attempts FROM exports ORDER BY idempotency_key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        attempts,
        [
            ("a/1".to_owned(), "sent".to_owned(), 1),
            ("a/2".to_owned(), "queued".to_owned(), 0),
            ("b/1".to_owned(), "held".to_owned(), 0),
        ]
    );

    // A retry still to come is the next due instant.
    sqlx::query(
        "UPDATE exports SET status = 'queued', \
           next_attempt_at = now() + interval '1 minute' WHERE idempotency_key = 'a/1'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut tx = pool.begin().await.unwrap();
    assert!(projection::lock_due(&mut tx, 10).await.unwrap().is_empty());
    let next = projection::next_due(&mut tx).await.unwrap().unwrap();
    assert!(next > Utc::now(), "{next}");
}
