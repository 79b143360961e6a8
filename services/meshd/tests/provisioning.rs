//! The whole pipeline into real targets: HR change events through correlation, flow,
//! projection and the provisioning agent into an OpenLDAP directory (slapd from the test kit),
//! a PostgreSQL table and a SCIM 2.0 service (the connector agent's own endpoint). Joiner,
//! mover into Contractors, leaver, rejoin within the grace period, deletion after it; a SCIM
//! target that is down for a while; every export command delivered twice.

#[path = "support/mesh.rs"]
mod mesh;

#[path = "../../provisioning-agent/tests/common/mod.rs"]
mod targets;

use std::time::Duration;

use chrono::Utc;
use ldap3::{LdapConnAsync, Scope, SearchEntry};
use mesh::Mesh;
use mesh_bus::Outgoing;
use mesh_bus::topology::streams;
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    EventId, ExportCommand, ExternalId, ObjectType, Value,
};
use mesh_proto::WireEvent;
use mesh_testkit::{Slapd, TestDatabase, assert_eventually};
use targets::{SCIM_TOKEN, ScimServer};

const WAIT: Duration = Duration::from_secs(30);

fn rules(payroll: &str, directory: &str, scim: &str) -> String {
    format!(
        r#"
kind: Connector
metadata: {{ name: hr }}
spec: {{ type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId,
        authoritative: true, inactiveWhen: 'status == "Terminated"' }}
---
kind: Connector
metadata: {{ name: hr-database }}
spec: {{ type: postgres-target, objectTypes: [User], dsn: '{payroll}', keyColumn: employee_id }}
---
kind: Connector
metadata: {{ name: app-directory }}
spec: {{ type: ldap-target, objectTypes: [User], url: '{directory}',
        bindDn: '{root}', passwordEnv: APP_DIRECTORY_PASSWORD }}
---
kind: Connector
metadata: {{ name: saas-app }}
spec: {{ type: scim-target, objectTypes: [User], url: '{scim}', tokenEnv: SAAS_APP_TOKEN }}
---
kind: JoinRule
metadata: {{ name: hr-by-employee-id }}
spec: {{ connector: hr, sourceAttribute: employeeId, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }}
---
kind: FlowRule
metadata: {{ name: hr-employee-id }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: employeeId,
        targetAttribute: EmployeeId, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: hr-first-name }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: givenName,
        targetAttribute: FirstName, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: hr-last-name }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: surname,
        targetAttribute: LastName, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: hr-department }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 95 }}
---
kind: MeshComposerRule
metadata: {{ name: user-name }}
spec: {{ objectType: User, targetAttribute: UserName, confidence: 90,
        transformScript: 'ToLower(Concat(Left(FirstName, 1), LastName))' }}
---
kind: MeshComposerRule
metadata: {{ name: display-name }}
spec: {{ objectType: User, targetAttribute: DisplayName, confidence: 60,
        transformScript: 'Concat(FirstName, " ", LastName)' }}
---
kind: ProjectionRule
metadata: {{ name: employees-to-hr-database }}
spec: {{ targetConnector: hr-database, objectType: User, filter: 'Department != "Contractors"',
        container: public.employees, deprovision: delete }}
---
kind: ProjectionRule
metadata: {{ name: users-to-app-directory }}
spec: {{ targetConnector: app-directory, objectType: User, container: '{people}',
        deprovision: disable-then-delete, gracePeriod: 3s }}
---
kind: ProjectionRule
metadata: {{ name: users-to-saas-app }}
spec: {{ targetConnector: saas-app, objectType: User, container: Users, deprovision: disable }}
---
kind: FlowRule
metadata: {{ name: db-employee-id }}
spec: {{ connector: hr-database, direction: outbound, sourceAttribute: EmployeeId,
        targetAttribute: employee_id }}
