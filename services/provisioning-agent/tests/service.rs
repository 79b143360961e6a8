//! The provisioning agent end to end on a private nats-server and PostgreSQL: export commands
//! published to MESH_EXPORTS, each twice under distinct message ids (so JetStream's duplicate
//! window does not hide the repeat), land once in a real SCIM 2.0 endpoint, a PostgreSQL table
//! and an OpenLDAP directory, and their results come back on MESH_RESULTS.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::{ScimServer, attrs, command, mesh_object, target_yaml};
use mesh_bus::{Bus, ConsumerSettings, Outgoing, Topology};
use mesh_model::{ExportCommand, ExportOperation as Op, ExportResult, ExportStatus, Value};
use mesh_proto::WireEvent as _;
use mesh_runtime::metrics::MetricsRegistry;
use mesh_testkit::{NatsServer, Slapd, TestDatabase, assert_eventually};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

const SCIM: &str = "saas-app";
const PG: &str = "hr-database";
const LDAP: &str = "app-directory";
const DOWN: &str = "legacy-database";
const TABLE: &str = "dbo.Employees";

fn scim_attributes(n: u32, version: u64) -> mesh_model::Attributes {
    attrs(&[
        ("userName", Value::from(format!("user{n}"))),
        ("displayName", Value::from(format!("User {n} v{version}"))),
        ("name.familyName", Value::from(format!("Family{n}"))),
        (
            "emails[work].value",
            Value::from(format!("user{n}@example.com")),
        ),
    ])
}

fn pg_attributes(n: u32, version: u64) -> mesh_model::Attributes {
    attrs(&[
        ("employee_id", Value::from(i64::from(n))),
        ("display_name", Value::from(format!("User {n} v{version}"))),
        ("department", Value::from("Engineering")),
    ])
}

fn ldap_attributes(n: u32, version: u64) -> mesh_model::Attributes {
    attrs(&[
        ("uid", Value::from(format!("user{n}"))),
        ("cn", Value::from(format!("User {n} v{version}"))),
        ("sn", Value::from(format!("Family{n}"))),
    ])
}

/// Per target: object 1 is created and updated, object 2 created, disabled and enabled,
/// object 3 created and deleted.
fn lifecycle(
    target: &str,
    container: &str,
    shape: fn(u32, u64) -> mesh_model::Attributes,
) -> Vec<ExportCommand> {
    let update = |n: u32, version: u64| {
        let all = shape(n, version);
        // Only what changed: the display name.
        all.into_iter()
            .filter(|(name, _)| matches!(name.key(), "displayname" | "display_name" | "cn"))
            .collect()
    };
    let none = mesh_model::Attributes::new;
    vec![
        command(
            target,
            Op::Create,
            mesh_object(1),
            1,
            container,
            shape(1, 1),
        ),
        command(
            target,
            Op::Create,
            mesh_object(2),
            1,
            container,
            shape(2, 1),
        ),
        command(
            target,
            Op::Create,
            mesh_object(3),
            1,
            container,
            shape(3, 1),
        ),
        command(
            target,
            Op::Update,
            mesh_object(1),
            2,
            container,
            update(1, 2),
        ),
        command(target, Op::Disable, mesh_object(2), 2, container, none()),
        command(target, Op::Delete, mesh_object(3), 2, container, none()),
        command(target, Op::Enable, mesh_object(2), 3, container, none()),
    ]
}

async fn publish(bus: &Bus, commands: &[ExportCommand], copy: &str) {
    let messages = commands.iter().map(|c| {
        Outgoing::event(
            format!("mesh.export.{}", c.target),
            format!("{}#{copy}#{}", c.idempotency_key, c.attempt),
            c.clone(),
        )
    });
    let duplicates = bus.publisher().publish_all(messages).await.unwrap();
    assert!(
        duplicates.iter().all(|d| !d),
        "every copy has its own message id"
    );
}

/// Every result on MESH_RESULTS with its subject and message id.
async fn results(bus: &Bus) -> Vec<(String, String, ExportResult)> {
    let stream = bus.jetstream().get_stream("MESH_RESULTS").await.unwrap();
    let info = stream.get_info().await.unwrap();
    let mut out = Vec::new();
    if info.state.messages == 0 {
        return out;
    }
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let result = ExportResult::from_wire(&message.payload).unwrap();
        out.push((message.subject.to_string(), id, result));
    }
    out
}

