//! Conversions between the generated protobuf types ([`crate::v1`]) and the domain types of
//! `mesh-model`.
//!
//! Domain to wire is infallible: `impl From<mesh_model::X> for v1::X`. Wire to domain parses
//! every field and is fallible: `impl TryFrom<v1::X> for mesh_model::X` with a
//! [`ConversionError`] that names the field path from the top-level message, such as
//! `ChangeEvent.object.connector` or `MeshObjectChanged.changes[2].new_value.list_value[0]`.
//!
//! What decoding refuses, so that a service never acts on a half-understood message:
//! - a required field that is absent or empty (message fields, oneofs, ids, names);
//! - an enum that is `_UNSPECIFIED` or holds a number this version does not know;
//! - a `Value` or oneof with no member set (which is also what an older consumer sees when a
//!   newer producer uses a member it does not know);
//! - ids that are not canonical hyphenated lowercase UUIDs, names that break their newtype's
//!   rules, timestamps out of range, unparsable IP addresses;
//! - an attribute map holding two names that differ only in case.

mod events;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use mesh_model::{AttributeName, Attributes, EventId, MeshObjectId, ParseError, Value};

use crate::v1;

pub use events::{attributes_from_pb, attributes_to_pb};

/// Why a protobuf message could not become its domain type. Every variant names the field path
/// from the top-level message.
///
/// The underlying [`ParseError`] of [`ConversionError::Invalid`] is part of the message rather
/// than a `source()`, because the message alone must say what is wrong where (it goes into
/// dead letters and logs as one line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    /// A required field was absent or empty.
    #[error("{path}: required field is missing")]
    Missing {
        /// The field's path, such as `ChangeEvent.source_time`.
        path: String,
    },
    /// A required oneof had no member set: the producer left it out, or used a member this
    /// version does not know.
    #[error(
        "{path}: none of the members of oneof `{oneof}` is set (missing, or a member this version does not know)"
    )]
    NoOneofMember {
        /// The oneof's path, such as `RiskSignal.kind`.
        path: String,
        /// The oneof's name.
        oneof: &'static str,
    },
    /// An enum field held its `_UNSPECIFIED` value.
    #[error("{path}: {enum_name} is unspecified; one of its values must be chosen")]
    Unspecified {
        /// The field's path.
        path: String,
        /// The protobuf enum's name, such as `ChangeOperation`.
        enum_name: &'static str,
    },
    /// An enum field held a number this version does not know.
    #[error("{path}: {value} is not a known {enum_name} value (sent by a newer producer?)")]
    UnknownEnumValue {
        /// The field's path.
        path: String,
        /// The protobuf enum's name.
        enum_name: &'static str,
        /// The number received.
        value: i32,
    },
    /// A field's content broke the rules of its domain type.
    #[error("{path}: {error}")]
    Invalid {
        /// The field's path.
        path: String,
        /// What is wrong with the content.
        error: ParseError,
    },
    /// A timestamp was outside the range the mesh can represent, or had invalid nanoseconds.
    #[error("{path}: timestamp {seconds}s {nanos}ns is out of range (nanos must be 0..=999999999)")]
    Timestamp {
        /// The field's path.
        path: String,
        /// The seconds received.
        seconds: i64,
        /// The nanoseconds received.
        nanos: i32,
    },
    /// An attribute map held two names that differ only in case.
    #[error(
        "{path}: attribute names {first:?} and {second:?} differ only in case; attribute names are case-insensitive"
    )]
    DuplicateAttribute {
        /// The map's path.
        path: String,
        /// The first spelling.
        first: String,
        /// The second spelling.
        second: String,
    },
}

impl ConversionError {
    /// Returns the path of the offending field, such as `ChangeEvent.object.connector`.
    pub fn path(&self) -> &str {
        match self {
            Self::Missing { path }
            | Self::NoOneofMember { path, .. }
            | Self::Unspecified { path, .. }
            | Self::UnknownEnumValue { path, .. }
            | Self::Invalid { path, .. }
            | Self::Timestamp { path, .. }
            | Self::DuplicateAttribute { path, .. } => path,
        }
    }
}

/// A field path, built on the stack while converting and rendered only when an error occurs.
#[derive(Clone, Copy)]
pub(crate) struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    segment: Segment<'a>,
}

