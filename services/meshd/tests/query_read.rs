//! MeshQuery's queries against state the real pipeline built: correlation and flow run in this
//! process on a real nats-server and PostgreSQL, the query service serves on 127.0.0.1:0, and
//! a tonic client asks it. Lineage follows a source that withdraws, the search and the review
//! queue page through every item exactly once, the audit log is searched and verified (and an
//! edited row is found), dead letters are listed, and a bearer token is required.

#[path = "support/mesh.rs"]
mod mesh;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::Mesh;
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    EventId, ExternalId, ObjectType, Value,
};
use mesh_proto::v1;
use mesh_proto::v1::mesh_query_client::MeshQueryClient;
use mesh_runtime::config::MeshConfig;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

const QUIET: Duration = Duration::from_secs(60);
const TOKEN: &str = "query-read-test-token";

const RULES: &str = r#"
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId, authoritative: true }
---
kind: Connector
metadata: { name: directory }
spec: { type: ldap, objectTypes: [User], externalIdAttribute: objectGUID }
---
kind: JoinRule
metadata: { name: hr-by-employee-id }
spec: { connector: hr, sourceAttribute: employeeId, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }
---
kind: JoinRule
metadata: { name: directory-by-employee-id }
spec: { connector: directory, sourceAttribute: employeeID, targetAttribute: EmployeeId,
        priority: 1 }
---
kind: FlowRule
metadata: { name: hr-employee-id }
spec: { connector: hr, direction: inbound, sourceAttribute: employeeId,
        targetAttribute: EmployeeId, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-department }
spec: { connector: hr, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 90 }
---
kind: FlowRule
metadata: { name: directory-department }
spec: { connector: directory, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 70 }
"#;

fn change(connector: &str, id: &str, n: i64, attributes: &[(&str, &str)]) -> ChangeEvent {
    let source_time = DateTime::<Utc>::from_timestamp(1_767_225_600 + n, 0).unwrap();
    ChangeEvent {
        event_id: EventId::derive("query-read", format!("{connector}/{id}/{n}").as_bytes()),
        object: ConnectorObjectRef {
            connector: ConnectorId::parse(connector).unwrap(),
            object_type: ObjectType::parse("User").unwrap(),
            external_id: ExternalId::parse(id).unwrap(),
        },
        operation: ChangeOperation::Upsert,
        attributes: attributes
            .iter()
            .map(|(name, value)| (AttributeName::parse(name).unwrap(), Value::from(*value)))
            .collect::<Attributes>(),
        source_time,
    }
}

fn digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves MeshQuery over `mesh` (with [`TOKEN`] required) until the returned token is
/// cancelled; returns a client and the token.
async fn serve(mesh: &Mesh, page_size: u32) -> (MeshQueryClient<Channel>, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = MeshConfig::default();
    config.query.token_sha256 = vec![digest(TOKEN)];
    config.query.default_page_size = page_size;
    let query = query::Query::new(
        mesh.pool.clone(),
        mesh.bus.clone(),
        Arc::new(config),
        mesh_stage::RulesHandle::from_shared(mesh.rules.clone()),
        &mesh_runtime::metrics::MetricsRegistry::new(),
    );
    let stop = CancellationToken::new();
    tokio::spawn(query::serve(query, listener, stop.clone()));
    let client = MeshQueryClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, stop)
}

/// A request carrying the bearer token.
fn authed<T>(message: T) -> tonic::Request<T> {
    mesh::with_bearer(message, TOKEN)
}

fn text(value: Option<&v1::Value>) -> Value {
    Value::try_from(value.cloned().unwrap()).unwrap()
}

fn string(value: &str) -> Option<v1::Value> {
    Some(Value::from(value).into())
}