async fn scalar(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_delivered_twice_lands_once_in_each_target() {
    let nats = NatsServer::start().await.unwrap();
    let db = TestDatabase::create().await.unwrap();
    let pool = db.pool().await.unwrap();
    mesh_store::migrate(&pool).await.unwrap();
    let bus = Bus::connect(&mesh_bus::ConnectOptions {
        url: nats.url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let topology = Topology::mesh();
    topology.ensure(bus.jetstream()).await.unwrap();

    let scim = ScimServer::start_on(&bus, pool.clone()).await;
    let payroll = TestDatabase::create().await.unwrap();
    let payroll_pool = payroll.pool().await.unwrap();
    sqlx::raw_sql(
        "CREATE SCHEMA dbo;
         CREATE TABLE dbo.employees (employee_id integer PRIMARY KEY, display_name text,
                                     department text, active boolean NOT NULL DEFAULT true);",
    )
    .execute(&payroll_pool)
    .await
    .unwrap();
    let slapd = Slapd::start().await.unwrap();

    let yaml = [
        target_yaml(
            SCIM,
            &format!(
                "  type: scim-target\n  url: {}\n  tokenEnv: SAAS_APP_SCIM_TOKEN\n",
                scim.base_url()
            ),
            "Users",
        ),
        target_yaml(
            PG,
            &format!(
                "  type: postgres-target\n  dsn: {}\n  keyColumn: employee_id\n",
                payroll.url()
            ),
            TABLE,
        ),
        target_yaml(
            LDAP,
            &format!(
                "  type: ldap-target\n  url: {}\n  bindDn: '{}'\n  passwordEnv: APP_DIRECTORY_PASSWORD\n",
                slapd.url(),
                Slapd::ROOT_DN
            ),
            Slapd::PEOPLE,
        ),
        target_yaml(
            DOWN,
            &format!(
                "  type: postgres-target\n  dsn: postgres://postgres@127.0.0.1:{}/legacy\n  keyColumn: employee_id\n  timeout: 1s\n",
                common::closed_port()
            ),
            TABLE,
        ),
    ]
    .concat();
    let targets = Arc::new(common::targets(
        &yaml,
        &[
            ("SAAS_APP_SCIM_TOKEN", common::SCIM_TOKEN),
            ("APP_DIRECTORY_PASSWORD", Slapd::ROOT_PASSWORD),
        ],
    ));

    let metrics = MetricsRegistry::new();
    let shutdown = CancellationToken::new();
    let agent = {
        let (bus, pool, metrics, topology, shutdown) = (
            bus.clone(),
            pool.clone(),
            metrics.clone(),
            topology.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            provisioning_agent::run_with_targets(
                targets,
                &bus,
                pool,
                &metrics,
                &topology,
                &ConsumerSettings::default(),
                shutdown,
            )
            .await
        })
    };

    let mut commands = lifecycle(SCIM, "Users", scim_attributes);
    commands.extend(lifecycle(PG, TABLE, pg_attributes));
    commands.extend(lifecycle(LDAP, Slapd::PEOPLE, ldap_attributes));
    // Each command twice in a row (often in one batch), then all of them once more later.
    for command in &commands {
        publish(&bus, std::slice::from_ref(command), "a").await;
        publish(&bus, std::slice::from_ref(command), "b").await;
    }
    let down = command(
        DOWN,
        Op::Create,
        mesh_object(9),
        1,
        TABLE,
        pg_attributes(9, 1),
    );
    publish(&bus, std::slice::from_ref(&down), "a").await;
    assert_eventually!(
        Duration::from_secs(30),
        results(&bus).await.len() == commands.len() + 1,
        "results: {:?}",
        results(&bus).await.len()
    );
    publish(&bus, &commands, "c").await;
    let mut retry = down.clone();
    retry.attempt = 2;
    publish(&bus, std::slice::from_ref(&retry), "a").await;
    let delivered = i64::try_from(commands.len() * 3 + 2).unwrap();
    assert_eventually!(
        Duration::from_secs(30),
        scalar(
            &pool,
            "SELECT count(*) FROM inbox WHERE consumer = 'provisioning'"
        )
        .await
            == delivered,
        "processed {} of {delivered}",
        scalar(
            &pool,
            "SELECT count(*) FROM inbox WHERE consumer = 'provisioning'"
        )
        .await
    );
    assert_eventually!(
        Duration::from_secs(10),
        results(&bus).await.len() == commands.len() + 2
    );

    // One result per command and attempt (the repeats republished the same message id), on
    // the target's subject; the first copy applied each command.
    let results = results(&bus).await;
    let mut by_key: BTreeMap<(String, u32), &ExportResult> = BTreeMap::new();
    for (subject, msg_id, result) in &results {
        assert_eq!(subject, &format!("mesh.result.{}", result.target));
        assert_eq!(
            msg_id,
            &provisioning_agent::handler::result_msg_id(
                result.idempotency_key.as_str(),
                result.attempt
            )
        );
        let previous = by_key.insert((result.idempotency_key.to_string(), result.attempt), result);
        assert!(
            previous.is_none(),
            "two results for {}",
            result.idempotency_key
        );
    }
    for command in &commands {
        let result = by_key[&(command.idempotency_key.to_string(), 1)];
        assert_eq!(
            result.status,
            ExportStatus::Applied,
            "{}: {}",
            command.idempotency_key,
            result.message
        );
        assert!(result.target_object_id.is_some());
    }
    for attempt in [1, 2] {
        let result = by_key[&(down.idempotency_key.to_string(), attempt)];
        assert_eq!(result.status, ExportStatus::RetryableFailure);
        assert!(!result.message.is_empty());
    }

    // One effect per target: counted in the target.
    assert_eq!(scim.user_count().await, 2);
    let user1 = &scim.users_named("user1").await[0];
    assert_eq!(user1["displayName"], "User 1 v2");
    assert_eq!(scim.users_named("user2").await[0]["active"], true);
    assert!(scim.users_named("user3").await.is_empty());

    let rows: Vec<(i32, String, bool)> = sqlx::query_as(
        "SELECT employee_id, display_name, active FROM dbo.employees ORDER BY employee_id",
    )
    .fetch_all(&payroll_pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            (1, "User 1 v2".to_owned(), true),
            (2, "User 2 v1".to_owned(), true)
        ]
    );

    let (conn, mut ldap) = ldap3::LdapConnAsync::new(&slapd.url()).await.unwrap();
    ldap3::drive!(conn);
    ldap.simple_bind(Slapd::ROOT_DN, Slapd::ROOT_PASSWORD)
        .await
        .unwrap()
        .success()
        .unwrap();
    let ldap3::SearchResult(entries, _) = ldap
        .search(
            Slapd::PEOPLE,
            ldap3::Scope::OneLevel,
            "(objectClass=inetOrgPerson)",
            vec!["cn", "pwdAccountLockedTime"],
        )
        .await
        .unwrap();
    let mut entries: Vec<(String, Vec<String>, bool)> = entries
        .into_iter()
        .map(ldap3::SearchEntry::construct)
        .map(|e| {
            let locked = e.attrs.contains_key("pwdAccountLockedTime");
            (e.dn, e.attrs["cn"].clone(), locked)
        })
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        vec![
            (
                "uid=user1,ou=people,dc=corp,dc=example,dc=com".to_owned(),
                vec!["User 1 v2".to_owned()],
                false
            ),
            (
                "uid=user2,ou=people,dc=corp,dc=example,dc=com".to_owned(),
                vec!["User 2 v1".to_owned()],
                false
            ),
        ]
    );

    // The agent's record: every key applied once; failures not recorded; the objects held.
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM provisioning_applied").await,
        i64::try_from(commands.len()).unwrap()
    );
    assert_eq!(
        scalar(
            &pool,
            "SELECT count(*) FROM provisioning_applied WHERE target = 'legacy-database'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(&pool, "SELECT count(*) FROM provisioning_objects").await,
        6
    );
    let text = metrics.encode().unwrap();
    assert!(
        text.contains(
            "mesh_provisioning_exports_total{target_connector=\"hr-database\",operation=\"create\",status=\"applied\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "mesh_provisioning_exports_total{target_connector=\"legacy-database\",operation=\"create\",status=\"retryable_failure\"} 2"
        ),
        "{text}"
    );

    shutdown.cancel();
    agent.await.unwrap().unwrap();
}
