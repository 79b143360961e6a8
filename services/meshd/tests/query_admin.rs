//! The query service's changes against a running pipeline (real nats-server and PostgreSQL;
//! correlation, flow and projection in this process): rule versions applied live and used by
//! the next events, a preview whose numbers equal what applying then does, rollback and
//! diff, a review entry joined by hand that holds, and an override that wins until removed.

#[path = "support/mesh.rs"]
mod mesh;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;
use mesh::Mesh;
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    EventId, ExternalId, ObjectType, Value,
};
use mesh_proto::v1;
use mesh_proto::v1::mesh_query_client::MeshQueryClient;
use mesh_proto::v1::rule_admin_client::RuleAdminClient;
use tonic::transport::Channel;

const QUIET: Duration = Duration::from_secs(60);

/// HR (authoritative, anchored) and a directory export (AD, joined by employee id, never
/// anchored), projected to payroll without contractors.
const RULES: &str = r#"
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId, authoritative: true }
---
kind: Connector
metadata: { name: ad }
spec: { type: scim-inbound, objectTypes: [User], externalIdAttribute: userName }
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
kind: JoinRule
metadata: { name: ad-by-employee-id }
spec: { connector: ad, sourceAttribute: employeeNumber, targetAttribute: EmployeeId, priority: 1 }
---
kind: FlowRule
metadata: { name: hr-employee-id }
spec: { connector: hr, direction: inbound, sourceAttribute: employeeId,
        targetAttribute: EmployeeId, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-name }
spec: { connector: hr, direction: inbound, sourceAttribute: name,
        targetAttribute: DisplayName, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-department }
spec: { connector: hr, direction: inbound, sourceAttribute: department,
        targetAttribute: Department, confidence: 95 }
---
kind: FlowRule
metadata: { name: ad-mail }
spec: { connector: ad, direction: inbound, sourceAttribute: mail,
        targetAttribute: Mail, confidence: 90 }
---
kind: ProjectionRule
metadata: { name: employees-to-payroll }
spec: { targetConnector: payroll, objectType: User, filter: 'Department != "Contractors"',
        container: public.employees, deprovision: delete }
"#;

fn object(connector: &str, id: &str) -> ConnectorObjectRef {
    ConnectorObjectRef {
        connector: ConnectorId::parse(connector).unwrap(),
        object_type: ObjectType::parse("User").unwrap(),
        external_id: ExternalId::parse(id).unwrap(),
    }
}

fn change(connector: &str, id: &str, attributes: &[(&str, &str)], n: u32) -> ChangeEvent {
    let attributes: Attributes = attributes
        .iter()
        .map(|(k, v)| (AttributeName::parse(k).unwrap(), Value::from(*v)))
        .collect();
    ChangeEvent {
        event_id: EventId::derive(
            "query-admin-test",
            format!("{connector}/{id}/{n}").as_bytes(),
        ),
        object: object(connector, id),
        operation: ChangeOperation::Upsert,
        attributes,
        source_time: Utc::now(),
    }
}

fn hr(n: u32, name: &str, department: &str) -> ChangeEvent {
    let id = format!("E{n:03}");
    change(
        "hr",
        &id,
        &[
            ("employeeId", &id),
            ("name", name),
            ("department", department),
        ],
        0,
    )
}

fn files(text: &str) -> Vec<v1::RuleFile> {
    vec![v1::RuleFile {
        path: "rules.yaml".into(),
        content: text.into(),
    }]
}

async fn clients(url: &str) -> (RuleAdminClient<Channel>, MeshQueryClient<Channel>) {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (
        RuleAdminClient::new(channel.clone()),
        MeshQueryClient::new(channel),
    )
}

/// Export commands recorded per (target, operation).
async fn export_counts(mesh: &Mesh) -> BTreeMap<(String, String), i64> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT target, operation, count(*) FROM exports GROUP BY target, operation",
    )
    .fetch_all(&mesh.pool)
    .await
    .unwrap();
    rows.into_iter().map(|(t, o, n)| ((t, o), n)).collect()
}

