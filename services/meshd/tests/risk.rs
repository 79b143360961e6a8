//! The risk service on a real nats-server, PostgreSQL and Redis, behind correlation and flow:
//! identities come from HR and a directory through the pipeline; signals arrive over gRPC
//! `ReportSignal` and MESH_SIGNALS; decisions are asked over gRPC `Decide`. Covers each
//! reference policy of examples/rules/access.yaml, impossible travel, the sliding window,
//! lifecycle from MeshObjectChanged, the risk level fed back into the mesh, Redis stopped
//! and started, and poison on the risk consumers' inputs dead-lettered.

#[path = "support/mesh.rs"]
mod mesh;

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh::Mesh;
use mesh_bus::Outgoing;
use mesh_bus::topology::{consumers, streams};
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    DeadLetter, EventId, ExternalId, ObjectType, RiskSignal, Value,
};
use mesh_proto::WireEvent;
use mesh_proto::v1;
use mesh_proto::v1::access_decision_client::AccessDecisionClient;
use mesh_runtime::config::RiskConfig;
use mesh_testkit::{RedisPrefix, RedisServer, assert_eventually};
use sqlx::Row;
use tonic::transport::Channel;

const QUIET: Duration = Duration::from_secs(60);
const TOKEN: &str = "risk-test-token";

/// HR (authoritative) and a directory with service accounts, the risk feedback connector, and
/// the reference access policy.
fn rules() -> String {
    let policy = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/rules/access.yaml"
    ))
    .unwrap();
    format!(
        r#"apiVersion: identitymesh.io/v1
kind: Connector
metadata: {{ name: hr }}
spec: {{ type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId,
        authoritative: true, inactiveWhen: 'status == "Terminated"' }}
---
kind: Connector
metadata: {{ name: directory }}
spec: {{ type: ldap, objectTypes: [User, ServiceAccount], externalIdAttribute: objectGUID,
        objectTypeAttribute: objectType }}
---
kind: Connector
metadata: {{ name: risk }}
spec: {{ type: risk, objectTypes: [User], externalIdAttribute: subject }}
---
kind: JoinRule
metadata: {{ name: hr-by-employee-id }}
spec: {{ connector: hr, sourceAttribute: employeeId, targetAttribute: EmployeeId,
        isAnchor: true, priority: 1 }}
---
kind: JoinRule
metadata: {{ name: directory-service-accounts }}
spec: {{ connector: directory, objectType: ServiceAccount, sourceAttribute: sAMAccountName,
        targetAttribute: AccountName, isAnchor: true, priority: 1 }}
---
kind: JoinRule
metadata: {{ name: risk-by-user-name }}
spec: {{ connector: risk, sourceAttribute: subject, targetAttribute: SamAccountName,
        priority: 1 }}
---
kind: FlowRule
metadata: {{ name: hr-employee-id }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: employeeId,
        targetAttribute: EmployeeId, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: hr-user-name }}
spec: {{ connector: hr, direction: inbound, sourceAttribute: userName,
        targetAttribute: SamAccountName, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: directory-account-name }}
spec: {{ connector: directory, direction: inbound, objectType: ServiceAccount,
        sourceAttribute: sAMAccountName, targetAttribute: AccountName, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: directory-owner }}
spec: {{ connector: directory, direction: inbound, objectType: ServiceAccount,
        sourceAttribute: managedBy, targetAttribute: OwnerEmployeeId, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: directory-expiry }}
spec: {{ connector: directory, direction: inbound, objectType: ServiceAccount,
        sourceAttribute: accountExpires, targetAttribute: ExpiresAt, confidence: 95 }}
---
kind: FlowRule
metadata: {{ name: risk-level }}
spec: {{ connector: risk, direction: inbound, sourceAttribute: riskLevel,
        targetAttribute: RiskLevel, confidence: 100 }}
---
{policy}"#
    )
}

fn attrs(pairs: &[(&str, &str)]) -> Attributes {
    pairs
        .iter()
        .map(|(k, v)| (AttributeName::parse(k).unwrap(), Value::from(*v)))
        .collect()
}

