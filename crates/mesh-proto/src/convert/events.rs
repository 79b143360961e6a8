//! Conversions of the events of `events.proto` and their parts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use mesh_model as model;
use mesh_model::{
    Attributes, ConnectorId, ExternalId, IdempotencyKey, ObjectType, ParseError, RuleName,
};

use super::{
    ConversionError, Path, attributes_from_map, attributes_to_map, enum_from_pb, event_id,
    mesh_object_id, parse_field, required, required_str, required_timestamp, required_value,
    timestamp_from_pb, timestamp_to_pb,
};
use crate::v1;

/// Converts attributes to a protobuf attribute map (`map<string, Value>`), keyed by each name's
/// first spelling, in name order.
pub fn attributes_to_pb(attributes: Attributes) -> BTreeMap<String, v1::Value> {
    attributes_to_map(attributes)
}

/// Converts a protobuf attribute map (`map<string, Value>`, from any map type) to attributes.
///
/// Refuses invalid names, values with no member set, and two names that differ only in case.
/// Errors are reported under the path `attributes`.
pub fn attributes_from_pb(
    map: impl IntoIterator<Item = (String, v1::Value)>,
) -> Result<Attributes, ConversionError> {
    attributes_from_map(map, &Path::root("attributes"))
}

/// Implements `From<domain> for proto` and `TryFrom<proto> for domain` for a pair whose
/// fallible direction is a function taking the root path.
macro_rules! convert_pair {
    ($model:ty, $pb:ty, $root:literal, $from_pb:ident) => {
        impl TryFrom<$pb> for $model {
            type Error = ConversionError;

            fn try_from(message: $pb) -> Result<Self, ConversionError> {
                $from_pb(message, &Path::root($root))
            }
        }
    };
}

/// Implements the enum conversions both ways. The protobuf `_UNSPECIFIED` value has no domain
/// counterpart and is refused.
macro_rules! convert_enum {
    ($model:ident, $pb:ident, { $($variant:ident),+ $(,)? }) => {
        impl From<model::$model> for v1::$pb {
            fn from(value: model::$model) -> Self {
                match value {
                    $(model::$model::$variant => Self::$variant,)+
                }
            }
        }

        impl TryFrom<v1::$pb> for model::$model {
            type Error = ConversionError;

            fn try_from(value: v1::$pb) -> Result<Self, ConversionError> {
                match value {
                    $(v1::$pb::$variant => Ok(Self::$variant),)+
                    v1::$pb::Unspecified => Err(ConversionError::Unspecified {
                        path: stringify!($pb).to_owned(),
                        enum_name: stringify!($pb),
                    }),
                }
            }
        }

    };
}

convert_enum!(ChangeOperation, ChangeOperation, { Upsert, Delete });
convert_enum!(JoinMethod, JoinMethod, { Matched, Projected, Existing, Manual });
convert_enum!(LifecycleState, LifecycleState, { Active, Disabled, Leaver, Deleted });
convert_enum!(ExportOperation, ExportOperation, { Create, Update, Disable, Enable, Delete });
convert_enum!(ExportStatus, ExportStatus, {
    Applied,
    AlreadyApplied,
    RetryableFailure,
    PermanentFailure,
});

/// Converts a raw enum field to its domain type through the protobuf enum.
fn enum_field<P, M>(
    raw: i32,
    enum_name: &'static str,
    path: &Path<'_>,
) -> Result<M, ConversionError>
where
    P: TryFrom<i32>,
    M: TryFrom<P, Error = ConversionError>,
{
    let pb: P = enum_from_pb(raw, enum_name, path)?;
    // Unspecified was refused above, so this cannot fail; keep the path right if it ever does.
    M::try_from(pb).map_err(|_| ConversionError::Unspecified {
        path: path.to_string(),
        enum_name,
    })
}

fn optional_string_id<T>(
    value: Option<String>,
    path: &Path<'_>,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<Option<T>, ConversionError> {
    // Present but empty is reported by the parser ("must not be empty"), not as missing.
    value
        .map(|s| parse(&s).map_err(|error| path.invalid(error)))
        .transpose()
}