async fn attribute(mesh: &Mesh, employee: &str, name: &str) -> Option<serde_json::Value> {
    let row: Option<serde_json::Value> = sqlx::query_scalar(
        "SELECT o.attributes -> $2 FROM mesh_objects o \
         JOIN connector_objects c ON c.mesh_object = o.id \
         WHERE c.connector = 'hr' AND c.external_id = $1",
    )
    .bind(employee)
    .bind(name)
    .fetch_optional(&mesh.pool)
    .await
    .unwrap()
    .flatten();
    row
}

async fn mesh_object_of(mesh: &Mesh, connector: &str, id: &str) -> Option<uuid::Uuid> {
    sqlx::query_scalar(
        "SELECT mesh_object FROM connector_objects WHERE connector = $1 AND external_id = $2",
    )
    .bind(connector)
    .bind(id)
    .fetch_one(&mesh.pool)
    .await
    .unwrap()
}

async fn start() -> (Mesh, RuleAdminClient<Channel>, MeshQueryClient<Channel>) {
    let mut mesh = Mesh::start_with_text(RULES).await;
    for service in ["correlation", "flow", "projection"] {
        mesh.run_in_process(service);
    }
    let url = mesh.run_query(Vec::new()).await;
    let (admin, query) = clients(&url).await;
    (mesh, admin, query)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preview_equals_what_applying_then_does_and_the_next_events_use_the_new_version() {
    let (mut mesh, mut admin, _) = start().await;
    mesh.wait_swept("flow", 1, QUIET).await;
    let people = [
        hr(1, "Ada Lovelace", "Engineering"),
        hr(2, "Alan Turing", "Engineering"),
        hr(3, "Grace Hopper", "Engineering"),
        hr(4, "Edsger Dijkstra", "Research"),
        hr(5, "Carl Contract", "Contractors"),
        hr(6, "Cora Contract", "Contractors"),
    ];
    mesh.publish(&people).await;
    mesh.wait_quiet(QUIET).await;
    let before = export_counts(&mesh).await;
    assert_eq!(before[&("payroll".into(), "create".into())], 4);

    // Version 2: names in capitals, and contractors on payroll too.
    let v2 = RULES
        .replace(
            "sourceAttribute: name,\n        targetAttribute: DisplayName, confidence: 95 }",
            "sourceAttribute: name,\n        targetAttribute: DisplayName, confidence: 95,\n        transformScript: 'ToUpper(name)' }",
        )
        .replace("filter: 'Department != \"Contractors\"'", "filter: 'Department != \"Sales\"'");
    assert_ne!(v2, RULES);
    let preview = admin
        .preview_impact(v1::PreviewImpactRequest {
            files: files(&v2),
            sample_limit: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(preview.valid, "{:?}", preview.diagnostics);
    assert_eq!(preview.base_version, 1);
    assert_eq!(preview.objects_evaluated, 6);
    assert_eq!(preview.objects_changed, 6);
    assert_eq!(preview.attributes_changed, 6);
    assert_eq!(preview.attributes_changed_by_name["DisplayName"], 6);
    assert_eq!(preview.samples.len(), 2, "samples are capped");
    let payroll = &preview.targets[0];
    assert_eq!(payroll.target_connector, "payroll");
    assert_eq!(
        (
            payroll.entering_scope,
            payroll.updated,
            payroll.leaving_scope,
            payroll.deprovisions
        ),
        (2, 4, 0, 0)
    );
    assert!(!payroll.threshold_exceeded);
    // A preview writes nothing.
    assert_eq!(export_counts(&mesh).await, before);
    assert_eq!(
        attribute(&mesh, "E001", "DisplayName")
            .await
            .unwrap()
            .to_string(),
        r#""Ada Lovelace""#
    );

    let applied = admin
        .apply_rules(v1::ApplyRulesRequest {
            files: files(&v2),
            actor: "ops@example.com".into(),
            reason: "capital names; contractors paid too".into(),
            expected_current_version: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(applied.applied);
    assert_eq!(applied.version.unwrap().version, 2);
    mesh.wait_swept("flow", 2, QUIET).await;
    mesh.wait_swept("projection", 2, QUIET).await;
    mesh.wait_quiet(QUIET).await;

    let after = export_counts(&mesh).await;
    let new = |op: &str| {
        let key = ("payroll".to_owned(), op.to_owned());
        after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0)
    };
    assert_eq!(
        (new("create"), new("update"), new("delete")),
        (2, 4, 0),
        "applying issued what the preview said: {after:?}"
    );
    assert_eq!(
        attribute(&mesh, "E005", "DisplayName")
            .await
            .unwrap()
            .to_string(),
        r#""CARL CONTRACT""#
    );
    let stale: i64 =
        sqlx::query_scalar("SELECT count(*) FROM mesh_objects WHERE rule_version <> 2")
            .fetch_one(&mesh.pool)
            .await
            .unwrap();
    assert_eq!(
        stale, 0,
        "every mesh object was resolved again under version 2"
    );

    // The next event runs under version 2 and says so.
    mesh.publish(&[hr(7, "Barbara Liskov", "Research")]).await;
    mesh.wait_quiet(QUIET).await;
    assert_eq!(
        attribute(&mesh, "E007", "DisplayName")
            .await
            .unwrap()
            .to_string(),
        r#""BARBARA LISKOV""#
    );
    let version: i64 =
        sqlx::query_scalar("SELECT rule_version FROM connector_objects WHERE external_id = 'E007'")
            .fetch_one(&mesh.pool)
            .await
            .unwrap();
    assert_eq!(version, 2);
    let stamped: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT detail ->> 'ruleVersion' FROM audit_log a \
         JOIN connector_objects c ON c.mesh_object = a.mesh_object \
         WHERE c.external_id = 'E007' AND a.kind = 'values'",
    )
    .fetch_all(&mesh.pool)
    .await
    .unwrap();
    assert_eq!(
        stamped,
        ["2"],
        "the audit entries name the version that produced them"
    );
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE kind = 'rules.applied' \
         AND detail ->> 'actor' = 'ops@example.com' AND (detail ->> 'version')::int = 2",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_listed_diffed_rolled_back_and_an_invalid_set_is_refused_whole() {
    let (mut mesh, mut admin, _) = start().await;
    mesh.wait_swept("flow", 1, QUIET).await;
    let v2 = RULES.replace("confidence: 90", "confidence: 70");
    let applied = admin
        .apply_rules(v1::ApplyRulesRequest {
            files: files(&v2),
            actor: "ops".into(),
            reason: "trust AD mail less".into(),
            expected_current_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(applied.version.unwrap().version, 2);

    // A stale expectation is refused, not merged.
    let stale = admin
        .apply_rules(v1::ApplyRulesRequest {
            files: files(RULES),
            actor: "someone-else".into(),
            reason: String::new(),
            expected_current_version: Some(1),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");

    // An invalid rule refuses the whole set, with its position; nothing changes.
    let broken = format!(
        "{v2}---\nkind: FlowRule\nmetadata: {{ name: broken }}\nspec: {{ connector: nowhere, direction: inbound, sourceAttribute: x, targetAttribute: X, confidence: 50 }}\n"
    );
    let refused = admin
        .apply_rules(v1::ApplyRulesRequest {
            files: files(&broken),
            actor: "ops".into(),
            reason: String::new(),
            expected_current_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!refused.applied);
    let error = refused
        .diagnostics
        .iter()
        .find(|d| d.severity == v1::Severity::Error as i32)
        .expect("an error diagnostic");
    assert_eq!(error.file, "rules.yaml");
    // The `spec` line of the document after the separator.
    let spec_line = u32::try_from(v2.lines().count() + 4).unwrap();
    assert_eq!(
        (error.line, error.code.as_str()),
        (spec_line, "unknown-connector"),
        "{error:?}"
    );

    let diff = admin
        .diff_rule_versions(v1::DiffRuleVersionsRequest {
            from_version: 1,
            to_version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(diff.to_version, 2);
    assert_eq!(diff.changes.len(), 1);
    assert_eq!(
        (diff.changes[0].kind.as_str(), diff.changes[0].name.as_str()),
        ("FlowRule", "ad-mail")
    );
    assert!(
        diff.changes[0]
            .unified_diff
            .contains("+        targetAttribute: Mail, confidence: 70 }")
    );

    let rolled = admin
        .rollback_rules(v1::RollbackRulesRequest {
            to_version: 1,
            actor: "ops".into(),
            reason: "back".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .version
        .unwrap();
    assert_eq!((rolled.version, rolled.restored_from), (3, Some(1)));
    let listed = admin
        .list_rule_versions(v1::ListRuleVersionsRequest {
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.current_version, 3);
    assert_eq!(
        listed
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [3, 2]
    );
    let rest = admin
        .list_rule_versions(v1::ListRuleVersionsRequest {
            page_size: 2,
            page_token: listed.next_page_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rest.versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1]
    );
    assert!(rest.next_page_token.is_empty());
    let current = admin
        .get_rule_version(v1::GetRuleVersionRequest { version: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.version.unwrap().digest, {
        let v1 = admin
            .get_rule_version(v1::GetRuleVersionRequest { version: 1 })
            .await
            .unwrap()
            .into_inner();
        v1.version.unwrap().digest
    });
    mesh.wait_swept("flow", 3, QUIET).await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_entry_joined_by_hand_holds_and_an_override_wins_until_removed() {
    let (mut mesh, _, mut query) = start().await;
    mesh.publish(&[hr(1, "Ada Lovelace", "Engineering")]).await;
    // An AD account whose employee number matches nobody: a disconnector.
    mesh.publish(&[change(
        "ad",
        "ada",
        &[("employeeNumber", "X-1"), ("mail", "ada@example.com")],
        0,
    )])
    .await;
    mesh.wait_quiet(QUIET).await;
    assert_eq!(mesh_object_of(&mesh, "ad", "ada").await, None);
    let ada = mesh_object_of(&mesh, "hr", "E001").await.unwrap();

    let (last_event,): (uuid::Uuid,) = sqlx::query_as(
        "SELECT last_event FROM connector_objects WHERE connector = 'ad' AND external_id = 'ada'",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    let entry = query::review::entry_id(&object("ad", "ada"), last_event);
    let resolved = query
        .resolve_review_entry(v1::ResolveReviewEntryRequest {
            entry_id: entry.to_string(),
            resolution: Some(v1::resolve_review_entry_request::Resolution::Join(
                v1::resolve_review_entry_request::Join {
                    mesh_object_id: ada.to_string(),
                },
            )),
            actor: "reviewer".into(),
            reason: "same person, typo in AD".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resolved.audit_sequence > 0);
    mesh.wait_quiet(QUIET).await;
    assert_eq!(mesh_object_of(&mesh, "ad", "ada").await, Some(ada));
    assert_eq!(
        attribute(&mesh, "E001", "Mail").await.unwrap().to_string(),
        r#""ada@example.com""#
    );
    // Resolving it again is refused: the entry left the queue.
    let again = query
        .resolve_review_entry(v1::ResolveReviewEntryRequest {
            entry_id: entry.to_string(),
            resolution: Some(v1::resolve_review_entry_request::Resolution::Ignore(
                v1::resolve_review_entry_request::Ignore {},
            )),
            actor: "reviewer".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);

    // The join holds when the AD account changes (its employee number still matches nobody).
    mesh.publish(&[change(
        "ad",
        "ada",
        &[
            ("employeeNumber", "X-1"),
            ("mail", "ada.lovelace@example.com"),
        ],
        1,
    )])
    .await;
    mesh.wait_quiet(QUIET).await;
    assert_eq!(mesh_object_of(&mesh, "ad", "ada").await, Some(ada));
    assert_eq!(
        attribute(&mesh, "E001", "Mail").await.unwrap().to_string(),
        r#""ada.lovelace@example.com""#
    );

    // An override pins the attribute above every rule, until removed.
    let set = query
        .set_override(v1::SetOverrideRequest {
            mesh_object_id: ada.to_string(),
            attribute: "mail".into(),
            value: Some(Value::from("countess@example.com").into()),
            actor: "helpdesk".into(),
            reason: "ticket 42".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(set.audit_sequence > 0);
    mesh.wait_quiet(QUIET).await;
    assert_eq!(
        attribute(&mesh, "E001", "Mail").await.unwrap().to_string(),
        r#""countess@example.com""#
    );
    let removed = query
        .remove_override(v1::RemoveOverrideRequest {
            mesh_object_id: ada.to_string(),
            attribute: "Mail".into(),
            actor: "helpdesk".into(),
            reason: "resolved".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(removed.removed);
    assert!(removed.mesh_object_version > set.mesh_object_version);
    assert_eq!(
        attribute(&mesh, "E001", "Mail").await.unwrap().to_string(),
        r#""ada.lovelace@example.com""#
    );
    let verification = mesh_store::audit::verify(&mesh.pool).await.unwrap();
    assert!(verification.is_intact(), "{:?}", verification.problems);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_join_rule_joins_the_objects_waiting_for_it() {
    let (mut mesh, mut admin, _) = start().await;
    mesh.publish(&[hr(1, "Ada Lovelace", "Engineering")]).await;
    // AD carries the employee id under another name than the join rule reads.
    mesh.publish(&[change(
        "ad",
        "ada",
        &[("empId", "E001"), ("mail", "ada@example.com")],
        0,
    )])
    .await;
    mesh.wait_quiet(QUIET).await;
    assert_eq!(mesh_object_of(&mesh, "ad", "ada").await, None);

    let v2 = RULES.replace("sourceAttribute: employeeNumber", "sourceAttribute: empId");
    let applied = admin
        .apply_rules(v1::ApplyRulesRequest {
            files: files(&v2),
            actor: "ops".into(),
            reason: "AD sends empId".into(),
            expected_current_version: Some(1),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(applied.applied, "{:?}", applied.diagnostics);
    mesh.wait_swept("correlation", 2, QUIET).await;
    mesh.wait_quiet(QUIET).await;
    let ada = mesh_object_of(&mesh, "hr", "E001").await;
    assert!(ada.is_some());
    assert_eq!(mesh_object_of(&mesh, "ad", "ada").await, ada);
    assert_eq!(
        attribute(&mesh, "E001", "Mail").await.unwrap().to_string(),
        r#""ada@example.com""#
    );
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_replayed_after_the_rules_are_fixed_flows_once() {
    let (mut mesh, mut admin, mut query) = start().await;
    // A connector the rules do not define yet: correlation dead-letters its change.
    let change_of = change("badge", "b-1", &[("badgeId", "B1")], 0);
    mesh.publish(std::slice::from_ref(&change_of)).await;
    let letters = loop {
        let page = query
            .list_dead_letters(v1::ListDeadLettersRequest {
                stage: "correlation".into(),
                page_size: 10,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        if !page.entries.is_empty() {
            break page.entries;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters.len(), 1);
    let sequence = letters[0].dlq_sequence;
    assert!(
        letters[0]
            .dead_letter
            .as_ref()
            .unwrap()
            .reason
            .contains("connector `badge`"),
        "{letters:?}"
    );

    let fixed = format!(
        "{RULES}---\nkind: Connector\nmetadata: {{ name: badge }}\nspec: {{ type: hr-csv, objectTypes: [User], externalIdAttribute: badgeId }}\n"
    );
    let applied = admin
        .apply_rules(v1::ApplyRulesRequest {
            files: files(&fixed),
            actor: "ops".into(),
            reason: "define badge".into(),
            expected_current_version: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(applied.applied, "{:?}", applied.diagnostics);
    mesh.wait_swept("correlation", 2, QUIET).await;

    let replay = |query: &mut MeshQueryClient<Channel>| {
        let mut query = query.clone();
        async move {
            query
                .replay_dead_letter(v1::ReplayDeadLetterRequest {
                    dlq_sequence: sequence,
                    actor: "ops".into(),
                    reason: "badge is defined now".into(),
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = replay(&mut query).await;
    assert_eq!(first.subject, "mesh.change.badge");
    assert!(!first.duplicate);
    let second = replay(&mut query).await;
    assert!(second.duplicate, "one dead letter replays once: {second:?}");
    mesh.wait_quiet(QUIET).await;
    let state: String = sqlx::query_scalar(
        "SELECT state FROM connector_objects WHERE connector = 'badge' AND external_id = 'b-1'",
    )
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    assert_eq!(state, "disconnector", "the replayed change was correlated");
    let replays: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE kind = 'dead_letter.replayed' \
         AND (detail ->> 'dlqSequence')::bigint = $1",
    )
    .bind(i64::try_from(sequence).unwrap())
    .fetch_one(&mesh.pool)
    .await
    .unwrap();
    assert_eq!(replays, 2, "both replays are audited");
    mesh.stop().await;
}