async fn find(
    client: &mut MeshQueryClient<Channel>,
    attribute: &str,
    value: &str,
    page_size: u32,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .find_mesh_objects(authed(v1::FindMeshObjectsRequest {
                object_type: String::new(),
                attribute: attribute.to_owned(),
                value: string(value),
                page_size,
                page_token,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.mesh_objects.len() <= page_size as usize);
        ids.extend(page.mesh_objects.into_iter().map(|o| o.id));
        if page.next_page_token.is_empty() {
            return ids;
        }
        page_token = page.next_page_token;
    }
}

async fn lineage(
    client: &mut MeshQueryClient<Channel>,
    id: &str,
    attribute: &str,
) -> v1::AttributeLineage {
    let response = client
        .get_mesh_object(authed(v1::GetMeshObjectRequest {
            mesh_object_id: id.to_owned(),
            attributes: vec![attribute.to_owned()],
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.lineage.len(), 1, "{response:#?}");
    response.lineage.into_iter().next().unwrap()
}

/// Every page of the review queue; each entry once.
async fn review_queue(client: &mut MeshQueryClient<Channel>) -> Vec<v1::ReviewEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_review_queue(authed(v1::ListReviewQueueRequest {
                page_size: 2,
                page_token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.entries.len() <= 2);
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

async fn audit_of(client: &mut MeshQueryClient<Channel>, id: &str) -> Vec<v1::AuditEntry> {
    let mut entries = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .search_audit(authed(v1::SearchAuditRequest {
                mesh_object_id: id.to_owned(),
                page_size: 2,
                page_token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        page_token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lineage_search_review_audit_and_dead_letters_over_a_running_pipeline() {
    let mut mesh = Mesh::start_with_text(RULES).await;
    mesh.run_in_process("correlation");
    mesh.run_in_process("flow");
    let mut events = vec![
        change(
            "hr",
            "1001",
            1,
            &[("employeeId", "1001"), ("department", "Sales")],
        ),
        change(
            "directory",
            "g-1001",
            2,
            &[("employeeID", "1001"), ("department", "Marketing")],
        ),
    ];
    for i in 2..=5 {
        let id = format!("100{i}");
        events.push(change(
            "hr",
            &id,
            2 + i,
            &[("employeeId", &id), ("department", "Sales")],
        ));
    }
    for i in 1..=3 {
        let id = format!("900{i}");
        events.push(change(
            "directory",
            &format!("g-{id}"),
            10 + i,
            &[("employeeID", &id)],
        ));
    }
    mesh.publish(&events).await;
    mesh.publish_raw("mesh.change.hr", "poison-1", b"\xff\xfe not protobuf")
        .await;
    mesh.wait_quiet(QUIET).await;
    let (mut client, stop) = serve(&mesh, 100).await;

    // A bearer token is required; a malformed id and an unknown one are told apart.
    let refused = client
        .get_mesh_object(v1::GetMeshObjectRequest {
            mesh_object_id: uuid::Uuid::nil().to_string(),
            attributes: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let malformed = client
        .get_mesh_object(authed(v1::GetMeshObjectRequest {
            mesh_object_id: "not-an-id".to_owned(),
            attributes: Vec::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        malformed.code(),
        tonic::Code::InvalidArgument,
        "{malformed}"
    );
    let unknown = client
        .get_mesh_object(authed(v1::GetMeshObjectRequest {
            mesh_object_id: uuid::Uuid::nil().to_string(),
            attributes: Vec::new(),
        }))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(unknown.message().contains("does not exist"), "{unknown}");

    // Find: EmployeeId through the join-key index, Department by scanning; pages of two give
    // every match exactly once, in id order.
    let ada = find(&mut client, "employeeid", "1001", 2).await;
    assert_eq!(ada.len(), 1, "{ada:?}");
    let ada = ada.into_iter().next().unwrap();
    let sales = find(&mut client, "Department", "Sales", 2).await;
    assert_eq!(sales.len(), 5, "{sales:?}");
    let mut sorted = sales.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, sales, "each once, in id order");
    assert!(sales.contains(&ada));
    assert!(
        find(&mut client, "Department", "Marketing", 2)
            .await
            .is_empty()
    );
    let bad_token = client
        .find_mesh_objects(authed(v1::FindMeshObjectsRequest {
            attribute: "Department".to_owned(),
            value: string("Sales"),
            page_token: "garbage".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), tonic::Code::InvalidArgument);

    // Lineage: HR's 90 beats the directory's 70; both are candidates, best first.
    let object = client
        .get_mesh_object(authed(v1::GetMeshObjectRequest {
            mesh_object_id: ada.clone(),
            attributes: Vec::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let joined: BTreeSet<String> = object
        .mesh_object
        .as_ref()
        .unwrap()
        .connector_objects
        .iter()
        .map(|r| format!("{}/{}/{}", r.connector, r.object_type, r.external_id))
        .collect();
    assert_eq!(
        joined,
        BTreeSet::from([
            "directory/User/g-1001".to_owned(),
            "hr/User/1001".to_owned()
        ])
    );
    let names: Vec<&str> = object.lineage.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["Department", "EmployeeId"], "in name order");
    let department = lineage(&mut client, &ada, "DEPARTMENT").await;
    assert_eq!(text(department.value.as_ref()), Value::from("Sales"));
    let winner = department.winner.as_ref().unwrap();
    assert_eq!(winner.rule, "hr-department");
    assert_eq!(winner.confidence, 90);
    assert_eq!(winner.connector, "hr");
    let candidates: Vec<(&str, u32, Value)> = department
        .candidates
        .iter()
        .map(|c| (c.rule.as_str(), c.confidence, text(c.value.as_ref())))
        .collect();
    assert_eq!(
        candidates,
        [
            ("hr-department", 90, Value::from("Sales")),
            ("directory-department", 70, Value::from("Marketing")),
        ]
    );
    assert!(
        department
            .candidates
            .iter()
            .all(|c| c.contributed_at.is_some())
    );
    assert!(department.r#override.is_none());

    // HR withdraws the department: the directory's value takes over, and lineage says so.
    mesh.publish(&[change("hr", "1001", 100, &[("employeeId", "1001")])])
        .await;
    mesh.wait_quiet(QUIET).await;
    let department = lineage(&mut client, &ada, "department").await;
    assert_eq!(text(department.value.as_ref()), Value::from("Marketing"));
    let winner = department.winner.as_ref().unwrap();
    assert_eq!(winner.rule, "directory-department");
    assert_eq!(winner.confidence, 70);
    assert_eq!(
        winner.connector_object.as_ref().unwrap().external_id,
        "g-1001"
    );
    assert_eq!(department.candidates.len(), 1, "{department:#?}");
    assert_eq!(
        find(&mut client, "Department", "Marketing", 2).await,
        std::slice::from_ref(&ada)
    );

    // The review queue: the three directory accounts nobody matched, each once over pages.
    let queue = review_queue(&mut client).await;
    let objects: BTreeSet<String> = queue
        .iter()
        .map(|e| e.object.as_ref().unwrap().external_id.clone())
        .collect();
    assert_eq!(
        objects,
        BTreeSet::from(["g-9001".into(), "g-9002".into(), "g-9003".into()])
    );
    assert_eq!(queue.len(), 3);
    for entry in &queue {
        assert_eq!(entry.reason, v1::ReviewReason::Disconnector as i32);
        assert!(entry.message.contains("no join rule"), "{}", entry.message);
        assert!(!entry.id.is_empty() && !entry.event_id.is_empty());
    }
    let ambiguous = client
        .list_review_queue(authed(v1::ListReviewQueueRequest {
            reason: v1::ReviewReason::Ambiguous.into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(ambiguous.entries.is_empty());
    let disconnector = client
        .get_connector_object(authed(v1::GetConnectorObjectRequest {
            object: Some(v1::ConnectorObjectRef {
                connector: "directory".into(),
                object_type: "User".into(),
                external_id: "g-9001".into(),
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .connector_object
        .unwrap();
    assert!(matches!(
        disconnector.join.unwrap().state,
        Some(v1::join_state::State::Disconnector(_))
    ));
    assert_eq!(
        text(disconnector.attributes.get("employeeID")),
        Value::from("9001")
    );

    // The audit log of the mesh object, over pages: every row about it, in time order.
    let entries = audit_of(&mut client, &ada).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE mesh_object = $1")
        .bind(uuid::Uuid::parse_str(&ada).unwrap())
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert_eq!(entries.len() as i64, rows);
    let actions: BTreeSet<&str> = entries.iter().map(|e| e.action.as_str()).collect();
    assert!(
        actions.contains("projection") && actions.contains("values"),
        "{actions:?}"
    );
    assert!(entries.iter().all(|e| e.mesh_object_id == ada));
    let times: Vec<_> = entries
        .iter()
        .map(|e| e.recorded_at.as_ref().map(|t| (t.seconds, t.nanos)))
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let values = entries.iter().find(|e| e.action == "values").unwrap();
    assert_eq!(values.actor, "flow");
    assert!(values.message.contains("Department"), "{}", values.message);
    assert_eq!(values.hash.len(), 64);

    // Verification: intact, then an edited row is reported with its sequence.
    let report = client
        .verify_audit_chain(authed(v1::VerifyAuditChainRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let all: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&mesh.pool)
        .await
        .unwrap();
    assert!(report.valid, "{report:?}");
    assert_eq!(report.entries_checked as i64, all);
    assert_eq!(report.head_hash.len(), 64);
    let (chain, seq): (String, i64) = sqlx::query_as(
        "SELECT chain, seq FROM audit_log WHERE mesh_object = $1 AND kind = 'values' \
         ORDER BY at LIMIT 1",
    )
    .bind(uuid::Uuid::parse_str(&ada).unwrap())
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE audit_log SET detail = '{\"tampered\": true}' WHERE chain = $1 AND seq = $2",
    )
    .bind(&chain)
    .bind(seq)
    .execute(&mesh.pool)
    .await
    .unwrap();
    let report = client
        .verify_audit_chain(authed(v1::VerifyAuditChainRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(!report.valid);
    assert_eq!(report.first_bad_sequence, Some(seq as u64));
    assert!(report.problem.contains("was changed"), "{}", report.problem);
    assert!(report.problem.contains(&chain), "{}", report.problem);

    // The poison message correlation gave up on.
    let letters = client
        .list_dead_letters(authed(v1::ListDeadLettersRequest {
            stage: "correlation".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(letters.entries.len(), 1, "{letters:#?}");
    assert!(letters.next_page_token.is_empty());
    let letter = letters.entries[0].dead_letter.as_ref().unwrap();
    assert_eq!(letter.stage, "correlation");
    assert_eq!(letter.payload, b"\xff\xfe not protobuf");
    let none = client
        .list_dead_letters(authed(v1::ListDeadLettersRequest {
            stage: "flow".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(none.entries.is_empty());
    let bad_stage = client
        .list_dead_letters(authed(v1::ListDeadLettersRequest {
            stage: "a.b".to_owned(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(bad_stage.code(), tonic::Code::InvalidArgument);

    stop.cancel();
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_status_and_the_export_list_read_the_projection_tables() {
    let mesh = Mesh::start_with_text(RULES).await;
    let id = uuid::Uuid::from_u128(0x7f1c_9a52_1d6e_4c2a_9a44_0b5e_5f2a_1001);
    for (key, version, status, result) in [
        ("a/payroll/1/create", 1, "confirmed", Some("applied")),
        (
            "a/payroll/2/update",
            2,
            "confirmed",
            Some("already-applied"),
        ),
        ("a/payroll/3/update", 3, "queued", Some("retryable-failure")),
        ("a/payroll/4/disable", 4, "held", None),
        ("a/crm/1/create", 1, "failed", Some("permanent-failure")),
    ] {
        let target = key.split('/').nth(1).unwrap();
        sqlx::query(
            "INSERT INTO exports (idempotency_key, mesh_object, target, operation, \
               mesh_object_version, rule, command, status, result, next_attempt_at, issued_at) \
             VALUES ($1, $2, $3, split_part($1, '/', 4), $4, $3 || '-users', '', $5, $6, \
               now(), now())",
        )
        .bind(key)
        .bind(id)
        .bind(target)
        .bind(version)
        .bind(status)
        .bind(result)
        .execute(&mesh.pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO projection_targets (mesh_object, target, status, attributes) \
         VALUES ($1, 'payroll', 'provisioned', '{\"name\": \"Ada\"}')",
    )
    .bind(id)
    .execute(&mesh.pool)
    .await
    .unwrap();
    let (mut client, stop) = serve(&mesh, 2).await;

    let status = client
        .get_export_status(authed(v1::GetExportStatusRequest {
            mesh_object_id: id.to_string(),
            target_connector: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    let targets: Vec<&str> = status
        .targets
        .iter()
        .map(|t| t.target_connector.as_str())
        .collect();
    assert_eq!(targets, ["crm", "payroll"]);
    let (crm, payroll) = (&status.targets[0], &status.targets[1]);
    assert!(payroll.in_scope && !crm.in_scope);
    assert_eq!(payroll.confirmed_version, 2);
    assert_eq!(payroll.rule, "payroll-users");
    assert_eq!(
        text(payroll.exported_attributes.get("name")),
        Value::from("Ada")
    );
    let phases: Vec<i32> = payroll.outstanding.iter().map(|r| r.phase).collect();
    assert_eq!(
        phases,
        [
            v1::ExportPhase::Pending as i32,
            v1::ExportPhase::Held as i32
        ],
        "oldest first"
    );
    assert!(
        payroll.outstanding[0].next_attempt_at.is_some(),
        "a retry is due"
    );
    assert_eq!(
        payroll.outstanding[0].last_status,
        v1::ExportStatus::RetryableFailure as i32
    );
    assert_eq!(crm.outstanding[0].phase, v1::ExportPhase::Failed as i32);

    // The list, two a page (the service default here), newest first, each command once.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_exports(authed(v1::ListExportsRequest {
                page_token,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.exports.len() <= 2);
        seen.extend(page.exports.iter().map(|e| (e.phase, e.attempts)));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].0, v1::ExportPhase::Failed as i32, "newest first");
    let confirmed = client
        .list_exports(authed(v1::ListExportsRequest {
            phase: v1::ExportPhase::Confirmed.into(),
            target_connector: "payroll".into(),
            page_size: 10,
            page_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(confirmed.exports.len(), 2);
    assert!(confirmed.next_page_token.is_empty());

    stop.cancel();
}
