//! Decoding refuses messages that break the contract, and says which field and why.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mesh_model::{
    AttributeChange, AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId,
    ConnectorObjectRef, CorrelatedChange, DeadLetter, EventId, ExternalId, JoinState,
    LifecycleState, MeshObjectChanged, MeshObjectId, ObjectType, RiskSignal, RuleName, SignIn,
    SignalKind, Value,
};
use mesh_proto::{ConversionError, attributes_from_pb, v1};

fn time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T09:15:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn change_event() -> v1::ChangeEvent {
    let mut attributes = Attributes::new();
    attributes.insert(AttributeName::parse("mail").unwrap(), Value::from("a@b"));
    ChangeEvent {
        event_id: EventId::parse("0190d1f2-7c1a-7b3e-9f00-000000000001").unwrap(),
        object: ConnectorObjectRef {
            connector: ConnectorId::parse("corporate-ad").unwrap(),
            object_type: ObjectType::parse("User").unwrap(),
            external_id: ExternalId::parse("E1001").unwrap(),
        },
        operation: ChangeOperation::Upsert,
        attributes,
        source_time: time(),
    }
    .into()
}

fn refused(event: v1::ChangeEvent) -> ConversionError {
    ChangeEvent::try_from(event).unwrap_err()
}

#[test]
fn the_baseline_message_is_accepted() {
    assert!(ChangeEvent::try_from(change_event()).is_ok());
}

#[test]
fn a_bad_connector_id_names_the_field_and_the_rule() {
    let mut event = change_event();
    event.object.as_mut().unwrap().connector = "A.B".into();
    let err = refused(event);
    assert_eq!(err.path(), "ChangeEvent.object.connector");
    assert_eq!(
        err.to_string(),
        "ChangeEvent.object.connector: connector id \"A.B\" has an invalid character 'A': \
         use lowercase letters, digits and '-', starting with a letter"
    );
}

#[test]
fn missing_fields_are_named() {
    let mut event = change_event();
    event.source_time = None;
    assert_eq!(
        refused(event).to_string(),
        "ChangeEvent.source_time: required field is missing"
    );

    let mut event = change_event();
    event.object = None;
    assert_eq!(
        refused(event).to_string(),
        "ChangeEvent.object: required field is missing"
    );

    let mut event = change_event();
    event.object.as_mut().unwrap().external_id.clear();
    assert!(matches!(
        refused(event),
        ConversionError::Missing { path } if path == "ChangeEvent.object.external_id"
    ));
}

#[test]
fn unspecified_and_unknown_enums_are_refused() {
    let mut event = change_event();
    event.operation = 0;
    assert_eq!(
        refused(event).to_string(),
        "ChangeEvent.operation: ChangeOperation is unspecified; one of its values must be chosen"
    );

    let mut event = change_event();
    event.operation = 9;
    assert!(matches!(
        refused(event),
        ConversionError::UnknownEnumValue {
            value: 9,
            enum_name: "ChangeOperation",
            ..
        }
    ));
}

#[test]
fn ids_must_be_canonical_uuids() {
    for bad in [
        "0190D1F2-7C1A-7B3E-9F00-000000000001",
        "{0190d1f2-7c1a-7b3e-9f00-000000000001}",
        "0190d1f27c1a7b3e9f00000000000001",
        "not-a-uuid",
    ] {
        let mut event = change_event();
        event.event_id = bad.into();
        let err = refused(event);
        assert_eq!(err.path(), "ChangeEvent.event_id", "{bad}");
        assert!(
            matches!(err, ConversionError::Invalid { .. }),
            "{bad}: {err}"
        );
    }
}

#[test]
fn attribute_names_are_checked_and_case_duplicates_refused() {
    let mut event = change_event();
    event
        .attributes
        .insert("bad\nname".into(), Value::Integer(1).into());
    let err = refused(event);
    assert_eq!(err.path(), "ChangeEvent.attributes[\"bad\\nname\"]");

    let mut event = change_event();
    event
        .attributes
        .insert("Mail".into(), Value::from("c@d").into());
    assert_eq!(
        refused(event).to_string(),
        "ChangeEvent.attributes: attribute names \"Mail\" and \"mail\" differ only in case; \
         attribute names are case-insensitive"
    );
}

#[test]
fn a_value_without_a_member_is_refused_with_its_path() {
    let changed: v1::MeshObjectChanged = MeshObjectChanged {
        event_id: EventId::parse("0190d1f2-7c1a-7b3e-9f00-000000000002").unwrap(),
        cause: EventId::parse("0190d1f2-7c1a-7b3e-9f00-000000000001").unwrap(),
        mesh_object: MeshObjectId::parse("0190d1f2-7c1a-7b3e-9f00-0000000000aa").unwrap(),
        object_type: ObjectType::parse("User").unwrap(),
        version: 2,
        lifecycle: LifecycleState::Active,
        previous_lifecycle: None,
        changes: vec![AttributeChange {
            name: AttributeName::parse("groups").unwrap(),
            old: Value::Null,
            new: Value::List(vec![Value::from("a"), Value::from("b")]),
        }],
        occurred_at: time(),
        rule_version: 3,
    }
    .into();

    let mut broken = changed.clone();
    let Some(v1::value::Kind::ListValue(list)) =
        broken.changes[0].new_value.as_mut().unwrap().kind.as_mut()
    else {
        panic!("expected a list");
    };
    list.items[1].kind = None;
    let err = MeshObjectChanged::try_from(broken).unwrap_err();
    assert_eq!(
        err.path(),
        "MeshObjectChanged.changes[0].new_value.list_value[1]"
    );
    assert!(matches!(
        err,
        ConversionError::NoOneofMember { oneof: "kind", .. }
    ));

    let mut broken = changed.clone();
    broken.previous_lifecycle = Some(0);
    let err = MeshObjectChanged::try_from(broken).unwrap_err();
    assert_eq!(err.path(), "MeshObjectChanged.previous_lifecycle");

    let mut broken = changed;
    broken.changes[0].old_value = None;
    let err = MeshObjectChanged::try_from(broken).unwrap_err();
    assert_eq!(
        err.to_string(),
        "MeshObjectChanged.changes[0].old_value: required field is missing"
    );
}

