//! The PostgreSQL target against a real PostgreSQL: a private database holding the target
//! table.

mod common;

use common::{apply, attrs, command, mesh_object, target_yaml, targets};
use mesh_model::{ExportOperation as Op, Value};
use mesh_testkit::TestDatabase;
use provisioning_agent::Outcome;
use provisioning_agent::target::TargetEntry;
use sqlx::{PgPool, Row as _};

const TARGET: &str = "hr-database";
const TABLE: &str = "dbo.Employees";

/// A payroll database with `dbo.employees` keyed by `employee_id`.
async fn payroll() -> (TestDatabase, PgPool) {
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    sqlx::raw_sql(
        "CREATE SCHEMA dbo;
         CREATE TABLE dbo.employees (
             employee_id  integer PRIMARY KEY,
             display_name text NOT NULL,
             department   text,
             email        text,
             hired_at     timestamptz,
             grade        numeric,
             skills       text[],
             active       boolean NOT NULL DEFAULT true
         );",
    )
    .execute(&pool)
    .await
    .unwrap();
    (db, pool)
}

fn pg_target(db: &TestDatabase, extra: &str) -> TargetEntry {
    let spec = format!(
        "  type: postgres-target\n  dsn: {}\n  keyColumn: employee_id\n  timeout: 2s\n{extra}",
        db.url()
    );
    let targets = targets(&target_yaml(TARGET, &spec, TABLE), &[]);
    targets.get(&TARGET.parse().unwrap()).cloned().unwrap()
}

fn employee(id: i64, name: &str) -> mesh_model::Attributes {
    attrs(&[
        ("employee_id", Value::from(id)),
        ("display_name", Value::from(name)),
        ("department", Value::from("Engineering")),
        ("email", Value::from(format!("{id}@example.com"))),
        (
            "hired_at",
            Value::Timestamp("2024-03-01T09:00:00Z".parse().unwrap()),
        ),
        ("grade", Value::Decimal(7.5)),
        (
            "skills",
            Value::List(vec![Value::from("rust"), Value::from("sql")]),
        ),
    ])
}