---
kind: FlowRule
metadata: {{ name: db-display-name }}
spec: {{ connector: hr-database, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: display_name }}
---
kind: FlowRule
metadata: {{ name: db-department }}
spec: {{ connector: hr-database, direction: outbound, sourceAttribute: Department,
        targetAttribute: department }}
---
kind: FlowRule
metadata: {{ name: dir-uid }}
spec: {{ connector: app-directory, direction: outbound, sourceAttribute: UserName,
        targetAttribute: uid }}
---
kind: FlowRule
metadata: {{ name: dir-cn }}
spec: {{ connector: app-directory, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: cn }}
---
kind: FlowRule
metadata: {{ name: dir-sn }}
spec: {{ connector: app-directory, direction: outbound, sourceAttribute: LastName,
        targetAttribute: sn }}
---
kind: FlowRule
metadata: {{ name: dir-department }}
spec: {{ connector: app-directory, direction: outbound, sourceAttribute: Department,
        targetAttribute: departmentNumber }}
---
kind: FlowRule
metadata: {{ name: scim-user-name }}
spec: {{ connector: saas-app, direction: outbound, sourceAttribute: UserName,
        targetAttribute: userName }}
---
kind: FlowRule
metadata: {{ name: scim-display-name }}
spec: {{ connector: saas-app, direction: outbound, sourceAttribute: DisplayName,
        targetAttribute: displayName }}
---
kind: FlowRule
metadata: {{ name: scim-family-name }}
spec: {{ connector: saas-app, direction: outbound, sourceAttribute: LastName,
        targetAttribute: name.familyName }}
"#,
        root = Slapd::ROOT_DN,
        people = Slapd::PEOPLE,
    )
}