/// Parses an optional mesh object id; present but empty is invalid, not missing.
fn optional_mesh_object_id(
    value: Option<String>,
    path: &Path<'_>,
) -> Result<Option<model::MeshObjectId>, ConversionError> {
    match value {
        None => Ok(None),
        Some(s) if s.is_empty() => Err(path.invalid(ParseError::Empty {
            what: "mesh object id",
        })),
        Some(s) => mesh_object_id(&s, path).map(Some),
    }
}

// ---------------------------------------------------------------------------------------------
// ConnectorObjectRef, ChangeEvent
// ---------------------------------------------------------------------------------------------

impl From<model::ConnectorObjectRef> for v1::ConnectorObjectRef {
    fn from(object: model::ConnectorObjectRef) -> Self {
        Self {
            connector: object.connector.into(),
            object_type: object.object_type.into(),
            external_id: object.external_id.into(),
        }
    }
}

fn connector_object_ref_from_pb(
    object: v1::ConnectorObjectRef,
    path: &Path<'_>,
) -> Result<model::ConnectorObjectRef, ConversionError> {
    Ok(model::ConnectorObjectRef {
        connector: parse_field(
            &object.connector,
            &path.field("connector"),
            ConnectorId::parse,
        )?,
        object_type: parse_field(
            &object.object_type,
            &path.field("object_type"),
            ObjectType::parse,
        )?,
        external_id: parse_field(
            &object.external_id,
            &path.field("external_id"),
            ExternalId::parse,
        )?,
    })
}
convert_pair!(
    model::ConnectorObjectRef,
    v1::ConnectorObjectRef,
    "ConnectorObjectRef",
    connector_object_ref_from_pb
);

impl From<model::ChangeEvent> for v1::ChangeEvent {
    fn from(event: model::ChangeEvent) -> Self {
        Self {
            event_id: event.event_id.to_string(),
            object: Some(event.object.into()),
            operation: v1::ChangeOperation::from(event.operation).into(),
            attributes: attributes_to_map(event.attributes),
            source_time: Some(timestamp_to_pb(event.source_time)),
        }
    }
}

fn change_event_from_pb(
    event: v1::ChangeEvent,
    path: &Path<'_>,
) -> Result<model::ChangeEvent, ConversionError> {
    let object_path = path.field("object");
    Ok(model::ChangeEvent {
        event_id: event_id(&event.event_id, &path.field("event_id"))?,
        object: connector_object_ref_from_pb(required(event.object, &object_path)?, &object_path)?,
        operation: enum_field::<v1::ChangeOperation, _>(
            event.operation,
            "ChangeOperation",
            &path.field("operation"),
        )?,
        attributes: attributes_from_map(event.attributes, &path.field("attributes"))?,
        source_time: required_timestamp(event.source_time, &path.field("source_time"))?,
    })
}
convert_pair!(
    model::ChangeEvent,
    v1::ChangeEvent,
    "ChangeEvent",
    change_event_from_pb
);

// ---------------------------------------------------------------------------------------------
// JoinState, CorrelatedChange
// ---------------------------------------------------------------------------------------------

impl From<model::JoinState> for v1::JoinState {
    fn from(join: model::JoinState) -> Self {
        use v1::join_state::{self, State};
        let state = match join {
            model::JoinState::Joined {
                mesh_object,
                rule,
                method,
            } => State::Joined(join_state::Joined {
                mesh_object: mesh_object.to_string(),
                rule: rule.map(String::from),
                method: v1::JoinMethod::from(method).into(),
            }),
            model::JoinState::Disconnector => State::Disconnector(join_state::Disconnector {}),
            model::JoinState::Ambiguous { rule, candidates } => {
                State::Ambiguous(join_state::Ambiguous {
                    rule: rule.into(),
                    candidates: candidates.iter().map(ToString::to_string).collect(),
                })
            }
            model::JoinState::Deleted => State::Deleted(join_state::Deleted {}),
        };
        Self { state: Some(state) }
    }
}