async fn row(pool: &PgPool, id: i32) -> Option<sqlx::postgres::PgRow> {
    sqlx::query(
        "SELECT display_name, department, email, hired_at::text, grade::text, skills, active \
         FROM dbo.employees WHERE employee_id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM dbo.employees")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn create_update_disable_enable_delete_a_row() {
    let (db, pool) = payroll().await;
    let target = pg_target(&db, "");
    let object = mesh_object(1);

    let created = apply(
        &target,
        &command(TARGET, Op::Create, object, 1, TABLE, employee(42, "Ada")),
        None,
    )
    .await;
    assert_eq!(
        created,
        Outcome::Applied {
            target_object_id: Some("42".into())
        }
    );
    let r = row(&pool, 42).await.unwrap();
    assert_eq!(r.get::<String, _>(0), "Ada");
    assert_eq!(r.get::<String, _>(3), "2024-03-01 09:00:00+00");
    assert_eq!(r.get::<String, _>(4), "7.5");
    assert_eq!(r.get::<Vec<String>, _>(5), vec!["rust", "sql"]);
    assert!(r.get::<bool, _>(6));

    // Only what changed; null clears a column; the others keep their values.
    let update = command(
        TARGET,
        Op::Update,
        object,
        2,
        TABLE,
        attrs(&[
            ("department", Value::from("Research")),
            ("email", Value::Null),
        ]),
    );
    assert_eq!(
        apply(&target, &update, Some("42")).await,
        Outcome::Applied {
            target_object_id: Some("42".into())
        }
    );
    let r = row(&pool, 42).await.unwrap();
    assert_eq!(r.get::<String, _>(0), "Ada");
    assert_eq!(r.get::<String, _>(1), "Research");
    assert_eq!(r.get::<Option<String>, _>(2), None);

    let disable = command(TARGET, Op::Disable, object, 3, TABLE, attrs(&[]));
    assert_eq!(
        apply(&target, &disable, Some("42")).await,
        Outcome::Applied {
            target_object_id: Some("42".into())
        }
    );
    assert!(!row(&pool, 42).await.unwrap().get::<bool, _>(6));
    assert_eq!(
        apply(&target, &disable, Some("42")).await,
        Outcome::AlreadyApplied {
            target_object_id: Some("42".into())
        }
    );

    let enable = command(TARGET, Op::Enable, object, 4, TABLE, attrs(&[]));
    assert!(matches!(
        apply(&target, &enable, Some("42")).await,
        Outcome::Applied { .. }
    ));
    assert!(row(&pool, 42).await.unwrap().get::<bool, _>(6));

    // A new key renames the row.
    let rekey = command(
        TARGET,
        Op::Update,
        object,
        5,
        TABLE,
        attrs(&[("employee_id", Value::from(43_i64))]),
    );
    assert_eq!(
        apply(&target, &rekey, Some("42")).await,
        Outcome::Applied {
            target_object_id: Some("43".into())
        }
    );
    // Again, as after a crash before the commit: the old key is gone, the new one holds it.
    assert_eq!(
        apply(&target, &rekey, Some("42")).await,
        Outcome::AlreadyApplied {
            target_object_id: Some("43".into())
        }
    );

    let delete = command(TARGET, Op::Delete, object, 6, TABLE, attrs(&[]));
    assert!(matches!(
        apply(&target, &delete, Some("43")).await,
        Outcome::Applied { .. }
    ));
    assert_eq!(count(&pool).await, 0);
    assert_eq!(
        apply(&target, &delete, Some("43")).await,
        Outcome::AlreadyApplied {
            target_object_id: Some("43".into())
        }
    );
}

#[tokio::test]
async fn create_adopts_an_existing_row_with_the_same_key() {
    let (db, pool) = payroll().await;
    let target = pg_target(&db, "");
    sqlx::query(
        "INSERT INTO dbo.employees (employee_id, display_name, department, active) \
         VALUES (7, 'Grace H.', 'Navy', false)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let outcome = apply(
        &target,
        &command(
            TARGET,
            Op::Create,
            mesh_object(2),
            1,
            TABLE,
            employee(7, "Grace Hopper"),
        ),
        None,
    )
    .await;
    assert_eq!(
        outcome,
        Outcome::AlreadyApplied {
            target_object_id: Some("7".into())
        }
    );
    assert_eq!(count(&pool).await, 1, "adopted, not duplicated");
    let r = row(&pool, 7).await.unwrap();
    assert_eq!(r.get::<String, _>(0), "Grace Hopper");
    assert_eq!(r.get::<String, _>(1), "Engineering");
    assert!(r.get::<bool, _>(6), "a create leaves the row enabled");
}

#[tokio::test]
async fn the_same_command_applied_twice_has_one_effect() {
    let (db, pool) = payroll().await;
    let target = pg_target(&db, "");
    let object = mesh_object(3);
    let create = command(TARGET, Op::Create, object, 1, TABLE, employee(9, "Alan"));
    assert!(matches!(
        apply(&target, &create, None).await,
        Outcome::Applied { .. }
    ));
    let xmin = |pool: PgPool| async move {
        sqlx::query_scalar::<_, String>(
            "SELECT xmin::text FROM dbo.employees WHERE employee_id = 9",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let written = xmin(pool.clone()).await;
    assert_eq!(
        apply(&target, &create, None).await,
        Outcome::AlreadyApplied {
            target_object_id: Some("9".into())
        }
    );
    assert_eq!(
        xmin(pool.clone()).await,
        written,
        "the second create did not rewrite the row"
    );

    let update = command(
        TARGET,
        Op::Update,
        object,
        2,
        TABLE,
        attrs(&[("department", Value::from("Maths"))]),
    );
    assert!(matches!(
        apply(&target, &update, Some("9")).await,
        Outcome::Applied { .. }
    ));
    let written = xmin(pool.clone()).await;
    assert_eq!(
        apply(&target, &update, Some("9")).await,
        Outcome::AlreadyApplied {
            target_object_id: Some("9".into())
        }
    );
    assert_eq!(xmin(pool.clone()).await, written);
    assert_eq!(count(&pool).await, 1);
}

#[tokio::test]
async fn bad_containers_columns_and_values_are_permanent_failures() {
    let (db, pool) = payroll().await;
    let target = pg_target(&db, "");
    let object = mesh_object(4);
    for container in [
        "employees",
        "dbo.Employees; DROP TABLE dbo.employees",
        "dbo.missing",
    ] {
        let outcome = apply(
            &target,
            &command(TARGET, Op::Create, object, 1, container, employee(1, "x")),
            None,
        )
        .await;
        assert!(
            matches!(outcome, Outcome::Permanent(_)),
            "{container}: {outcome:?}"
        );
    }
    let mut unknown = employee(1, "x");
    unknown.insert("salary".parse().unwrap(), Value::from(1_i64));
    let outcome = apply(
        &target,
        &command(TARGET, Op::Create, object, 1, TABLE, unknown),
        None,
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::Permanent(m) if m.contains("salary")),
        "{outcome:?}"
    );
    let mut injected = employee(1, "x");
    injected.insert("\"x\"; --".parse().unwrap(), Value::from(1_i64));
    let outcome = apply(
        &target,
        &command(TARGET, Op::Create, object, 1, TABLE, injected),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Permanent(_)), "{outcome:?}");
    let mut bad_value = employee(1, "x");
    bad_value.insert("employee_id".parse().unwrap(), Value::from("not a number"));
    let outcome = apply(
        &target,
        &command(TARGET, Op::Create, object, 1, TABLE, bad_value),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Permanent(_)), "{outcome:?}");
    assert_eq!(count(&pool).await, 0);
    // A table without the active column cannot be disabled until `activeColumn` names one.
    let target = pg_target(&db, "  activeColumn: enabled\n");
    let outcome = apply(
        &target,
        &command(TARGET, Op::Disable, object, 2, TABLE, attrs(&[])),
        Some("1"),
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::Permanent(m) if m.contains("activeColumn")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_down_database_is_a_retryable_failure() {
    let spec = format!(
        "  type: postgres-target\n  dsn: postgres://postgres@127.0.0.1:{}/payroll\n  keyColumn: employee_id\n  timeout: 1s\n",
        common::closed_port()
    );
    let targets = targets(&target_yaml(TARGET, &spec, TABLE), &[]);
    let target = targets.get(&TARGET.parse().unwrap()).unwrap();
    let outcome = apply(
        target,
        &command(
            TARGET,
            Op::Create,
            mesh_object(5),
            1,
            TABLE,
            employee(1, "x"),
        ),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Retryable(_)), "{outcome:?}");
}

#[test]
fn secrets_are_never_inline() {
    // The rule loader refuses a DSN with a password before any agent sees it.
    let spec = "  type: postgres-target\n  dsn: postgres://payroll:hunter2@db/payroll\n  keyColumn: employee_id\n";
    let error = mesh_engine::load(&[mesh_engine::SourceFile::new(
        "test.yaml",
        target_yaml(TARGET, spec, TABLE),
    )])
    .unwrap_err();
    assert!(
        error
            .problems
            .iter()
            .any(|p| p.code == "inline-secret" && p.message.contains("passwordEnv")),
        "{error:?}"
    );
    assert!(!format!("{error:?}").contains("hunter2"), "{error:?}");
    let spec = "  type: postgres-target\n  dsn: postgres://payroll@db/payroll\n  keyColumn: employee_id\n  passwordEnv: MESH_PAYROLL_PASSWORD\n";
    let error = provisioning_agent::Targets::from_rules_with_env(
        &common::rules(&target_yaml(TARGET, spec, TABLE)),
        &|_| Some("pw".into()),
    )
    .unwrap_err();
    assert!(error.to_string().contains("MESH_"), "{error}");
    let spec =
        "  type: postgres-target\n  dsn: postgres://payroll@db/payroll\n  keycolumn: employee_id\n";
    let error = provisioning_agent::Targets::from_rules_with_env(
        &common::rules(&target_yaml(TARGET, spec, TABLE)),
        &|_| None,
    )
    .unwrap_err();
    assert!(error.to_string().contains("keyColumn"), "{error}");
}

#[tokio::test]
async fn a_missing_secret_makes_only_that_target_unavailable() {
    let (db, _pool) = payroll().await;
    let yaml = [
        target_yaml(
            TARGET,
            &format!("  type: postgres-target\n  dsn: {}\n  keyColumn: employee_id\n", db.url()),
            TABLE,
        ),
        target_yaml(
            "locked-database",
            "  type: postgres-target\n  dsn: postgres://payroll@127.0.0.1/payroll\n  keyColumn: employee_id\n  passwordEnv: LOCKED_DATABASE_PASSWORD\n",
            TABLE,
        ),
    ]
    .concat();
    let targets = targets(&yaml, &[]);
    let locked = targets.get(&"locked-database".parse().unwrap()).unwrap();
    let outcome = apply(
        locked,
        &command(
            "locked-database",
            Op::Create,
            mesh_object(8),
            1,
            TABLE,
            employee(8, "x"),
        ),
        None,
    )
    .await;
    assert!(
        matches!(&outcome, Outcome::Retryable(m) if m.contains("LOCKED_DATABASE_PASSWORD")),
        "{outcome:?}"
    );
    let working = targets.get(&TARGET.parse().unwrap()).unwrap();
    let outcome = apply(
        working,
        &command(
            TARGET,
            Op::Create,
            mesh_object(8),
            1,
            TABLE,
            employee(8, "x"),
        ),
        None,
    )
    .await;
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
}
