//! Property tests: every domain event survives domain -> protobuf -> bytes -> protobuf ->
//! domain unchanged, and encoding is deterministic.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use mesh_model::{
    AttributeChange, AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId,
    ConnectorObjectRef, CorrelatedChange, DeadLetter, DevicePosture, EventId, ExportCommand,
    ExportOperation, ExportResult, ExportStatus, ExternalId, GeoLocation, IdempotencyKey,
    JoinMethod, JoinState, LifecycleState, MeshObjectChanged, MeshObjectId, ObjectType, RiskSignal,
    RuleName, SignIn, SignalKind, Value,
};
use mesh_proto::{WireEvent, attributes_from_pb, attributes_to_pb, v1};
use proptest::prelude::*;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

fn event_id() -> impl Strategy<Value = EventId> {
    any::<u128>().prop_map(|n| EventId::from_uuid(Uuid::from_u128(n)))
}

fn mesh_object_id() -> impl Strategy<Value = MeshObjectId> {
    any::<u128>().prop_map(|n| MeshObjectId::from_uuid(Uuid::from_u128(n)))
}

/// Instants in protobuf Timestamp's range, 0001-01-01 to 9999-12-31, to the nanosecond.
fn time() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800i64..=253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, n)| DateTime::from_timestamp(s, n).unwrap())
}

fn connector_id() -> impl Strategy<Value = ConnectorId> {
    "[a-z][a-z0-9-]{0,20}".prop_map(|s| ConnectorId::parse(&s).unwrap())
}

fn object_type() -> impl Strategy<Value = ObjectType> {
    "[A-Za-z][A-Za-z0-9_]{0,20}".prop_map(|s| ObjectType::parse(&s).unwrap())
}

fn external_id() -> impl Strategy<Value = ExternalId> {
    "[^\\p{Cc}]{1,40}".prop_map(|s| ExternalId::parse(&s).unwrap())
}

fn rule_name() -> impl Strategy<Value = RuleName> {
    "[A-Za-z0-9][A-Za-z0-9._-]{0,30}".prop_map(|s| RuleName::parse(&s).unwrap())
}

fn attribute_name() -> impl Strategy<Value = AttributeName> {
    "[A-Za-z][A-Za-z0-9:. _-]{0,20}|[^\\p{Cc}]{1,12}"
        .prop_map(|s| AttributeName::parse(&s).unwrap())
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,30}"
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Integer),
        // NaN never equals itself, so it cannot pass an equality round trip; it does travel.
        any::<f64>()
            .prop_filter("NaN", |d| !d.is_nan())
            .prop_map(Value::Decimal),
        text().prop_map(Value::from),
        time().prop_map(Value::Timestamp),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop::collection::vec(inner, 0..6).prop_map(Value::List)
    })
}

fn attributes() -> impl Strategy<Value = Attributes> {
    prop::collection::vec((attribute_name(), value()), 0..8)
        .prop_map(|pairs| pairs.into_iter().collect())
}

fn connector_object() -> impl Strategy<Value = ConnectorObjectRef> {
    (connector_id(), object_type(), external_id()).prop_map(
        |(connector, object_type, external_id)| ConnectorObjectRef {
            connector,
            object_type,
            external_id,
        },
    )
}

fn change_event() -> impl Strategy<Value = ChangeEvent> {
    (
        event_id(),
        connector_object(),
        prop_oneof![Just(ChangeOperation::Upsert), Just(ChangeOperation::Delete)],
        attributes(),
        time(),
    )
        .prop_map(
            |(event_id, object, operation, attributes, source_time)| ChangeEvent {
                event_id,
                object,
                operation,
                attributes,
                source_time,
            },
        )
}

fn join_method() -> impl Strategy<Value = JoinMethod> {
    prop_oneof![
        Just(JoinMethod::Matched),
        Just(JoinMethod::Projected),
        Just(JoinMethod::Existing),
        Just(JoinMethod::Manual),
    ]
}

fn join_state() -> impl Strategy<Value = JoinState> {
    prop_oneof![
        (
            mesh_object_id(),
            prop::option::of(rule_name()),
            join_method()
        )
            .prop_map(|(mesh_object, rule, method)| JoinState::Joined {
                mesh_object,
                rule,
                method,
            }),
        Just(JoinState::Disconnector),
        (rule_name(), prop::collection::vec(mesh_object_id(), 0..4))
            .prop_map(|(rule, candidates)| JoinState::Ambiguous { rule, candidates }),
        Just(JoinState::Deleted),
    ]
}