fn join_state_from_pb(
    join: v1::JoinState,
    path: &Path<'_>,
) -> Result<model::JoinState, ConversionError> {
    use v1::join_state::State;
    Ok(match join.state {
        None => return Err(path.no_oneof_member("state")),
        Some(State::Joined(joined)) => {
            let path = path.field("joined");
            model::JoinState::Joined {
                mesh_object: mesh_object_id(&joined.mesh_object, &path.field("mesh_object"))?,
                rule: optional_string_id(joined.rule, &path.field("rule"), RuleName::parse)?,
                method: enum_field::<v1::JoinMethod, _>(
                    joined.method,
                    "JoinMethod",
                    &path.field("method"),
                )?,
            }
        }
        Some(State::Disconnector(_)) => model::JoinState::Disconnector,
        Some(State::Ambiguous(ambiguous)) => {
            let path = path.field("ambiguous");
            let candidates_path = path.field("candidates");
            let candidates = ambiguous
                .candidates
                .iter()
                .enumerate()
                .map(|(i, id)| mesh_object_id(id, &candidates_path.index(i)))
                .collect::<Result<_, _>>()?;
            model::JoinState::Ambiguous {
                rule: parse_field(&ambiguous.rule, &path.field("rule"), RuleName::parse)?,
                candidates,
            }
        }
        Some(State::Deleted(_)) => model::JoinState::Deleted,
    })
}
convert_pair!(
    model::JoinState,
    v1::JoinState,
    "JoinState",
    join_state_from_pb
);

impl From<model::CorrelatedChange> for v1::CorrelatedChange {
    fn from(change: model::CorrelatedChange) -> Self {
        Self {
            event_id: change.event_id.to_string(),
            change: Some(change.change.into()),
            join: Some(change.join.into()),
            previous_mesh_object: change.previous_mesh_object.map(|id| id.to_string()),
            rule_version: change.rule_version,
            source_sequence: change.source_sequence,
        }
    }
}

fn correlated_change_from_pb(
    change: v1::CorrelatedChange,
    path: &Path<'_>,
) -> Result<model::CorrelatedChange, ConversionError> {
    let change_path = path.field("change");
    let join_path = path.field("join");
    Ok(model::CorrelatedChange {
        event_id: event_id(&change.event_id, &path.field("event_id"))?,
        change: change_event_from_pb(required(change.change, &change_path)?, &change_path)?,
        join: join_state_from_pb(required(change.join, &join_path)?, &join_path)?,
        previous_mesh_object: optional_mesh_object_id(
            change.previous_mesh_object,
            &path.field("previous_mesh_object"),
        )?,
        rule_version: change.rule_version,
        source_sequence: change.source_sequence,
    })
}
convert_pair!(
    model::CorrelatedChange,
    v1::CorrelatedChange,
    "CorrelatedChange",
    correlated_change_from_pb
);

// ---------------------------------------------------------------------------------------------
// AttributeChange, MeshObjectChanged
// ---------------------------------------------------------------------------------------------

impl From<model::AttributeChange> for v1::AttributeChange {
    fn from(change: model::AttributeChange) -> Self {
        Self {
            name: change.name.into(),
            old_value: Some(change.old.into()),
            new_value: Some(change.new.into()),
        }
    }
}

fn attribute_change_from_pb(
    change: v1::AttributeChange,
    path: &Path<'_>,
) -> Result<model::AttributeChange, ConversionError> {
    Ok(model::AttributeChange {
        name: parse_field(
            &change.name,
            &path.field("name"),
            model::AttributeName::parse,
        )?,
        old: required_value(change.old_value, &path.field("old_value"))?,
        new: required_value(change.new_value, &path.field("new_value"))?,
    })
}
convert_pair!(
    model::AttributeChange,
    v1::AttributeChange,
    "AttributeChange",
    attribute_change_from_pb
);

impl From<model::MeshObjectChanged> for v1::MeshObjectChanged {
    fn from(changed: model::MeshObjectChanged) -> Self {
        Self {
            event_id: changed.event_id.to_string(),
            cause: changed.cause.to_string(),
            mesh_object: changed.mesh_object.to_string(),
            object_type: changed.object_type.into(),
            version: changed.version,
            lifecycle: v1::LifecycleState::from(changed.lifecycle).into(),
            previous_lifecycle: changed
                .previous_lifecycle
                .map(|state| v1::LifecycleState::from(state).into()),
            changes: changed.changes.into_iter().map(Into::into).collect(),
            occurred_at: Some(timestamp_to_pb(changed.occurred_at)),
            rule_version: changed.rule_version,
        }
    }
}