fn change(connector: &str, object_type: &str, id: &str, attributes: Attributes) -> ChangeEvent {
    let key = format!("{connector}/{id}/{attributes:?}");
    ChangeEvent {
        event_id: EventId::derive("risk-test", key.as_bytes()),
        object: ConnectorObjectRef {
            connector: ConnectorId::parse(connector).unwrap(),
            object_type: ObjectType::parse(object_type).unwrap(),
            external_id: ExternalId::parse(id).unwrap(),
        },
        operation: ChangeOperation::Upsert,
        attributes,
        source_time: Utc::now(),
    }
}

fn employee(n: u32, user: &str, status: &str) -> ChangeEvent {
    let id = format!("E{n:04}");
    change(
        "hr",
        "User",
        &id,
        attrs(&[("employeeId", &id), ("userName", user), ("status", status)]),
    )
}

fn service_account(guid: &str, name: &str, owner: &str, expires: &str) -> ChangeEvent {
    change(
        "directory",
        "ServiceAccount",
        guid,
        attrs(&[
            ("objectGUID", guid),
            ("objectType", "ServiceAccount"),
            ("sAMAccountName", name),
            ("managedBy", owner),
            ("accountExpires", expires),
        ]),
    )
}

/// A running risk service in this process.
struct RiskService(risk::LocalRisk);

impl RiskService {
    async fn start(mesh: &Mesh, redis_url: &str, prefix: &str) -> Self {
        let mut config = RiskConfig::default();
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.key_prefix = prefix.to_owned();
        config.audit_allow_sample = 1.0;
        config.redis_timeout = Duration::from_millis(500);
        config.token_sha256 = vec![hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN))];
        let local = risk::LocalRisk::start(
            &mesh.rules,
            config,
            redis_url,
            &mesh.bus,
            mesh.pool.clone(),
            &mesh.topology,
            mesh::settings(),
        )
        .await
        .unwrap();
        Self(local)
    }

    fn risk(&self) -> &risk::Risk {
        &self.0.risk
    }

    async fn client(&self) -> AccessDecisionClient<Channel> {
        AccessDecisionClient::connect(format!("http://{}", self.0.addr))
            .await
            .unwrap()
    }

    async fn shut_down(self) {
        self.0.stop().await.unwrap();
    }
}

