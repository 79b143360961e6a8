//! Committed encoded fixtures: messages written by earlier versions of the contract must keep
//! decoding to the same domain values.
//!
//! Each `tests/fixtures/<Message>[.<variant>].bin` is decoded and compared with the domain value
//! built below. This test never writes the files unless `UPDATE_FIXTURES=1` is set:
//!
//! ```text
//! UPDATE_FIXTURES=1 cargo test -p mesh-proto --test fixtures
//! ```
//!
//! Do not regenerate an existing fixture to make a failure go away: a failure means messages
//! already in the streams would be misread. When the contract grows, keep the old file (its
//! expected value shows what an old message decodes to) and add a new variant file.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use mesh_model::{
    AttributeChange, AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId,
    ConnectorObjectRef, CorrelatedChange, DeadLetter, DevicePosture, EventId, ExportCommand,
    ExportOperation, ExportResult, ExportStatus, ExternalId, GeoLocation, IdempotencyKey,
    JoinMethod, JoinState, LifecycleState, MeshObjectChanged, MeshObjectId, ObjectType, RiskSignal,
    RuleName, SignIn, SignalKind, Value,
};
use mesh_proto::{EVENT_SCHEMAS, WireEvent};

// ---------------------------------------------------------------------------------------------
// The fixed domain values
// ---------------------------------------------------------------------------------------------

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .with_timezone(&Utc)
}

fn name(s: &str) -> AttributeName {
    AttributeName::parse(s).unwrap()
}

fn attributes(pairs: Vec<(&str, Value)>) -> Attributes {
    pairs.into_iter().map(|(n, v)| (name(n), v)).collect()
}

fn change_event_id() -> EventId {
    EventId::parse("0190d1f2-7c1a-7b3e-9f00-00000000c001").unwrap()
}

fn ada() -> MeshObjectId {
    MeshObjectId::parse("0190d1f2-7c1a-7b3e-9f00-0000000000ad").unwrap()
}

fn hr_feed() -> ConnectorId {
    ConnectorId::parse("hr-feed").unwrap()
}

fn change_event() -> ChangeEvent {
    ChangeEvent {
        event_id: change_event_id(),
        object: ConnectorObjectRef {
            connector: hr_feed(),
            object_type: ObjectType::parse("User").unwrap(),
            external_id: ExternalId::parse("E-10042").unwrap(),
        },
        operation: ChangeOperation::Upsert,
        attributes: attributes(vec![
            ("employeeID", Value::from("10042")),
            ("givenName", Value::from("Ada")),
            ("sn", Value::from("Lovelace")),
            ("mail", Value::from("ada.lovelace@example.com")),
            ("department", Value::from("Engineering")),
            ("costCenter", Value::Integer(4711)),
            ("fte", Value::Decimal(0.8)),
            ("active", Value::Bool(true)),
            ("hireDate", Value::Timestamp(at("2026-04-01T00:00:00Z"))),
            (
                "groups",
                Value::List(vec![Value::from("engineering"), Value::from("all-staff")]),
            ),
            ("manager", Value::Null),
            (
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:division",
                Value::from("R&D"),
            ),
        ]),
        source_time: at("2026-03-02T09:15:27.123456789Z"),
    }
}

fn correlated_change() -> CorrelatedChange {
    CorrelatedChange {
        event_id: change_event_id().derive_for_stage("correlation"),
        change: change_event(),
        join: JoinState::Joined {
            mesh_object: ada(),
            rule: Some(RuleName::parse("match-hr-by-employee-id").unwrap()),
            method: JoinMethod::Projected,
        },
        previous_mesh_object: None,
        rule_version: 7,
        source_sequence: 0,
    }
}

fn correlated_change_ambiguous() -> CorrelatedChange {
    CorrelatedChange {
        event_id: change_event_id().derive_for_stage("correlation"),
        change: change_event(),
        join: JoinState::Ambiguous {
            rule: RuleName::parse("match-hr-by-mail").unwrap(),
            candidates: vec![
                ada(),
                MeshObjectId::parse("0190d1f2-7c1a-7b3e-9f00-0000000000ae").unwrap(),
            ],
        },
        previous_mesh_object: Some(
            MeshObjectId::parse("0190d1f2-7c1a-7b3e-9f00-0000000000af").unwrap(),
        ),
        rule_version: 7,
        source_sequence: 0,
    }
}