fn correlated_change() -> impl Strategy<Value = CorrelatedChange> {
    (
        event_id(),
        change_event(),
        join_state(),
        prop::option::of(mesh_object_id()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(event_id, change, join, previous_mesh_object, rule_version, source_sequence)| {
                CorrelatedChange {
                    event_id,
                    change,
                    join,
                    previous_mesh_object,
                    rule_version,
                    source_sequence,
                }
            },
        )
}

fn lifecycle() -> impl Strategy<Value = LifecycleState> {
    prop_oneof![
        Just(LifecycleState::Active),
        Just(LifecycleState::Disabled),
        Just(LifecycleState::Leaver),
        Just(LifecycleState::Deleted),
    ]
}

fn attribute_change() -> impl Strategy<Value = AttributeChange> {
    (attribute_name(), value(), value()).prop_map(|(name, old, new)| AttributeChange {
        name,
        old,
        new,
    })
}

fn mesh_object_changed() -> impl Strategy<Value = MeshObjectChanged> {
    (
        (event_id(), event_id(), mesh_object_id(), object_type()),
        (any::<u64>(), lifecycle(), prop::option::of(lifecycle())),
        prop::collection::vec(attribute_change(), 0..5),
        time(),
        any::<u64>(),
    )
        .prop_map(
            |(
                (event_id, cause, mesh_object, object_type),
                (version, lifecycle, previous_lifecycle),
                changes,
                occurred_at,
                rule_version,
            )| MeshObjectChanged {
                event_id,
                cause,
                mesh_object,
                object_type,
                version,
                lifecycle,
                previous_lifecycle,
                changes,
                occurred_at,
                rule_version,
            },
        )
}

fn export_operation() -> impl Strategy<Value = ExportOperation> {
    prop_oneof![
        Just(ExportOperation::Create),
        Just(ExportOperation::Update),
        Just(ExportOperation::Disable),
        Just(ExportOperation::Enable),
        Just(ExportOperation::Delete),
    ]
}

fn export_command() -> impl Strategy<Value = ExportCommand> {
    (
        (connector_id(), export_operation(), text(), object_type()),
        (attributes(), prop::option::of(text())),
        (
            mesh_object_id(),
            any::<u64>(),
            rule_name(),
            event_id(),
            time(),
            1..=u32::MAX,
        ),
    )
        .prop_map(
            |(
                (target, operation, container, object_type),
                (attributes, target_object_id),
                (mesh_object, mesh_object_version, rule, cause, issued_at, attempt),
            )| ExportCommand {
                idempotency_key: IdempotencyKey::new(
                    mesh_object,
                    &target,
                    mesh_object_version,
                    operation,
                ),
                target,
                operation,
                container,
                object_type,
                attributes,
                target_object_id,
                mesh_object,
                mesh_object_version,
                rule,
                cause,
                issued_at,
                attempt,
            },
        )
}

fn export_result() -> impl Strategy<Value = ExportResult> {
    (
        (
            connector_id(),
            export_operation(),
            mesh_object_id(),
            any::<u64>(),
        ),
        prop_oneof![
            Just(ExportStatus::Applied),
            Just(ExportStatus::AlreadyApplied),
            Just(ExportStatus::RetryableFailure),
            Just(ExportStatus::PermanentFailure),
        ],
        (prop::option::of(text()), text(), any::<u32>(), time()),
    )
        .prop_map(
            |(
                (target, operation, mesh_object, mesh_object_version),
                status,
                (target_object_id, message, attempt, completed_at),
            )| ExportResult {
                idempotency_key: IdempotencyKey::new(
                    mesh_object,
                    &target,
                    mesh_object_version,
                    operation,
                ),
                target,
                operation,
                mesh_object,
                mesh_object_version,
                status,
                target_object_id,
                message,
                attempt,
                completed_at,
            },
        )
}

fn coordinate() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN", |d| !d.is_nan())
}