fn with_token<T>(message: T) -> tonic::Request<T> {
    mesh::with_bearer(message, TOKEN)
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

/// A request `days` days from now (new joiners stop being new after 7).
fn ask(
    subject: &str,
    sensitivity: v1::Sensitivity,
    interactive: bool,
    days: i64,
) -> v1::DecideRequest {
    v1::DecideRequest {
        subject: subject.to_owned(),
        mesh_object_id: None,
        resource: "app:payroll".to_owned(),
        action: "read".to_owned(),
        sensitivity: sensitivity as i32,
        context: Some(v1::RequestContext {
            interactive,
            time: Some(timestamp(Utc::now() + chrono::Duration::days(days))),
            ..Default::default()
        }),
    }
}

async fn decide(
    client: &mut AccessDecisionClient<Channel>,
    request: v1::DecideRequest,
) -> v1::DecideResponse {
    client
        .decide(with_token(request))
        .await
        .unwrap()
        .into_inner()
}

fn verdict(response: &v1::DecideResponse) -> (v1::Decision, &str) {
    (
        v1::Decision::try_from(response.decision).unwrap(),
        response.policy.as_str(),
    )
}

fn sign_in(
    id: &str,
    subject: &str,
    success: bool,
    at: DateTime<Utc>,
    place: Option<(f64, f64)>,
) -> v1::RiskSignal {
    v1::RiskSignal {
        signal_id: EventId::derive("risk-test-signal", id.as_bytes()).to_string(),
        subject: subject.to_owned(),
        mesh_object: None,
        observed_at: Some(timestamp(at)),
        kind: Some(v1::risk_signal::Kind::SignIn(v1::SignIn {
            success,
            location: place.map(|(latitude, longitude)| v1::GeoLocation {
                latitude,
                longitude,
                country: None,
                city: None,
            }),
            interactive: true,
            ..Default::default()
        })),
    }
}

async fn report(client: &mut AccessDecisionClient<Channel>, signal: v1::RiskSignal) -> bool {
    let response = client
        .report_signal(with_token(v1::ReportSignalRequest {
            signal: Some(signal),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(response.accepted);
    response.duplicate
}

async fn pipeline(rules: &str) -> Mesh {
    let mut mesh = Mesh::start_with_text(rules).await;
    mesh.run_in_process("correlation");
    mesh.run_in_process("flow");
    mesh
}

/// Waits until the risk service knows `subject` in lifecycle `state`.
async fn wait_for_identity(service: &RiskService, subject: &str, state: &str) {
    let policy = service.risk().policy().clone();
    assert_eventually!(
        Duration::from_secs(30),
        service
            .risk()
            .state()
            .identity(&policy, None, subject)
            .await
            .map(|i| i.lifecycle.map(|l| l.as_str()) == Some(state))
            .unwrap_or(false),
        "{subject} never became {state} in the risk state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_policies_decide_over_grpc() {
    let mut mesh = pipeline(&rules()).await;
    let redis = RedisPrefix::new();
    let service = RiskService::start(&mesh, redis.url(), redis.prefix()).await;
    let mut client = service.client().await;

    mesh.publish(&[
        employee(1, "aturing", "Active"),
        employee(2, "ghopper", "Active"),
        employee(3, "kjohnson", "Active"),
        service_account("guid-backup", "svc-backup", "E0001", "2099-01-01"),
        service_account("guid-old", "svc-old", "E0001", "2020-01-01"),
        service_account("guid-orphan", "svc-orphan", "E0003", "2099-01-01"),
    ])
    .await;
    mesh.wait_quiet(QUIET).await;
    for subject in ["aturing", "ghopper", "svc-backup", "svc-old", "svc-orphan"] {
        wait_for_identity(&service, subject, "active").await;
    }

    // Without a token: refused.
    let status = client
        .decide(ask("aturing", v1::Sensitivity::Low, true, 0))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    // A new joiner steps up; eight days later the same request is allowed.
    let first_day = decide(&mut client, ask("aturing", v1::Sensitivity::Low, true, 0)).await;
    assert_eq!(
        verdict(&first_day),
        (v1::Decision::RequireMfa, "new-joiner")
    );
    let later = decide(&mut client, ask("aturing", v1::Sensitivity::Low, true, 8)).await;
    assert_eq!(verdict(&later), (v1::Decision::Allow, "default"));
    assert!(!later.degraded);
    assert_eq!(later.policy_version, mesh.rules.version());

    // A subject the mesh does not know is denied.
    let stranger = decide(&mut client, ask("mallory", v1::Sensitivity::Low, true, 8)).await;
    assert_eq!(verdict(&stranger), (v1::Decision::Deny, "unknown-identity"));

    // Service accounts: a token flow is allowed, a person using one is not (OWASP NHI), an
    // expired one is denied.
    let token_flow = decide(
        &mut client,
        ask("svc-backup", v1::Sensitivity::Low, false, 8),
    )
    .await;
    assert_eq!(verdict(&token_flow), (v1::Decision::Allow, "default"));
    let human = decide(
        &mut client,
        ask("svc-backup", v1::Sensitivity::Low, true, 8),
    )
    .await;
    assert_eq!(verdict(&human), (v1::Decision::Deny, "nhi-interactive-use"));
    assert!(
        human
            .reasons
            .iter()
            .any(|r| r.code == "nhi_interactive_use")
    );
    let expired = decide(&mut client, ask("svc-old", v1::Sensitivity::Low, false, 8)).await;
    assert_eq!(verdict(&expired), (v1::Decision::Deny, "nhi-expired"));

    // The owner of svc-orphan leaves: the lifecycle change reaches the risk service through
    // MESH_OBJECTS, the owner is denied and the service account is ownerless.
    let orphan = decide(
        &mut client,
        ask("svc-orphan", v1::Sensitivity::Low, false, 8),
    )
    .await;
    assert_eq!(verdict(&orphan), (v1::Decision::Allow, "default"));
    mesh.publish(&[employee(3, "kjohnson", "Terminated")]).await;
    mesh.wait_quiet(QUIET).await;
    wait_for_identity(&service, "kjohnson", "leaver").await;
    let leaver = decide(&mut client, ask("kjohnson", v1::Sensitivity::Low, true, 8)).await;
    assert_eq!(verdict(&leaver), (v1::Decision::Deny, "leaver"));
    assert_eq!(leaver.score, 100);
    // Named by its mesh object id instead of the subject: the same identity, the same answer;
    // an id the mesh does not know is a stranger.
    let policy = service.risk().policy().clone();
    let id = service
        .risk()
        .state()
        .identity(&policy, None, "kjohnson")
        .await
        .unwrap()
        .mesh_object
        .unwrap();
    let mut by_id = ask("kjohnson", v1::Sensitivity::Low, true, 8);
    by_id.mesh_object_id = Some(id);
    let by_id = decide(&mut client, by_id).await;
    assert_eq!(verdict(&by_id), (v1::Decision::Deny, "leaver"));
    let mut unknown_id = ask("kjohnson", v1::Sensitivity::Low, true, 8);
    unknown_id.mesh_object_id = Some(uuid::Uuid::from_u128(7).hyphenated().to_string());
    let unknown_id = decide(&mut client, unknown_id).await;
    assert_eq!(
        verdict(&unknown_id),
        (v1::Decision::Deny, "unknown-identity")
    );
    let orphan = decide(
        &mut client,
        ask("svc-orphan", v1::Sensitivity::Low, false, 8),
    )
    .await;
    assert_eq!(verdict(&orphan), (v1::Decision::Deny, "nhi-ownerless"));

    // Impossible travel: London, then Sydney an hour later.
    let now = Utc::now();
    let london = (51.5072, -0.1276);
    let sydney = (-33.8688, 151.2093);
    assert!(
        !report(
            &mut client,
            sign_in(
                "t1",
                "ghopper",
                true,
                now - chrono::Duration::hours(1),
                Some(london)
            )
        )
        .await
    );
    assert!(
        !report(
            &mut client,
            sign_in("t2", "ghopper", true, now, Some(sydney))
        )
        .await
    );
    let travel = decide(&mut client, ask("ghopper", v1::Sensitivity::Low, true, 0)).await;
    assert_eq!(
        verdict(&travel),
        (v1::Decision::RequireMfa, "impossible-travel")
    );
    assert!(
        travel
            .reasons
            .iter()
            .any(|r| r.code == "impossible_travel" && r.weight == 50)
    );

    // High risk on a sensitive resource: a critical resource is denied; a low one steps up.
    for i in 0..6 {
        report(
            &mut client,
            sign_in(&format!("f{i}"), "aturing", false, Utc::now(), None),
        )
        .await;
    }
    let sensitive = decide(
        &mut client,
        ask("aturing", v1::Sensitivity::Critical, true, 0),
    )
    .await;
    assert_eq!(
        verdict(&sensitive),
        (v1::Decision::Deny, "high-risk-sensitive")
    );
    assert!(sensitive.score >= 50, "{sensitive:?}");

    // Denies and step-ups are audited with their policy and reasons.
    assert_eventually!(
        Duration::from_secs(10),
        audited(&mesh, "high-risk-sensitive").await >= 1,
        "the deny was not audited"
    );
    assert!(audited(&mesh, "nhi-interactive-use").await >= 1);
    let verification = mesh_store::audit::verify(&mesh.pool).await.unwrap();
    assert!(verification.is_intact(), "{verification:?}");

    service.shut_down().await;
    mesh.stop().await;
}

async fn audited(mesh: &Mesh, rule: &str) -> i64 {
    sqlx::query("SELECT count(*) AS n FROM audit_log WHERE kind = 'decision' AND rule = $1")
        .bind(rule)
        .fetch_one(&mesh.pool)
        .await
        .unwrap()
        .get("n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_count_in_a_sliding_window_once_each() {
    let mut mesh = pipeline(&rules()).await;
    let redis = RedisPrefix::new();
    let service = RiskService::start(&mesh, redis.url(), redis.prefix()).await;
    let mut client = service.client().await;
    mesh.publish(&[employee(1, "aturing", "Active")]).await;
    mesh.wait_quiet(QUIET).await;
    wait_for_identity(&service, "aturing", "active").await;

    let failed_sign_ins = |response: &v1::DecideResponse| {
        response
            .reasons
            .iter()
            .find(|r| r.code == "failed_sign_ins")
            .map_or(0, |r| r.weight)
    };
    let now = Utc::now();
    // Two failures 20 and 16 minutes ago: outside the 15-minute window.
    for (id, minutes) in [("old1", 20), ("old2", 16)] {
        report(
            &mut client,
            sign_in(
                id,
                "aturing",
                false,
                now - chrono::Duration::minutes(minutes),
                None,
            ),
        )
        .await;
    }
    // Three recent failures, the last reported twice.
    for id in ["new1", "new2", "new3"] {
        assert!(!report(&mut client, sign_in(id, "aturing", false, now, None)).await);
    }
    assert!(
        report(&mut client, sign_in("new3", "aturing", false, now, None)).await,
        "a repeat is a duplicate"
    );
    let response = decide(&mut client, ask("aturing", v1::Sensitivity::Low, true, 0)).await;
    // Three in the window, two of them free: 10 points.
    assert_eq!(failed_sign_ins(&response), 10, "{response:?}");

    // Signals published on MESH_SIGNALS count the same way, once.
    let published = sign_in("bus1", "aturing", false, now, None);
    for _ in 0..2 {
        mesh.bus
            .publisher()
            .publish(Outgoing::encode(
                "mesh.signal.signin",
                published.signal_id.clone(),
                RiskSignal::SCHEMA,
                &published,
            ))
            .await
            .unwrap();
    }
    assert_eventually!(
        Duration::from_secs(20),
        failed_sign_ins(&decide(&mut client, ask("aturing", v1::Sensitivity::Low, true, 0)).await)
            == 20,
        "the published failure was not counted"
    );

    // A request 20 minutes later: only failures within 15 minutes of it count.
    let mut later = ask("aturing", v1::Sensitivity::Low, true, 0);
    later.context.as_mut().unwrap().time = Some(timestamp(now + chrono::Duration::minutes(20)));
    let response = decide(&mut client, later).await;
    assert_eq!(failed_sign_ins(&response), 0, "{response:?}");

    service.shut_down().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_risk_level_flows_back_into_the_mesh() {
    let mut mesh = pipeline(&rules()).await;
    let redis = RedisPrefix::new();
    let service = RiskService::start(&mesh, redis.url(), redis.prefix()).await;
    let mut client = service.client().await;
    mesh.publish(&[employee(1, "aturing", "Active")]).await;
    mesh.wait_quiet(QUIET).await;

    // Five failures: 30 points, medium. The risk connector contributes RiskLevel, joined to
    // the user by SamAccountName.
    for i in 0..5 {
        report(
            &mut client,
            sign_in(&format!("f{i}"), "aturing", false, Utc::now(), None),
        )
        .await;
    }
    assert_eventually!(
        Duration::from_secs(30),
        risk_level(&mesh, "E0001").await.as_deref() == Some("medium"),
        "RiskLevel never reached the mesh object: {:?}",
        risk_level(&mesh, "E0001").await
    );
    // Failures alone stop at 40 points; an impossible journey adds 50: critical.
    let now = Utc::now();
    report(
        &mut client,
        sign_in(
            "t1",
            "aturing",
            true,
            now - chrono::Duration::hours(1),
            Some((51.5072, -0.1276)),
        ),
    )
    .await;
    report(
        &mut client,
        sign_in("t2", "aturing", true, now, Some((-33.8688, 151.2093))),
    )
    .await;
    assert_eventually!(
        Duration::from_secs(30),
        risk_level(&mesh, "E0001").await.as_deref() == Some("critical"),
        "RiskLevel never became critical: {:?}",
        risk_level(&mesh, "E0001").await
    );

    service.shut_down().await;
    mesh.stop().await;
}

async fn risk_level(mesh: &Mesh, employee_id: &str) -> Option<String> {
    let row = sqlx::query(
        "SELECT attributes->>'RiskLevel' AS level FROM mesh_objects \
         WHERE anchor = $1 AND object_type = 'User'",
    )
    .bind(employee_id)
    .fetch_optional(&mesh.pool)
    .await
    .unwrap()?;
    row.get("level")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_degrade_safely_while_redis_is_down_and_recover() {
    let mut mesh = pipeline(&rules()).await;
    let mut redis = RedisServer::start().await.unwrap();
    let service = RiskService::start(&mesh, &redis.url(), "mesh:risk:").await;
    let mut client = service.client().await;
    mesh.publish(&[
        employee(1, "aturing", "Active"),
        employee(2, "ghopper", "Terminated"),
    ])
    .await;
    mesh.wait_quiet(QUIET).await;
    wait_for_identity(&service, "ghopper", "leaver").await;
    let leaver = decide(&mut client, ask("ghopper", v1::Sensitivity::Low, true, 8)).await;
    assert_eq!(verdict(&leaver), (v1::Decision::Deny, "leaver"));

    redis.kill();
    assert_eventually!(
        Duration::from_secs(10),
        !service.risk().redis_up(),
        "redis still up"
    );
    // Never allow-all: low resources step up, high ones are denied, all flagged degraded.
    let low = decide(&mut client, ask("aturing", v1::Sensitivity::Low, true, 8)).await;
    assert_eq!(verdict(&low), (v1::Decision::RequireMfa, "degraded"));
    assert!(low.degraded);
    let high = decide(&mut client, ask("aturing", v1::Sensitivity::High, true, 8)).await;
    assert_eq!(verdict(&high), (v1::Decision::Deny, "degraded"));
    assert!(high.degraded);
    // A signal reported meanwhile is kept on MESH_SIGNALS.
    assert!(
        !report(
            &mut client,
            sign_in("down1", "aturing", false, Utc::now(), None)
        )
        .await
    );
    for i in 0..4 {
        report(
            &mut client,
            sign_in(
                &format!("down-extra{i}"),
                "aturing",
                false,
                Utc::now(),
                None,
            ),
        )
        .await;
    }

    // Redis comes back empty: the service copies the mesh objects again and applies the
    // queued signals.
    redis.restart().await.unwrap();
    assert_eventually!(
        Duration::from_secs(30),
        {
            let r = decide(&mut client, ask("ghopper", v1::Sensitivity::Low, true, 8)).await;
            !r.degraded && r.policy == "leaver"
        },
        "decisions did not recover"
    );
    assert_eventually!(
        Duration::from_secs(30),
        decide(&mut client, ask("aturing", v1::Sensitivity::Low, true, 0))
            .await
            .reasons
            .iter()
            .any(|r| r.code == "failed_sign_ins" && r.weight == 30),
        "the signals reported while redis was down were not applied"
    );

    service.shut_down().await;
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_on_the_risk_services_inputs_is_dead_lettered_and_the_rest_goes_on() {
    let mesh = pipeline(&rules()).await;
    let redis = RedisPrefix::new();
    let service = RiskService::start(&mesh, redis.url(), redis.prefix()).await;
    let garbage = b"\xff\xfe not protobuf";
    mesh.publish_raw("mesh.signal.sign-in", "poison-signal", garbage)
        .await;
    mesh.publish_raw("mesh.object.User", "poison-object", garbage)
        .await;
    // Behind the poison: a joiner reaches the risk state, a signal is counted.
    mesh.publish(&[employee(1, "aturing", "Active")]).await;
    mesh.wait_quiet(QUIET).await;
    wait_for_identity(&service, "aturing", "active").await;
    let mut client = service.client().await;
    assert!(
        !report(
            &mut client,
            sign_in("after-poison", "aturing", false, Utc::now(), None)
        )
        .await,
        "a new signal is not a duplicate"
    );

    let dead_letter_stages = || async {
        let mut stages: Vec<String> = mesh
            .read_stream(streams::DLQ)
            .await
            .into_iter()
            .map(|(_, payload)| DeadLetter::from_wire(&payload).unwrap().stage)
            .collect();
        stages.sort();
        stages
    };
    assert_eventually!(
        Duration::from_secs(30),
        dead_letter_stages().await.len() >= 3,
        "dead letters so far: {:?}",
        dead_letter_stages().await
    );
    let stages = dead_letter_stages().await;
    assert_eq!(
        stages,
        [
            consumers::CORRELATION_REJOIN,
            consumers::RISK_LIFECYCLE,
            consumers::RISK_SIGNALS
        ]
    );
    service.shut_down().await;
}