fn mesh_object_changed() -> MeshObjectChanged {
    let correlation = change_event_id().derive_for_stage("correlation");
    MeshObjectChanged {
        event_id: correlation.derive_for_stage("flow"),
        cause: correlation,
        mesh_object: ada(),
        object_type: ObjectType::parse("User").unwrap(),
        version: 3,
        lifecycle: LifecycleState::Leaver,
        previous_lifecycle: Some(LifecycleState::Active),
        changes: vec![
            AttributeChange {
                name: name("Department"),
                old: Value::from("Research"),
                new: Value::from("Engineering"),
            },
            AttributeChange {
                name: name("DisplayName"),
                old: Value::Null,
                new: Value::from("A. Lovelace"),
            },
            AttributeChange {
                name: name("Groups"),
                old: Value::List(vec![Value::from("research")]),
                new: Value::List(vec![Value::from("engineering"), Value::from("all-staff")]),
            },
            AttributeChange {
                name: name("TerminationDate"),
                old: Value::Null,
                new: Value::Timestamp(at("2026-06-30T17:00:00Z")),
            },
        ],
        occurred_at: at("2026-03-02T09:15:27.123456789Z"),
        rule_version: 7,
    }
}

fn export_command() -> ExportCommand {
    let target = ConnectorId::parse("corporate-ldap").unwrap();
    ExportCommand {
        idempotency_key: IdempotencyKey::new(ada(), &target, 3, ExportOperation::Update),
        target,
        operation: ExportOperation::Update,
        container: "ou=Engineering,ou=People,dc=example,dc=com".into(),
        object_type: ObjectType::parse("inetOrgPerson").unwrap(),
        attributes: attributes(vec![
            ("departmentNumber", Value::from("Engineering")),
            ("displayName", Value::from("A. Lovelace")),
            ("description", Value::Null),
        ]),
        target_object_id: Some("uid=alovelace,ou=Engineering,ou=People,dc=example,dc=com".into()),
        mesh_object: ada(),
        mesh_object_version: 3,
        rule: RuleName::parse("project-users-to-ldap").unwrap(),
        cause: change_event_id()
            .derive_for_stage("correlation")
            .derive_for_stage("flow"),
        issued_at: at("2026-03-02T09:15:27.200Z"),
        attempt: 1,
    }
}

fn export_result() -> ExportResult {
    let target = ConnectorId::parse("corporate-ldap").unwrap();
    ExportResult {
        idempotency_key: IdempotencyKey::new(ada(), &target, 3, ExportOperation::Update),
        target,
        operation: ExportOperation::Update,
        mesh_object: ada(),
        mesh_object_version: 3,
        status: ExportStatus::RetryableFailure,
        target_object_id: Some("uid=alovelace,ou=Engineering,ou=People,dc=example,dc=com".into()),
        message: "LDAP busy (51): server is busy, retry later".into(),
        attempt: 2,
        completed_at: at("2026-03-02T09:15:27.450Z"),
    }
}

fn risk_signal() -> RiskSignal {
    RiskSignal {
        signal_id: EventId::parse("0190d1f2-7c1a-7b3e-9f00-00000000519a").unwrap(),
        subject: "ada.lovelace@example.com".into(),
        mesh_object: Some(ada()),
        observed_at: at("2026-03-02T10:01:02Z"),
        kind: SignalKind::SignIn(SignIn {
            success: false,
            ip: Some("2001:db8::7".parse().unwrap()),
            location: Some(GeoLocation {
                latitude: 51.5072,
                longitude: -0.1276,
                country: Some("GB".into()),
                city: Some("London".into()),
            }),
            device_id: Some("device-7f3a".into()),
            mfa_method: Some("webauthn".into()),
            mfa_at: Some(at("2026-03-02T08:00:00Z")),
            interactive: true,
            failure_reason: Some("invalid password".into()),
        }),
    }
}

fn risk_signal_posture() -> RiskSignal {
    RiskSignal {
        signal_id: EventId::parse("0190d1f2-7c1a-7b3e-9f00-00000000519b").unwrap(),
        subject: "ada.lovelace@example.com".into(),
        mesh_object: None,
        observed_at: at("2026-03-02T10:05:00Z"),
        kind: SignalKind::DevicePosture(DevicePosture {
            device_id: "device-7f3a".into(),
            managed: true,
            compliant: false,
        }),
    }
}