#[test]
fn out_of_range_timestamps_are_refused() {
    let mut event = change_event();
    event.source_time.as_mut().unwrap().nanos = 1_000_000_000;
    assert!(matches!(
        refused(event),
        ConversionError::Timestamp {
            nanos: 1_000_000_000,
            ..
        }
    ));

    let mut event = change_event();
    event.source_time.as_mut().unwrap().seconds = i64::MAX;
    assert_eq!(refused(event).path(), "ChangeEvent.source_time");
}

#[test]
fn join_state_errors_name_the_oneof_member() {
    let correlated: v1::CorrelatedChange = CorrelatedChange {
        event_id: EventId::parse("0190d1f2-7c1a-7b3e-9f00-000000000003").unwrap(),
        change: ChangeEvent::try_from(change_event()).unwrap(),
        join: JoinState::Ambiguous {
            rule: RuleName::parse("match-by-mail").unwrap(),
            candidates: vec![
                MeshObjectId::parse("0190d1f2-7c1a-7b3e-9f00-0000000000aa").unwrap(),
                MeshObjectId::parse("0190d1f2-7c1a-7b3e-9f00-0000000000bb").unwrap(),
            ],
        },
        previous_mesh_object: None,
        rule_version: 1,
        source_sequence: 0,
    }
    .into();

    let mut broken = correlated.clone();
    if let Some(v1::join_state::State::Ambiguous(ambiguous)) =
        broken.join.as_mut().unwrap().state.as_mut()
    {
        ambiguous.candidates[1] = "nope".into();
    }
    let err = CorrelatedChange::try_from(broken).unwrap_err();
    assert_eq!(err.path(), "CorrelatedChange.join.ambiguous.candidates[1]");

    let mut broken = correlated.clone();
    broken.join.as_mut().unwrap().state = None;
    let err = CorrelatedChange::try_from(broken).unwrap_err();
    assert_eq!(err.path(), "CorrelatedChange.join");

    let mut broken = correlated;
    broken.previous_mesh_object = Some(String::new());
    let err = CorrelatedChange::try_from(broken).unwrap_err();
    assert_eq!(
        err.to_string(),
        "CorrelatedChange.previous_mesh_object: mesh object id must not be empty"
    );
}

#[test]
fn risk_signal_errors() {
    let signal: v1::RiskSignal = RiskSignal {
        signal_id: EventId::parse("0190d1f2-7c1a-7b3e-9f00-000000000004").unwrap(),
        subject: "alice@example.com".into(),
        mesh_object: None,
        observed_at: time(),
        kind: SignalKind::SignIn(SignIn {
            success: true,
            ip: Some("192.0.2.7".parse().unwrap()),
            location: None,
            device_id: None,
            mfa_method: None,
            mfa_at: None,
            interactive: true,
            failure_reason: None,
        }),
    }
    .into();

    let mut broken = signal.clone();
    if let Some(v1::risk_signal::Kind::SignIn(sign_in)) = broken.kind.as_mut() {
        sign_in.ip = Some("300.1.1.1".into());
    }
    let err = RiskSignal::try_from(broken).unwrap_err();
    assert_eq!(err.path(), "RiskSignal.sign_in.ip");
    assert!(
        err.to_string().contains("IP address \"300.1.1.1\""),
        "{err}"
    );

    let mut broken = signal.clone();
    broken.kind = None;
    assert!(matches!(
        RiskSignal::try_from(broken).unwrap_err(),
        ConversionError::NoOneofMember { path, .. } if path == "RiskSignal.kind"
    ));

    let mut broken = signal;
    broken.subject.clear();
    assert_eq!(
        RiskSignal::try_from(broken).unwrap_err().path(),
        "RiskSignal.subject"
    );
}

#[test]
fn dead_letter_requires_its_origin() {
    let letter: v1::DeadLetter = DeadLetter {
        stage: "correlation".into(),
        subject: "mesh.change.corporate-ad".into(),
        stream: "MESH_CHANGES".into(),
        stream_sequence: 1,
        schema: None,
        headers: BTreeMap::new(),
        payload: vec![1, 2, 3],
        reason: "boom".into(),
        attempts: 5,
        failed_at: time(),
    }
    .into();
    let mut broken = letter;
    broken.stage.clear();
    assert_eq!(
        DeadLetter::try_from(broken).unwrap_err().to_string(),
        "DeadLetter.stage: required field is missing"
    );
}

#[test]
fn standalone_attribute_maps_and_values_use_their_own_root() {
    let mut map = BTreeMap::new();
    map.insert("x".to_owned(), v1::Value { kind: None });
    assert_eq!(
        attributes_from_pb(map).unwrap_err().path(),
        "attributes[\"x\"]"
    );
    assert_eq!(
        Value::try_from(v1::Value { kind: None })
            .unwrap_err()
            .path(),
        "Value"
    );
    assert!(matches!(
        ChangeOperation::try_from(v1::ChangeOperation::Unspecified),
        Err(ConversionError::Unspecified { .. })
    ));
}
