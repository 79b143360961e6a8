//! Pool settings against a real PostgreSQL database.

use std::time::Duration;

use mesh_testkit::{TestDatabase, assert_eventually};

/// Connections to the test database that PostgreSQL reports, other than the asking one.
async fn server_side_connections(db: &TestDatabase, observer: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
    )
    .bind(db.name())
    .fetch_one(observer)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_idle_pool_keeps_its_minimum_of_connections_open() {
    let db = TestDatabase::create().await.unwrap();
    let observer = mesh_store::connect(db.url(), 1).await.unwrap();
    let options = mesh_store::connect_options(db.url(), None).unwrap();

    // Nothing is asked of either pool: the one with a minimum opens it by itself.
    let kept = mesh_store::connect_lazy_with(options.clone(), 6, 4);
    let on_demand = mesh_store::connect_lazy_with(options, 6, 0);
    assert_eventually!(
        Duration::from_secs(10),
        kept.size() == 4 && kept.num_idle() == 4,
        "the pool holds {} connections, {} idle",
        kept.size(),
        kept.num_idle()
    );
    assert_eq!(on_demand.size(), 0, "a pool without a minimum opens none");
    // PostgreSQL sees those four (and the observer's own, not counted).
    assert_eq!(server_side_connections(&db, &observer).await, 4);

    // A burst as large as the minimum finds every connection open.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(kept.acquire().await.unwrap());
    }
    assert_eq!(kept.size(), 4, "the burst opened no connection");
    drop(held);
}