fn mesh_object_changed_from_pb(
    changed: v1::MeshObjectChanged,
    path: &Path<'_>,
) -> Result<model::MeshObjectChanged, ConversionError> {
    let changes_path = path.field("changes");
    let previous_path = path.field("previous_lifecycle");
    let changes = changed
        .changes
        .into_iter()
        .enumerate()
        .map(|(i, change)| attribute_change_from_pb(change, &changes_path.index(i)))
        .collect::<Result<_, _>>()?;
    Ok(model::MeshObjectChanged {
        event_id: event_id(&changed.event_id, &path.field("event_id"))?,
        cause: event_id(&changed.cause, &path.field("cause"))?,
        mesh_object: mesh_object_id(&changed.mesh_object, &path.field("mesh_object"))?,
        object_type: parse_field(
            &changed.object_type,
            &path.field("object_type"),
            ObjectType::parse,
        )?,
        version: changed.version,
        lifecycle: enum_field::<v1::LifecycleState, _>(
            changed.lifecycle,
            "LifecycleState",
            &path.field("lifecycle"),
        )?,
        previous_lifecycle: changed
            .previous_lifecycle
            .map(|raw| enum_field::<v1::LifecycleState, _>(raw, "LifecycleState", &previous_path))
            .transpose()?,
        changes,
        occurred_at: required_timestamp(changed.occurred_at, &path.field("occurred_at"))?,
        rule_version: changed.rule_version,
    })
}
convert_pair!(
    model::MeshObjectChanged,
    v1::MeshObjectChanged,
    "MeshObjectChanged",
    mesh_object_changed_from_pb
);

// ---------------------------------------------------------------------------------------------
// ExportCommand, ExportResult
// ---------------------------------------------------------------------------------------------

impl From<model::ExportCommand> for v1::ExportCommand {
    fn from(command: model::ExportCommand) -> Self {
        Self {
            idempotency_key: command.idempotency_key.into(),
            target_connector: command.target.into(),
            operation: v1::ExportOperation::from(command.operation).into(),
            container: command.container,
            object_type: command.object_type.into(),
            attributes: attributes_to_map(command.attributes),
            target_object_id: command.target_object_id,
            mesh_object: command.mesh_object.to_string(),
            mesh_object_version: command.mesh_object_version,
            rule: command.rule.into(),
            cause: command.cause.to_string(),
            issued_at: Some(timestamp_to_pb(command.issued_at)),
            attempt: command.attempt,
        }
    }
}

fn export_command_from_pb(
    command: v1::ExportCommand,
    path: &Path<'_>,
) -> Result<model::ExportCommand, ConversionError> {
    Ok(model::ExportCommand {
        idempotency_key: parse_field(
            &command.idempotency_key,
            &path.field("idempotency_key"),
            IdempotencyKey::parse,
        )?,
        target: parse_field(
            &command.target_connector,
            &path.field("target_connector"),
            ConnectorId::parse,
        )?,
        operation: enum_field::<v1::ExportOperation, _>(
            command.operation,
            "ExportOperation",
            &path.field("operation"),
        )?,
        container: command.container,
        object_type: parse_field(
            &command.object_type,
            &path.field("object_type"),
            ObjectType::parse,
        )?,
        attributes: attributes_from_map(command.attributes, &path.field("attributes"))?,
        target_object_id: command.target_object_id,
        mesh_object: mesh_object_id(&command.mesh_object, &path.field("mesh_object"))?,
        mesh_object_version: command.mesh_object_version,
        rule: parse_field(&command.rule, &path.field("rule"), RuleName::parse)?,
        cause: event_id(&command.cause, &path.field("cause"))?,
        issued_at: required_timestamp(command.issued_at, &path.field("issued_at"))?,
        attempt: command.attempt.max(1),
    })
}
convert_pair!(
    model::ExportCommand,
    v1::ExportCommand,
    "ExportCommand",
    export_command_from_pb
);