#[derive(Clone, Copy)]
enum Segment<'a> {
    Root(&'static str),
    Field(&'static str),
    Index(usize),
    Key(&'a str),
}

impl<'a> Path<'a> {
    /// The path of a top-level message, named by its protobuf message name.
    pub(crate) const fn root(message: &'static str) -> Self {
        Self {
            parent: None,
            segment: Segment::Root(message),
        }
    }

    /// The path of a field of this message.
    pub(crate) fn field(&'a self, name: &'static str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Field(name),
        }
    }

    /// The path of an item of this repeated field.
    pub(crate) fn index(&'a self, index: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Index(index),
        }
    }

    /// The path of an entry of this map field.
    pub(crate) fn key(&'a self, key: &'a str) -> Path<'a> {
        Path {
            parent: Some(self),
            segment: Segment::Key(key),
        }
    }
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            fmt::Display::fmt(parent, f)?;
        }
        match self.segment {
            Segment::Root(name) => f.write_str(name),
            Segment::Field(name) => write!(f, ".{name}"),
            Segment::Index(index) => write!(f, "[{index}]"),
            Segment::Key(key) => write!(f, "[{key:?}]"),
        }
    }
}

impl Path<'_> {
    pub(crate) fn missing(&self) -> ConversionError {
        ConversionError::Missing {
            path: self.to_string(),
        }
    }

    pub(crate) fn no_oneof_member(&self, oneof: &'static str) -> ConversionError {
        ConversionError::NoOneofMember {
            path: self.to_string(),
            oneof,
        }
    }

    pub(crate) fn invalid(&self, error: ParseError) -> ConversionError {
        ConversionError::Invalid {
            path: self.to_string(),
            error,
        }
    }
}

/// Returns the value of a required message field.
pub(crate) fn required<T>(value: Option<T>, path: &Path<'_>) -> Result<T, ConversionError> {
    value.ok_or_else(|| path.missing())
}

/// Returns a required string field, refusing an empty one.
pub(crate) fn required_str(value: String, path: &Path<'_>) -> Result<String, ConversionError> {
    if value.is_empty() {
        Err(path.missing())
    } else {
        Ok(value)
    }
}

/// Parses a newtype, naming the field on failure. An empty string is reported as missing,
/// because proto3 cannot tell an absent string from an empty one.
pub(crate) fn parse_field<T>(
    value: &str,
    path: &Path<'_>,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, ConversionError> {
    if value.is_empty() {
        return Err(path.missing());
    }
    parse(value).map_err(|error| path.invalid(error))
}

/// Parses a canonical UUID: 36 characters, hyphenated, lowercase. Other spellings that `uuid`
/// would accept (braced, URN, simple, uppercase) are refused so that an id compares equal as a
/// string wherever it is stored or logged.
fn parse_canonical_uuid<T>(
    value: &str,
    what: &'static str,
    parse: impl FnOnce(&str) -> Result<T, ParseError>,
) -> Result<T, ParseError> {
    let id = parse(value)?;
    if value.len() != 36 || value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ParseError::Malformed {
            what,
            input: value.to_owned(),
            reason: "use the canonical hyphenated lowercase form \
                     (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"
                .to_owned(),
        });
    }
    Ok(id)
}

/// Parses a required event id.
pub(crate) fn event_id(value: &str, path: &Path<'_>) -> Result<EventId, ConversionError> {
    parse_field(value, path, |s| {
        parse_canonical_uuid(s, "event id", EventId::parse)
    })
}

/// Parses a required mesh object id.
pub(crate) fn mesh_object_id(
    value: &str,
    path: &Path<'_>,
) -> Result<MeshObjectId, ConversionError> {
    parse_field(value, path, |s| {
        parse_canonical_uuid(s, "mesh object id", MeshObjectId::parse)
    })
}

/// Converts an instant to a protobuf timestamp.
///
/// chrono represents a leap second as nanoseconds >= 1e9, which protobuf forbids; such an
/// instant is sent as the last nanosecond of the preceding second.
pub fn timestamp_to_pb(time: DateTime<Utc>) -> prost_types::Timestamp {
    let nanos = time.timestamp_subsec_nanos().min(999_999_999);
    prost_types::Timestamp {
        seconds: time.timestamp(),
        // Cannot fail: nanos is at most 999_999_999 < i32::MAX.
        nanos: i32::try_from(nanos).unwrap_or(999_999_999),
    }
}

/// Converts a protobuf timestamp to an instant; `None` when it is out of range.
pub fn timestamp_to_time(ts: &prost_types::Timestamp) -> Option<DateTime<Utc>> {
    timestamp_from_pb(*ts, &Path::root("Timestamp")).ok()
}

/// Converts a protobuf timestamp to an instant.
pub(crate) fn timestamp_from_pb(
    ts: prost_types::Timestamp,
    path: &Path<'_>,
) -> Result<DateTime<Utc>, ConversionError> {
    let out_of_range = || ConversionError::Timestamp {
        path: path.to_string(),
        seconds: ts.seconds,
        nanos: ts.nanos,
    };
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n <= 999_999_999)
        .ok_or_else(out_of_range)?;
    DateTime::from_timestamp(ts.seconds, nanos).ok_or_else(out_of_range)
}

