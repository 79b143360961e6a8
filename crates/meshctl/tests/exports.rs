//! `meshctl exports` and `meshctl exports approve` against a real PostgreSQL database holding
//! the projection tables (migration 0004). The guard itself is tested with the projection
//! service in services/meshd/tests/projection.rs.

use std::process::{Command, Output};

use mesh_testkit::TestDatabase;

fn meshctl(db: &TestDatabase, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_meshctl"))
        .args(args)
        .env("MESH_POSTGRES__URL", db.url())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn approve_releases_what_the_guard_holds_and_the_list_shows_it() {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    for (key, status) in [
        ("a/payroll/3/delete", "held"),
        ("b/payroll/2/create", "confirmed"),
    ] {
        sqlx::query(
            "INSERT INTO exports (idempotency_key, mesh_object, target, operation, \
               mesh_object_version, rule, command, status, next_attempt_at, issued_at) \
             VALUES ($1, gen_random_uuid(), 'payroll', split_part($1, '/', 4), 3, 'r', '', $2, \
               now(), now())",
        )
        .bind(key)
        .bind(status)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO export_guards (target, held, held_since) VALUES ('payroll', true, now())",
    )
    .execute(&pool)
    .await
    .unwrap();

    let listed = meshctl(&db, &["exports", "--status", "held"]);
    assert!(listed.status.success(), "{listed:?}");
    let text = stdout(&listed);
    assert!(text.contains("guard holding payroll"), "{text}");
    assert!(text.contains("delete"), "{text}");
    assert!(
        !text.contains("create"),
        "only held exports were asked for: {text}"
    );

    let approved = meshctl(&db, &["exports", "approve", "payroll", "-o", "json"]);
    assert!(approved.status.success(), "{approved:?}");
    let reply: serde_json::Value = serde_json::from_slice(&approved.stdout).unwrap();
    assert_eq!(
        reply,
        serde_json::json!({"target": "payroll", "released": 1})
    );

    let listed = meshctl(&db, &["exports", "--target", "payroll", "-o", "json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let states: Vec<&str> = listed["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["confirmed", "queued"]);
    assert_eq!(listed["heldTargets"], serde_json::json!([]));

    // Nothing left to approve: a clear refusal, not a silent success.
    let again = meshctl(&db, &["exports", "approve", "payroll"]);
    assert!(!again.status.success());
    let error = String::from_utf8_lossy(&again.stderr);
    assert!(error.contains("is not holding"), "{error}");

    let bad = meshctl(&db, &["exports", "--status", "lost"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown state \"lost\""));
}
