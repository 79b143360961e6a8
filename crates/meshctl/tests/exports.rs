//! `meshctl exports`, `rules apply|list|diff|rollback` and `preview` against a query service
//! running in this test process, on a real PostgreSQL and nats-server. The guard itself is
//! tested with the projection service in services/meshd/tests/projection.rs, rule changes
//! against a running pipeline in services/meshd/tests/query_admin.rs.

use std::process::{Command, Output};
use std::sync::Arc;

use mesh_bus::{Bus, Topology};
use mesh_testkit::{NatsServer, TestDatabase};
use tokio_util::sync::CancellationToken;

const RULES: &str = r#"
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId, authoritative: true }
---
kind: Connector
metadata: { name: payroll }
spec: { type: postgres-target, objectTypes: [User] }
---
kind: JoinRule
metadata: { name: hr-by-employee-id }
spec: { connector: hr, sourceAttribute: employeeId, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }
---
kind: FlowRule
metadata: { name: hr-name }
spec: { connector: hr, direction: inbound, sourceAttribute: name,
        targetAttribute: DisplayName, confidence: 95 }
---
kind: ProjectionRule
metadata: { name: employees-to-payroll }
spec: { targetConnector: payroll, objectType: User, container: public.employees,
        deprovision: delete }
"#;

struct Service {
    _nats: NatsServer,
    db: TestDatabase,
    url: String,
    dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl Service {
    /// A query service over a fresh, migrated database whose version 1 is [`RULES`].
    async fn start() -> Self {
        let nats = NatsServer::start().await.unwrap();
        let db = TestDatabase::create().await.unwrap();
        let pool = db.pool().await.unwrap();
        mesh_store::migrate(&pool).await.unwrap();
        let bus = Bus::from_client(nats.connect().await.unwrap());
        Topology::mesh().ensure(bus.jetstream()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("v1")).unwrap();
        std::fs::write(dir.path().join("v1/rules.yaml"), RULES).unwrap();
        let rules =
            mesh_stage::rules::load_versioned_rules_from(&dir.path().join("v1"), &pool, "test")
                .await
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(query::serve(
            query::Query::new(
                pool,
                bus,
                Arc::new(mesh_runtime::config::MeshConfig::default()),
                mesh_stage::RulesHandle::new(rules),
                &mesh_runtime::metrics::MetricsRegistry::new(),
            ),
            listener,
            stop.clone(),
        ));
        Self {
            _nats: nats,
            db,
            url,
            dir,
            stop,
        }
    }

    /// Runs meshctl (blocking the test's runtime would stall the in-process service).
    async fn meshctl(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_meshctl"));
        command
            .args(args)
            .env("MESHCTL_QUERY_URL", &self.url)
            .env("MESHCTL_ACTOR", "ops@example.com")
            .env_remove("MESHCTL_QUERY_TOKEN")
            .current_dir(self.dir.path());
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_releases_what_the_guard_holds_and_the_list_shows_it() {
    let service = Service::start().await;
    let pool = service.db.pool().await.unwrap();
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

    let listed = service.meshctl(&["exports", "--phase", "held"]).await;
    assert!(listed.status.success(), "{listed:?}");
    let text = stdout(&listed);
    assert!(text.contains("guard holding payroll"), "{text}");
    assert!(text.contains("delete"), "{text}");
    assert!(
        !text.contains("create"),
        "only held exports were asked for: {text}"
    );

    let approved = json(
        &service
            .meshctl(&[
                "exports",
                "approve",
                "payroll",
                "--reason",
                "leavers batch",
                "-o",
                "json",
            ])
            .await,
    );
    assert_eq!(
        approved,
        serde_json::json!({"target": "payroll", "released": 1})
    );
    let audited: String = sqlx::query_scalar(
        "SELECT detail ->> 'actor' FROM audit_log WHERE kind = 'exports.approved'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audited, "ops@example.com");

    let listed = json(
        &service
            .meshctl(&["exports", "--target", "payroll", "-o", "json"])
            .await,
    );
    let mut phases: Vec<&str> = listed["exports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    phases.sort_unstable();
    assert_eq!(phases, ["confirmed", "pending"]);

    // Nothing left to approve: a clear refusal, not a silent success.
    let again = service.meshctl(&["exports", "approve", "payroll"]).await;
    assert!(!again.status.success());
    assert!(stderr(&again).contains("is not holding"), "{again:?}");

    let bad = service.meshctl(&["exports", "--phase", "lost"]).await;
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("invalid value 'lost'"), "{bad:?}");
    service.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_applied_listed_diffed_previewed_and_rolled_back() {
    let service = Service::start().await;
    let v2 = service.dir.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(
        v2.join("rules.yaml"),
        RULES.replace("confidence: 95", "confidence: 90"),
    )
    .unwrap();
    let broken = service.dir.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    std::fs::write(
        broken.join("rules.yaml"),
        RULES.replace("targetConnector: payroll", "targetConnector: nowhere"),
    )
    .unwrap();

    let preview = json(
        &service
            .meshctl(&["preview", "-f", "v2", "-o", "json"])
            .await,
    );
    assert_eq!(preview["baseVersion"], 1);
    assert_eq!(preview["objectsEvaluated"], 0);
    assert_eq!(preview["targets"][0]["targetConnector"], "payroll");

    let refused = service
        .meshctl(&["rules", "apply", "-f", "broken", "--reason", "typo"])
        .await;
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let errors = stderr(&refused);
    assert!(
        errors.contains("rules.yaml:") && errors.contains("error[unknown-connector]"),
        "{errors}"
    );
    assert!(errors.contains("nothing was applied"), "{errors}");

    let applied = json(
        &service
            .meshctl(&[
                "rules",
                "apply",
                "-f",
                "v2",
                "--expect",
                "1",
                "--reason",
                "less trust",
                "-o",
                "json",
            ])
            .await,
    );
    assert_eq!(applied["applied"], true);
    assert_eq!(applied["version"]["version"], 2);
    assert_eq!(applied["version"]["actor"], "ops@example.com");

    let stale = service
        .meshctl(&["rules", "apply", "-f", "v1", "--expect", "1"])
        .await;
    assert!(!stale.status.success());
    assert!(
        stderr(&stale).contains("the current rule version is 2"),
        "{stale:?}"
    );

    let diff = service.meshctl(&["rules", "diff", "1"]).await;
    assert!(diff.status.success(), "{diff:?}");
    let text = stdout(&diff);
    assert!(text.contains("modified FlowRule hr-name"), "{text}");
    assert!(
        text.contains("+        targetAttribute: DisplayName, confidence: 90 }"),
        "{text}"
    );

    let rolled = service
        .meshctl(&["rules", "rollback", "1", "--reason", "back"])
        .await;
    assert!(rolled.status.success(), "{rolled:?}");
    assert!(stdout(&rolled).contains("version 3 restores version 1"));

    let listed = json(&service.meshctl(&["rules", "list", "-o", "json"]).await);
    assert_eq!(listed["currentVersion"], 3);
    let versions: Vec<u64> = listed["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 2, 1]);
    assert_eq!(listed["versions"][0]["restoredFrom"], 1);
    service.stop.cancel();
}