fn geo_location() -> impl Strategy<Value = GeoLocation> {
    (
        coordinate(),
        coordinate(),
        prop::option::of("[A-Z]{2}"),
        prop::option::of(text()),
    )
        .prop_map(|(latitude, longitude, country, city)| GeoLocation {
            latitude,
            longitude,
            country,
            city,
        })
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn signal_kind() -> impl Strategy<Value = SignalKind> {
    let sign_in = (
        (
            any::<bool>(),
            prop::option::of(ip()),
            prop::option::of(geo_location()),
        ),
        (prop::option::of(text()), prop::option::of(text())),
        (
            prop::option::of(time()),
            any::<bool>(),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |(
                (success, ip, location),
                (device_id, mfa_method),
                (mfa_at, interactive, failure_reason),
            )| {
                SignalKind::SignIn(SignIn {
                    success,
                    ip,
                    location,
                    device_id,
                    mfa_method,
                    mfa_at,
                    interactive,
                    failure_reason,
                })
            },
        );
    let posture =
        ("\\PC{1,30}", any::<bool>(), any::<bool>()).prop_map(|(device_id, managed, compliant)| {
            SignalKind::DevicePosture(DevicePosture {
                device_id,
                managed,
                compliant,
            })
        });
    prop_oneof![sign_in, posture]
}

fn risk_signal() -> impl Strategy<Value = RiskSignal> {
    (
        event_id(),
        "\\PC{1,30}",
        prop::option::of(mesh_object_id()),
        time(),
        signal_kind(),
    )
        .prop_map(
            |(signal_id, subject, mesh_object, observed_at, kind)| RiskSignal {
                signal_id,
                subject,
                mesh_object,
                observed_at,
                kind,
            },
        )
}

fn dead_letter() -> impl Strategy<Value = DeadLetter> {
    (
        (
            "[a-z-]{1,20}",
            "[a-z.-]{1,30}",
            "[A-Z_]{1,20}",
            any::<u64>(),
        ),
        (
            prop::option::of(text()),
            prop::collection::btree_map(text(), prop::collection::vec(text(), 0..3), 0..4),
        ),
        (
            prop::collection::vec(any::<u8>(), 0..64),
            text(),
            any::<u32>(),
            time(),
        ),
    )
        .prop_map(
            |(
                (stage, subject, stream, stream_sequence),
                (schema, headers),
                (payload, reason, attempts, failed_at),
            )| DeadLetter {
                stage,
                subject,
                stream,
                stream_sequence,
                schema,
                headers: headers.into_iter().collect::<BTreeMap<_, _>>(),
                payload,
                reason,
                attempts,
                failed_at,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Domain -> bytes -> domain is the identity, and the same event always encodes the same way.
fn assert_round_trip<E>(event: E) -> Result<(), TestCaseError>
where
    E: WireEvent + Clone + PartialEq + std::fmt::Debug,
{
    let bytes = event.clone().into_wire();
    prop_assert_eq!(
        &bytes,
        &event.clone().into_wire(),
        "encoding is deterministic"
    );
    let decoded = E::from_wire(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(decoded, event);
    Ok(())
}

proptest! {
    #[test]
    fn change_event_round_trips(event in change_event()) {
        assert_round_trip(event)?;
    }

    #[test]
    fn correlated_change_round_trips(event in correlated_change()) {
        assert_round_trip(event)?;
    }

    #[test]
    fn mesh_object_changed_round_trips(event in mesh_object_changed()) {
        assert_round_trip(event)?;
    }

    #[test]
    fn export_command_round_trips(event in export_command()) {
        assert_round_trip(event)?;
    }

    #[test]
    fn export_result_round_trips(event in export_result()) {
        assert_round_trip(event)?;
    }

    #[test]
    fn risk_signal_round_trips(event in risk_signal()) {
        assert_round_trip(event)?;
    }

    #[test]
    fn dead_letter_round_trips(event in dead_letter()) {
        assert_round_trip(event)?;
    }

    #[test]
    fn value_round_trips(value in value()) {
        let back = Value::try_from(v1::Value::from(value.clone()));
        prop_assert_eq!(back, Ok(value));
    }

    #[test]
    fn attributes_round_trip_keeping_spelling(attributes in attributes()) {
        let map = attributes_to_pb(attributes.clone());
        let spellings: Vec<_> = attributes.iter().map(|(n, _)| n.as_str().to_owned()).collect();
        let mut keys: Vec<_> = map.keys().cloned().collect();
        let mut expected = spellings.clone();
        keys.sort();
        expected.sort();
        prop_assert_eq!(keys, expected);
        let back = attributes_from_pb(map).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back_spellings: Vec<_> = back.iter().map(|(n, _)| n.as_str().to_owned()).collect();
        prop_assert_eq!(back_spellings, spellings);
        prop_assert_eq!(back, attributes);
    }
}