fn dead_letter() -> DeadLetter {
    let mut headers = BTreeMap::new();
    headers.insert(
        "Nats-Msg-Id".to_owned(),
        vec![change_event_id().to_string()],
    );
    headers.insert(
        "traceparent".to_owned(),
        vec!["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()],
    );
    headers.insert("tracestate".to_owned(), vec!["vendor=abc".to_owned()]);
    headers.insert(
        "Mesh-Schema".to_owned(),
        vec![ChangeEvent::SCHEMA.to_owned()],
    );
    DeadLetter {
        stage: "correlation".into(),
        subject: "mesh.change.hr-feed".into(),
        stream: "MESH_CHANGES".into(),
        stream_sequence: 10_042,
        schema: Some(ChangeEvent::SCHEMA.into()),
        headers,
        payload: change_event().into_wire(),
        reason: "database error: connection reset by peer".into(),
        attempts: 5,
        failed_at: at("2026-03-02T09:20:00Z"),
    }
}

// ---------------------------------------------------------------------------------------------
// The check
// ---------------------------------------------------------------------------------------------

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn updating() -> bool {
    std::env::var("UPDATE_FIXTURES").is_ok_and(|v| v == "1")
}

/// Decodes the committed `<Message><suffix>.bin` and compares it with `expected`; with
/// `UPDATE_FIXTURES=1`, writes it first.
fn check<E>(suffix: &str, expected: E)
where
    E: WireEvent + Clone + PartialEq + Debug,
{
    let message = E::SCHEMA
        .strip_prefix("identitymesh.v1.")
        .expect("schema is in package identitymesh.v1");
    let path = fixtures_dir().join(format!("{message}{suffix}.bin"));
    if updating() {
        std::fs::create_dir_all(fixtures_dir()).unwrap();
        std::fs::write(&path, expected.clone().into_wire()).unwrap();
    }
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; a new fixture is created with \
             UPDATE_FIXTURES=1 cargo test -p mesh-proto --test fixtures",
            path.display()
        )
    });
    let decoded = E::from_wire(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} no longer decodes: {e}. This change breaks messages already in the streams.",
            path.display()
        )
    });
    assert_eq!(
        decoded,
        expected,
        "{} decodes to a different value. This change misreads messages already in the streams.",
        path.display()
    );
}

#[test]
fn change_event_fixture() {
    check("", change_event());
}

#[test]
fn correlated_change_fixtures() {
    check("", correlated_change());
    check(".ambiguous", correlated_change_ambiguous());
}

#[test]
fn mesh_object_changed_fixture() {
    check("", mesh_object_changed());
}

#[test]
fn export_command_fixtures() {
    // The base file predates `attempt` (field 13): it reads as the first attempt.
    check("", export_command());
    check(
        ".retry",
        ExportCommand {
            attempt: 3,
            ..export_command()
        },
    );
}

#[test]
fn export_result_fixture() {
    check("", export_result());
}

#[test]
fn risk_signal_fixtures() {
    check("", risk_signal());
    check(".posture", risk_signal_posture());
}

#[test]
fn dead_letter_fixture() {
    check("", dead_letter());
}

/// Every event of the contract has a fixture, and every fixture file is checked above.
#[test]
fn every_event_has_a_fixture_and_no_fixture_is_orphaned() {
    let checked = [
        "ChangeEvent.bin",
        "CorrelatedChange.bin",
        "CorrelatedChange.ambiguous.bin",
        "MeshObjectChanged.bin",
        "ExportCommand.bin",
        "ExportCommand.retry.bin",
        "ExportResult.bin",
        "RiskSignal.bin",
        "RiskSignal.posture.bin",
        "DeadLetter.bin",
    ];
    for schema in EVENT_SCHEMAS {
        let file = format!("{}.bin", schema.strip_prefix("identitymesh.v1.").unwrap());
        assert!(checked.contains(&file.as_str()), "no fixture for {schema}");
    }
    if updating() {
        // The other tests may still be writing; the files are listed explicitly above.
        return;
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".bin"))
        .collect();
    on_disk.sort();
    let mut expected: Vec<String> = checked.iter().map(|s| (*s).to_owned()).collect();
    expected.sort();
    assert_eq!(on_disk, expected, "fixture files and checks differ");
}