impl From<model::ExportResult> for v1::ExportResult {
    fn from(result: model::ExportResult) -> Self {
        Self {
            idempotency_key: result.idempotency_key.into(),
            target_connector: result.target.into(),
            operation: v1::ExportOperation::from(result.operation).into(),
            mesh_object: result.mesh_object.to_string(),
            mesh_object_version: result.mesh_object_version,
            status: v1::ExportStatus::from(result.status).into(),
            target_object_id: result.target_object_id,
            message: result.message,
            attempt: result.attempt,
            completed_at: Some(timestamp_to_pb(result.completed_at)),
        }
    }
}

fn export_result_from_pb(
    result: v1::ExportResult,
    path: &Path<'_>,
) -> Result<model::ExportResult, ConversionError> {
    Ok(model::ExportResult {
        idempotency_key: parse_field(
            &result.idempotency_key,
            &path.field("idempotency_key"),
            IdempotencyKey::parse,
        )?,
        target: parse_field(
            &result.target_connector,
            &path.field("target_connector"),
            ConnectorId::parse,
        )?,
        operation: enum_field::<v1::ExportOperation, _>(
            result.operation,
            "ExportOperation",
            &path.field("operation"),
        )?,
        mesh_object: mesh_object_id(&result.mesh_object, &path.field("mesh_object"))?,
        mesh_object_version: result.mesh_object_version,
        status: enum_field::<v1::ExportStatus, _>(
            result.status,
            "ExportStatus",
            &path.field("status"),
        )?,
        target_object_id: result.target_object_id,
        message: result.message,
        attempt: result.attempt,
        completed_at: required_timestamp(result.completed_at, &path.field("completed_at"))?,
    })
}
convert_pair!(
    model::ExportResult,
    v1::ExportResult,
    "ExportResult",
    export_result_from_pb
);

// ---------------------------------------------------------------------------------------------
// GeoLocation, SignIn, DevicePosture, RiskSignal
// ---------------------------------------------------------------------------------------------

impl From<model::GeoLocation> for v1::GeoLocation {
    fn from(location: model::GeoLocation) -> Self {
        Self {
            latitude: location.latitude,
            longitude: location.longitude,
            country: location.country,
            city: location.city,
        }
    }
}

/// Infallible today; a function like the others so that a future check has a path to name.
#[allow(clippy::unnecessary_wraps)]
fn geo_location_from_pb(
    location: v1::GeoLocation,
    _path: &Path<'_>,
) -> Result<model::GeoLocation, ConversionError> {
    Ok(model::GeoLocation {
        latitude: location.latitude,
        longitude: location.longitude,
        country: location.country,
        city: location.city,
    })
}
convert_pair!(
    model::GeoLocation,
    v1::GeoLocation,
    "GeoLocation",
    geo_location_from_pb
);

