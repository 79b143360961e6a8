//! The inbox against a real PostgreSQL database.

use std::time::Duration;

use mesh_testkit::TestDatabase;

#[tokio::test]
async fn a_message_id_is_claimed_once_per_consumer() {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let first = mesh_store::inbox::claim(&mut tx, "correlation", &["a", "b"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(first.len(), 2);

    let mut tx = pool.begin().await.unwrap();
    let second = mesh_store::inbox::claim(&mut tx, "correlation", &["b", "c"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(second, ["c".to_owned()].into_iter().collect());

    let mut tx = pool.begin().await.unwrap();
    let other = mesh_store::inbox::claim(&mut tx, "flow", &["a"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(other.len(), 1, "inboxes are per consumer");
}

#[tokio::test]
async fn a_rolled_back_claim_leaves_the_message_unprocessed() {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    mesh_store::inbox::claim(&mut tx, "flow", &["x"])
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    let again = mesh_store::inbox::claim(&mut tx, "flow", &["x"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(again.len(), 1);
}

#[tokio::test]
async fn migrations_are_idempotent_and_prune_keeps_recent_rows() {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    mesh_store::inbox::claim(&mut tx, "flow", &["old", "new"])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query(
        "UPDATE inbox SET processed_at = now() - interval '8 days' WHERE message_id = 'old'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let pruned = mesh_store::inbox::prune(&pool, Duration::from_secs(7 * 86_400))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM inbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
}

#[tokio::test]
async fn transient_errors_are_told_apart() {
    let err = mesh_store::connect("postgres://postgres@127.0.0.1:1/none", 1)
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(
        !err.to_string().contains("postgres@"),
        "no credentials: {err}"
    );
}
