//! Typed attribute values.
//!
//! Connected systems speak strings, numbers, booleans, timestamps and multi-valued attributes;
//! [`Value`] is the closed set of those shapes. Nested objects are not values: connector agents
//! flatten them into dotted names (`name.givenName`) before they enter the mesh.
//!
//! JSON form (used by `meshctl simulate`, fixtures and the store): `null`, `true`, `42`,
//! `4.5`, `"text"`, `[..]`. A timestamp serializes as its RFC 3339 string, so a round trip
//! through JSON reads it back as a string; the protobuf form keeps the type.
//!
//! A string value holds a [`Text`], whose copies share their bytes: cloning a value costs no
//! allocation, however often the pipeline copies it.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::Text;

/// One attribute value.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value. An attribute set to null is withdrawn.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit IEEE 754 number.
    Decimal(f64),
    /// A UTF-8 string, shared between the copies of the value.
    String(Text),
    /// An instant in UTC.
    Timestamp(DateTime<Utc>),
    /// A multi-valued attribute, in order.
    List(Vec<Value>),
}

/// The type of a [`Value`], for messages and type checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ValueKind {
    /// [`Value::Null`].
    Null,
    /// [`Value::Bool`].
    Bool,
    /// [`Value::Integer`].
    Integer,
    /// [`Value::Decimal`].
    Decimal,
    /// [`Value::String`].
    String,
    /// [`Value::Timestamp`].
    Timestamp,
    /// [`Value::List`].
    List,
}

impl ValueKind {
    /// Returns the lowercase name used in messages: `null`, `bool`, `integer`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool => "bool",
            Self::Integer => "integer",
            Self::Decimal => "decimal",
            Self::String => "string",
            Self::Timestamp => "timestamp",
            Self::List => "list",
        }
    }
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Value {
    /// Returns the value's type.
    pub const fn kind(&self) -> ValueKind {
        match self {
            Self::Null => ValueKind::Null,
            Self::Bool(_) => ValueKind::Bool,
            Self::Integer(_) => ValueKind::Integer,
            Self::Decimal(_) => ValueKind::Decimal,
            Self::String(_) => ValueKind::String,
            Self::Timestamp(_) => ValueKind::Timestamp,
            Self::List(_) => ValueKind::List,
        }
    }

    /// Returns true for [`Value::Null`].
    pub const fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// Returns the string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// Returns the shared text, if this is a string.
    pub fn as_text(&self) -> Option<&Text> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::String(Text::from(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::String(Text::from(s))
    }
}

impl From<Text> for Value {
    fn from(s: Text) -> Self {
        Self::String(s)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Self::Integer(i)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Self::Decimal(d)
    }
}

impl From<DateTime<Utc>> for Value {
    fn from(t: DateTime<Utc>) -> Self {
        Self::Timestamp(t)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Self::List(items)
    }
}

/// Renders the value the way a person reads it: strings unquoted at the top level, quoted
/// inside lists; timestamps in RFC 3339 with `Z`; null as `null`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Null => f.write_str("null"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Integer(i) => write!(f, "{i}"),
            Self::Decimal(d) => write!(f, "{d}"),
            Self::String(s) => f.write_str(s),
            Self::Timestamp(t) => f.write_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            Self::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    match item {
                        Self::String(s) => write!(f, "{s:?}")?,
                        other => write!(f, "{other}")?,
                    }
                }
                f.write_str("]")
            }
        }
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_unit(),
            Self::Bool(b) => serializer.serialize_bool(*b),
            Self::Integer(i) => serializer.serialize_i64(*i),
            Self::Decimal(d) => serializer.serialize_f64(*d),
            Self::String(s) => serializer.serialize_str(s),
            Self::Timestamp(t) => {
                serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            Self::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("null, a boolean, a number, a string or a list of those")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        Value::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Integer(i))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        i64::try_from(u)
            .map(Value::Integer)
            .or(Ok(Value::Decimal(u as f64)))
    }

    fn visit_f64<E: de::Error>(self, d: f64) -> Result<Value, E> {
        Ok(Value::Decimal(d))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(Text::from(s)))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(Text::from(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, _map: A) -> Result<Value, A::Error> {
        Err(de::Error::custom(
            "an attribute value cannot be an object; flatten it into dotted attribute names",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_types_except_timestamps() {
        let value = Value::List(vec![
            Value::Null,
            Value::Bool(true),
            Value::Integer(-3),
            Value::Decimal(2.5),
            Value::from("x"),
        ]);
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, r#"[null,true,-3,2.5,"x"]"#);
        assert_eq!(serde_json::from_str::<Value>(&json).unwrap(), value);
    }

    #[test]
    fn objects_are_refused_with_a_hint() {
        let err = serde_json::from_str::<Value>(r#"{"a":1}"#).unwrap_err();
        assert!(err.to_string().contains("flatten"), "{err}");
    }

    #[test]
    fn display_is_for_people() {
        let t = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(Value::Timestamp(t).to_string(), "2026-11-22T10:00:00Z");
        assert_eq!(
            Value::List(vec![Value::from("a"), Value::Integer(1)]).to_string(),
            r#"["a", 1]"#
        );
    }
}