impl From<model::SignIn> for v1::SignIn {
    fn from(sign_in: model::SignIn) -> Self {
        Self {
            success: sign_in.success,
            ip: sign_in.ip.map(|ip| ip.to_string()),
            location: sign_in.location.map(Into::into),
            device_id: sign_in.device_id,
            mfa_method: sign_in.mfa_method,
            mfa_at: sign_in.mfa_at.map(timestamp_to_pb),
            interactive: sign_in.interactive,
            failure_reason: sign_in.failure_reason,
        }
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, ParseError> {
    s.parse()
        .map_err(|e: std::net::AddrParseError| ParseError::Malformed {
            what: "IP address",
            input: s.to_owned(),
            reason: e.to_string(),
        })
}

fn sign_in_from_pb(sign_in: v1::SignIn, path: &Path<'_>) -> Result<model::SignIn, ConversionError> {
    let location_path = path.field("location");
    let mfa_at_path = path.field("mfa_at");
    Ok(model::SignIn {
        success: sign_in.success,
        ip: optional_string_id(sign_in.ip, &path.field("ip"), parse_ip)?,
        location: sign_in
            .location
            .map(|location| geo_location_from_pb(location, &location_path))
            .transpose()?,
        device_id: sign_in.device_id,
        mfa_method: sign_in.mfa_method,
        mfa_at: sign_in
            .mfa_at
            .map(|ts| timestamp_from_pb(ts, &mfa_at_path))
            .transpose()?,
        interactive: sign_in.interactive,
        failure_reason: sign_in.failure_reason,
    })
}
convert_pair!(model::SignIn, v1::SignIn, "SignIn", sign_in_from_pb);

impl From<model::DevicePosture> for v1::DevicePosture {
    fn from(posture: model::DevicePosture) -> Self {
        Self {
            device_id: posture.device_id,
            managed: posture.managed,
            compliant: posture.compliant,
        }
    }
}

fn device_posture_from_pb(
    posture: v1::DevicePosture,
    path: &Path<'_>,
) -> Result<model::DevicePosture, ConversionError> {
    Ok(model::DevicePosture {
        device_id: required_str(posture.device_id, &path.field("device_id"))?,
        managed: posture.managed,
        compliant: posture.compliant,
    })
}
convert_pair!(
    model::DevicePosture,
    v1::DevicePosture,
    "DevicePosture",
    device_posture_from_pb
);

impl From<model::RiskSignal> for v1::RiskSignal {
    fn from(signal: model::RiskSignal) -> Self {
        use v1::risk_signal::Kind;
        Self {
            signal_id: signal.signal_id.to_string(),
            subject: signal.subject,
            mesh_object: signal.mesh_object.map(|id| id.to_string()),
            observed_at: Some(timestamp_to_pb(signal.observed_at)),
            kind: Some(match signal.kind {
                model::SignalKind::SignIn(sign_in) => Kind::SignIn(sign_in.into()),
                model::SignalKind::DevicePosture(posture) => Kind::DevicePosture(posture.into()),
            }),
        }
    }
}

fn risk_signal_from_pb(
    signal: v1::RiskSignal,
    path: &Path<'_>,
) -> Result<model::RiskSignal, ConversionError> {
    use v1::risk_signal::Kind;
    let kind = match signal.kind {
        None => return Err(path.field("kind").no_oneof_member("kind")),
        Some(Kind::SignIn(sign_in)) => {
            model::SignalKind::SignIn(sign_in_from_pb(sign_in, &path.field("sign_in"))?)
        }
        Some(Kind::DevicePosture(posture)) => model::SignalKind::DevicePosture(
            device_posture_from_pb(posture, &path.field("device_posture"))?,
        ),
    };
    Ok(model::RiskSignal {
        signal_id: event_id(&signal.signal_id, &path.field("signal_id"))?,
        subject: required_str(signal.subject, &path.field("subject"))?,
        mesh_object: optional_mesh_object_id(signal.mesh_object, &path.field("mesh_object"))?,
        observed_at: required_timestamp(signal.observed_at, &path.field("observed_at"))?,
        kind,
    })
}
convert_pair!(
    model::RiskSignal,
    v1::RiskSignal,
    "RiskSignal",
    risk_signal_from_pb
);

// ---------------------------------------------------------------------------------------------
// DeadLetter
// ---------------------------------------------------------------------------------------------

impl From<model::DeadLetter> for v1::DeadLetter {
    fn from(letter: model::DeadLetter) -> Self {
        Self {
            stage: letter.stage,
            subject: letter.subject,
            stream: letter.stream,
            stream_sequence: letter.stream_sequence,
            schema: letter.schema,
            headers: letter
                .headers
                .into_iter()
                .map(|(name, values)| (name, v1::HeaderValues { values }))
                .collect(),
            payload: letter.payload,
            reason: letter.reason,
            attempts: letter.attempts,
            failed_at: Some(timestamp_to_pb(letter.failed_at)),
        }
    }
}

fn dead_letter_from_pb(
    letter: v1::DeadLetter,
    path: &Path<'_>,
) -> Result<model::DeadLetter, ConversionError> {
    Ok(model::DeadLetter {
        stage: required_str(letter.stage, &path.field("stage"))?,
        subject: required_str(letter.subject, &path.field("subject"))?,
        stream: required_str(letter.stream, &path.field("stream"))?,
        stream_sequence: letter.stream_sequence,
        schema: letter.schema,
        headers: letter
            .headers
            .into_iter()
            .map(|(name, values)| (name, values.values))
            .collect(),
        payload: letter.payload,
        reason: letter.reason,
        attempts: letter.attempts,
        failed_at: required_timestamp(letter.failed_at, &path.field("failed_at"))?,
    })
}
convert_pair!(
    model::DeadLetter,
    v1::DeadLetter,
    "DeadLetter",
    dead_letter_from_pb
);