fn hr(n: u32, department: &str, status: &str, step: i64) -> ChangeEvent {
    let attributes: Attributes = [
        ("employeeId", format!("E{n:04}")),
        ("givenName", "Ada".to_owned()),
        ("surname", format!("Lovelace{n}")),
        ("department", department.to_owned()),
        ("status", status.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (AttributeName::parse(k).unwrap(), Value::from(v)))
    .collect();
    ChangeEvent {
        event_id: EventId::derive("provisioning-test", format!("{n}/{step}").as_bytes()),
        object: ConnectorObjectRef {
            connector: ConnectorId::parse("hr").unwrap(),
            object_type: ObjectType::parse("User").unwrap(),
            external_id: ExternalId::parse(&format!("E{n:04}")).unwrap(),
        },
        operation: ChangeOperation::Upsert,
        attributes,
        // The grace period runs from the change's time: keep it at the wall clock.
        source_time: Utc::now(),
    }
}

/// The directory as seen by its root DN.
struct Directory {
    url: String,
}

impl Directory {
    /// The entry with `uid`: its attributes, operational ones included.
    async fn entry(&self, uid: &str) -> Option<SearchEntry> {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(Slapd::ROOT_DN, Slapd::ROOT_PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        let (entries, _) = ldap
            .search(
                Slapd::PEOPLE,
                Scope::OneLevel,
                &format!("(uid={uid})"),
                vec!["*", "+"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
        entries.into_iter().next().map(SearchEntry::construct)
    }

    async fn count(&self) -> usize {
        let (conn, mut ldap) = LdapConnAsync::new(&self.url).await.unwrap();
        ldap3::drive!(conn);
        ldap.simple_bind(Slapd::ROOT_DN, Slapd::ROOT_PASSWORD)
            .await
            .unwrap()
            .success()
            .unwrap();
        let (entries, _) = ldap
            .search(
                Slapd::PEOPLE,
                Scope::OneLevel,
                "(objectClass=*)",
                vec!["1.1"],
            )
            .await
            .unwrap()
            .success()
            .unwrap();
        let _ = ldap.unbind().await;
        entries.len()
    }

    async fn locked(&self, uid: &str) -> bool {
        self.entry(uid)
            .await
            .is_some_and(|e| e.attrs.contains_key("pwdAccountLockedTime"))
    }
}

async fn payroll_row(pool: &sqlx::PgPool, id: &str) -> Option<(String, String)> {
    sqlx::query_as("SELECT display_name, department FROM public.employees WHERE employee_id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn payroll_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM public.employees")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The SCIM user named `user_name`, if exactly one exists.
async fn scim_user(scim: &ScimServer, user_name: &str) -> Option<serde_json::Value> {
    let users = scim.users_named(user_name).await;
    assert!(users.len() <= 1, "duplicate SCIM users: {users:#?}");
    users.into_iter().next()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiner_mover_leaver_and_rejoin_land_exactly_once_in_ldap_postgres_and_scim() {
    let slapd = Slapd::start().await.unwrap();
    let directory = Directory { url: slapd.url() };
    let (payroll, payroll_pool) = TestDatabase::with_schema(
        "CREATE TABLE public.employees (employee_id text PRIMARY KEY, display_name text, \
         department text, active boolean NOT NULL DEFAULT true)",
    )
    .await
    .unwrap();
    // The SCIM target is down when the joiner arrives: its port is chosen now, its server
    // started later.
    let scim_port = mesh_testkit::free_port().unwrap();
    let scim_url = format!(
        "http://127.0.0.1:{scim_port}/scim/v2/{}",
        targets::SCIM_ENDPOINT
    );

    let mut mesh = Mesh::start_with_text(&rules(payroll.url(), &slapd.url(), &scim_url)).await;
    mesh.target_env.insert(
        "APP_DIRECTORY_PASSWORD".to_owned(),
        Slapd::ROOT_PASSWORD.to_owned(),
    );
    mesh.target_env
        .insert("SAAS_APP_TOKEN".to_owned(), SCIM_TOKEN.to_owned());
    // Retries every 100..400 ms, 40 times: the SCIM target may stay down for seconds.
    mesh.max_attempts = 40;
    for service in ["correlation", "flow", "projection", "provisioning-agent"] {
        mesh.run_in_process(service);
    }

    // Joiner: in the directory and the payroll table; the SCIM service is down.
    mesh.publish(&[hr(1, "Engineering", "Active", 0)]).await;
    assert_eventually!(WAIT, directory.entry("alovelace1").await.is_some());
    assert_eventually!(WAIT, payroll_row(&payroll_pool, "E0001").await.is_some());
    let entry = directory.entry("alovelace1").await.unwrap();
    assert_eq!(entry.attrs["cn"], ["Ada Lovelace1"]);
    assert_eq!(entry.attrs["departmentNumber"], ["Engineering"]);
    assert_eq!(
        payroll_row(&payroll_pool, "E0001").await,
        Some(("Ada Lovelace1".to_owned(), "Engineering".to_owned()))
    );
    let retried: i64 = sqlx::query_scalar(
        "SELECT attempts::bigint FROM exports WHERE target = 'saas-app' AND operation = 'create'",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The SCIM service comes back: the retried create catches up, once.
    let scim = ScimServer::start_owned(scim_port).await;
    assert_eventually!(WAIT, scim_user(&scim, "alovelace1").await.is_some());
    let attempts: i64 = sqlx::query_scalar(
        "SELECT attempts::bigint FROM exports WHERE target = 'saas-app' AND operation = 'create'",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    assert!(
        attempts > 1 && attempts >= retried,
        "the create was retried: {attempts} attempts"
    );
    let user = scim_user(&scim, "alovelace1").await.unwrap();
    assert_eq!(user["displayName"], "Ada Lovelace1");
    assert_eq!(user["active"], true);

    // Mover into Contractors: removed from the payroll table (its rule deletes), the
    // directory gets the new department, the SCIM user is unchanged.
    let scim_version = user["meta"]["version"].clone();
    mesh.publish(&[hr(1, "Contractors", "Active", 1)]).await;
    assert_eventually!(WAIT, payroll_row(&payroll_pool, "E0001").await.is_none());
    assert_eventually!(
        WAIT,
        directory.entry("alovelace1").await.unwrap().attrs["departmentNumber"] == ["Contractors"]
    );
    let user = scim_user(&scim, "alovelace1").await.unwrap();
    assert_eq!(user["meta"]["version"], scim_version, "SCIM user untouched");

    // Leaver: disabled in the directory (locked) and the SCIM service (active: false).
    mesh.publish(&[hr(1, "Contractors", "Terminated", 2)]).await;
    assert_eventually!(WAIT, directory.locked("alovelace1").await);
    assert_eventually!(
        WAIT,
        scim_user(&scim, "alovelace1").await.unwrap()["active"] == false
    );
    // Back within the grace period: enabled again everywhere, nothing deleted.
    mesh.publish(&[hr(1, "Contractors", "Active", 3)]).await;
    assert_eventually!(WAIT, !directory.locked("alovelace1").await);
    assert_eventually!(
        WAIT,
        scim_user(&scim, "alovelace1").await.unwrap()["active"] == true
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        directory.entry("alovelace1").await.is_some(),
        "a rejoin in the grace period keeps the entry"
    );

    // Leaver for good: disabled, then deleted from the directory once 3 s have passed; the
    // SCIM rule only disables.
    mesh.publish(&[hr(1, "Contractors", "Terminated", 4)]).await;
    assert_eventually!(WAIT, directory.locked("alovelace1").await);
    assert_eventually!(WAIT, directory.entry("alovelace1").await.is_none());
    let user = scim_user(&scim, "alovelace1").await.unwrap();
    assert_eq!(user["active"], false);

    // A second person, then every export command delivered again under new message ids:
    // one effect in each target.
    mesh.publish(&[hr(2, "Engineering", "Active", 0)]).await;
    assert_eventually!(WAIT, scim_user(&scim, "alovelace2").await.is_some());
    assert_eventually!(WAIT, payroll_row(&payroll_pool, "E0002").await.is_some());
    assert_eventually!(WAIT, directory.entry("alovelace2").await.is_some());
    mesh.wait_quiet(WAIT).await;
    let before = (
        directory.count().await,
        payroll_count(&payroll_pool).await,
        scim.user_count().await,
        scim_user(&scim, "alovelace2").await.unwrap()["meta"]["version"].clone(),
    );
    let commands: Vec<ExportCommand> = mesh
        .read_stream(streams::EXPORTS)
        .await
        .into_iter()
        .map(|(_, payload)| ExportCommand::from_wire(&payload).unwrap())
        .collect();
    let messages = commands.iter().map(|c| {
        Outgoing::event(
            format!("mesh.export.{}", c.target),
            format!("{}/{}/again", c.idempotency_key, c.attempt),
            c.clone(),
        )
    });
    let duplicates = mesh.bus.publisher().publish_all(messages).await.unwrap();
    assert!(duplicates.iter().all(|d| !d), "each copy is a new message");
    // Quiet: the agent consumed and acked every copy (its answers repeat the first ones'
    // message ids, which JetStream drops).
    mesh.wait_quiet(WAIT).await;
    let after = (
        directory.count().await,
        payroll_count(&payroll_pool).await,
        scim.user_count().await,
        scim_user(&scim, "alovelace2").await.unwrap()["meta"]["version"].clone(),
    );
    assert_eq!(after, before, "the repeated commands changed a target");
    assert_eq!(
        before.0, 1,
        "only the second person is left in the directory"
    );
    assert_eq!(
        before.1, 1,
        "only the second person is in the payroll table"
    );
    assert_eq!(
        before.2, 2,
        "both people in the SCIM service, the first disabled"
    );
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM exports WHERE status <> 'confirmed'")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(open, 0, "every export is confirmed");
    mesh.stop().await;
}