/// Converts a required protobuf timestamp field.
pub(crate) fn required_timestamp(
    ts: Option<prost_types::Timestamp>,
    path: &Path<'_>,
) -> Result<DateTime<Utc>, ConversionError> {
    timestamp_from_pb(required(ts, path)?, path)
}

/// Converts a raw enum field, refusing `_UNSPECIFIED` (0) and unknown numbers.
pub(crate) fn enum_from_pb<E: TryFrom<i32>>(
    raw: i32,
    enum_name: &'static str,
    path: &Path<'_>,
) -> Result<E, ConversionError> {
    if raw == 0 {
        return Err(ConversionError::Unspecified {
            path: path.to_string(),
            enum_name,
        });
    }
    E::try_from(raw).map_err(|_| ConversionError::UnknownEnumValue {
        path: path.to_string(),
        enum_name,
        value: raw,
    })
}

// ---------------------------------------------------------------------------------------------
// Value
// ---------------------------------------------------------------------------------------------

impl From<Value> for v1::Value {
    fn from(value: Value) -> Self {
        use v1::value::Kind;
        let kind = match value {
            Value::Null => Kind::NullValue(prost_types::NullValue::NullValue.into()),
            Value::Bool(b) => Kind::BoolValue(b),
            Value::Integer(i) => Kind::IntegerValue(i),
            Value::Decimal(d) => Kind::DecimalValue(d),
            Value::String(s) => Kind::StringValue(s.into()),
            Value::Timestamp(t) => Kind::TimestampValue(timestamp_to_pb(t)),
            Value::List(items) => Kind::ListValue(v1::ValueList {
                items: items.into_iter().map(Self::from).collect(),
            }),
        };
        Self { kind: Some(kind) }
    }
}

impl TryFrom<v1::Value> for Value {
    type Error = ConversionError;

    fn try_from(value: v1::Value) -> Result<Self, ConversionError> {
        value_from_pb(value, &Path::root("Value"))
    }
}

/// Converts a value at `path`.
pub(crate) fn value_from_pb(value: v1::Value, path: &Path<'_>) -> Result<Value, ConversionError> {
    use v1::value::Kind;
    Ok(match value.kind {
        None => return Err(path.no_oneof_member("kind")),
        // NullValue has one member; any number is read as null, as protobuf's own Value does.
        Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        Some(Kind::IntegerValue(i)) => Value::Integer(i),
        Some(Kind::DecimalValue(d)) => Value::Decimal(d),
        Some(Kind::StringValue(s)) => Value::from(s),
        Some(Kind::TimestampValue(ts)) => {
            Value::Timestamp(timestamp_from_pb(ts, &path.field("timestamp_value"))?)
        }
        Some(Kind::ListValue(list)) => {
            let list_path = path.field("list_value");
            let mut items = Vec::with_capacity(list.items.len());
            for (i, item) in list.items.into_iter().enumerate() {
                items.push(value_from_pb(item, &list_path.index(i))?);
            }
            Value::List(items)
        }
    })
}

/// Converts a required value field.
pub(crate) fn required_value(
    value: Option<v1::Value>,
    path: &Path<'_>,
) -> Result<Value, ConversionError> {
    value_from_pb(required(value, path)?, path)
}

// ---------------------------------------------------------------------------------------------
// Attributes
// ---------------------------------------------------------------------------------------------

/// Converts attributes to a protobuf map, keyed by each name's first spelling.
pub(crate) fn attributes_to_map(attributes: Attributes) -> BTreeMap<String, v1::Value> {
    attributes
        .into_iter()
        .map(|(name, value)| (String::from(name), v1::Value::from(value)))
        .collect()
}

/// Converts a protobuf attribute map at `path`.
pub(crate) fn attributes_from_map(
    map: impl IntoIterator<Item = (String, v1::Value)>,
    path: &Path<'_>,
) -> Result<Attributes, ConversionError> {
    let mut attributes = Attributes::new();
    for (key, value) in map {
        let entry_path = path.key(&key);
        let name = AttributeName::parse(&key).map_err(|error| entry_path.invalid(error))?;
        let value = value_from_pb(value, &entry_path)?;
        if attributes.get(&name).is_some() {
            let first = attributes
                .iter()
                .find(|(n, _)| **n == name)
                .map(|(n, _)| n.as_str().to_owned())
                .unwrap_or_default();
            return Err(ConversionError::DuplicateAttribute {
                path: path.to_string(),
                first,
                second: key,
            });
        }
        attributes.insert(name, value);
    }
    Ok(attributes)
}
