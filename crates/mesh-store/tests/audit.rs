//! The audit chain on a real PostgreSQL: appends verify, and an edited, a deleted or a
//! truncated row is detected.

use chrono::{DateTime, Utc};
use mesh_store::audit::{self, AuditEntry};
use mesh_testkit::TestDatabase;
use serde_json::json;

fn entry(i: u32) -> AuditEntry {
    AuditEntry {
        at: DateTime::<Utc>::from_timestamp(1_767_225_600 + i64::from(i), 123_456_789).unwrap(),
        kind: "join",
        event_id: Some(uuid::Uuid::from_u128(u128::from(i))),
        mesh_object: Some(uuid::Uuid::from_u128(1000 + u128::from(i))),
        connector_object: Some(format!("hr/User/{i}")),
        rule: Some("hr-by-employee-id".to_owned()),
        detail: json!({"method": "matched", "n": i, "nested": {"b": 1.5, "a": [true, null]}}),
    }
}

async fn chain_of(rows: u32) -> (TestDatabase, sqlx::PgPool) {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    let entries: Vec<AuditEntry> = (1..=rows).map(entry).collect();
    let (first, rest) = entries.split_at(2);
    for batch in [first, rest] {
        let mut tx = pool.begin().await.unwrap();
        audit::append(&mut tx, "correlation", batch).await.unwrap();
        tx.commit().await.unwrap();
    }
    let mut tx = pool.begin().await.unwrap();
    audit::append(&mut tx, "flow", &entries[..3]).await.unwrap();
    tx.commit().await.unwrap();
    (db, pool)
}

/// Runs `sql` against a fresh chain of ten rows (and a flow chain of three), then verifies.
async fn problems_after(sql: &'static str) -> Vec<String> {
    let (_db, pool) = chain_of(10).await;
    sqlx::query(sql).execute(&pool).await.unwrap();
    audit::verify(&pool).await.unwrap().problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_chain_verifies() {
    let (_db, pool) = chain_of(10).await;
    let report = audit::verify(&pool).await.unwrap();
    assert!(report.is_intact(), "{:?}", report.problems);
    assert_eq!(report.rows, 13);
    assert_eq!(report.chains, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_row_is_detected() {
    let problems = problems_after(
        "UPDATE audit_log SET detail = jsonb_set(detail, '{method}', '\"manual\"') \
         WHERE chain LIKE 'correlation/%' AND seq = 4",
    )
    .await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("chain correlation/")
            && problems[0].ends_with(": row 4 was changed after it was written"),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_row_is_detected() {
    let problems =
        problems_after("DELETE FROM audit_log WHERE chain LIKE 'correlation/%' AND seq = 5").await;
    assert!(
        problems.iter().any(|p| p.starts_with("chain correlation/")
            && p.ends_with(": row 5 is missing (next row is 6)")),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_newest_rows_is_detected() {
    let problems =
        problems_after("DELETE FROM audit_log WHERE chain LIKE 'flow/%' AND seq = 3").await;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("chain flow/")
            && problems[0].ends_with(": the head says 3 rows, the log ends at row 2"),
        "{problems:?}"
    );
}
