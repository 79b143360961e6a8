//! The stored JSON form of attribute values: plain JSON where it round-trips, tagged where
//! it would not.
//!
//! The plain JSON form of a [`Value`] (what `meshctl simulate` prints) reads a timestamp back
//! as a string. The store must give back exactly what it was given, so it tags the shapes
//! that plain JSON loses: `{"$ts": "2026-01-01T00:00:00Z"}` for a timestamp and
//! `{"$f": "NaN"}` for a decimal JSON cannot hold. Everything else is plain (`null`, `true`,
//! `42`, `4.5`, `"text"`, `[..]`), so rows stay readable in `psql`. A decimal is always
//! written with a fraction or an exponent (`1.0`), so it never reads back as an integer.

use chrono::{DateTime, SecondsFormat, Utc};
use mesh_model::{AttributeName, Attributes, Value};
use serde_json::{Map, Number, Value as Json};

/// Why a stored value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored value is malformed: {0}")]
pub struct JsonError(String);

const TIMESTAMP: &str = "$ts";
const DECIMAL: &str = "$f";

/// Returns the stored form of `value`.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Integer(i) => Json::Number((*i).into()),
        Value::Decimal(d) => match Number::from_f64(*d) {
            Some(n) => Json::Number(n),
            None => tagged(DECIMAL, d.to_string()),
        },
        Value::String(s) => Json::String(s.as_str().to_owned()),
        Value::Timestamp(t) => tagged(TIMESTAMP, t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        Value::List(items) => Json::Array(items.iter().map(value_to_json).collect()),
    }
}

fn tagged(tag: &str, text: String) -> Json {
    let mut map = Map::with_capacity(1);
    map.insert(tag.to_owned(), Json::String(text));
    Json::Object(map)
}

/// Reads a value written by [`value_to_json`].
pub fn value_from_json(json: &Json) -> Result<Value, JsonError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => Value::Integer(i),
            _ => Value::Decimal(
                n.as_f64()
                    .ok_or_else(|| JsonError(format!("number {n} out of range")))?,
            ),
        },
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::List(
            items
                .iter()
                .map(value_from_json)
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => {
            let (tag, text) = match (map.len(), map.iter().next()) {
                (1, Some((tag, Json::String(text)))) => (tag.as_str(), text),
                _ => return Err(JsonError(format!("unexpected object {json}"))),
            };
            match tag {
                TIMESTAMP => Value::Timestamp(
                    DateTime::parse_from_rfc3339(text)
                        .map_err(|e| JsonError(format!("timestamp {text:?}: {e}")))?
                        .with_timezone(&Utc),
                ),
                DECIMAL => Value::Decimal(
                    text.parse()
                        .map_err(|e| JsonError(format!("decimal {text:?}: {e}")))?,
                ),
                other => return Err(JsonError(format!("unknown tag {other:?}"))),
            }
        }
    })
}

/// Returns the stored form of `attributes`: an object keyed by attribute name as spelled.
pub fn attributes_to_json(attributes: &Attributes) -> Json {
    Json::Object(
        attributes
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value_to_json(value)))
            .collect(),
    )
}

/// Reads attributes written by [`attributes_to_json`].
pub fn attributes_from_json(json: &Json) -> Result<Attributes, JsonError> {
    let Json::Object(map) = json else {
        return Err(JsonError(format!(
            "attributes must be an object, not {json}"
        )));
    };
    let mut attributes = Attributes::new();
    for (name, value) in map {
        let name = AttributeName::parse(name).map_err(|e| JsonError(e.to_string()))?;
        attributes.insert(name, value_from_json(value)?);
    }
    Ok(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_shape_round_trips_through_its_stored_text() {
        let at = DateTime::parse_from_rfc3339("2026-03-01T08:30:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Integer(-7),
            Value::Decimal(1.0),
            Value::Decimal(0.1),
            Value::Decimal(f64::INFINITY),
            Value::from("{\"$ts\": \"not a tag\"}"),
            Value::Timestamp(at),
            Value::List(vec![Value::Integer(1), Value::Timestamp(at)]),
        ];
        for value in values {
            let text = value_to_json(&value).to_string();
            let back = value_from_json(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(back, value, "{text}");
        }
    }

    #[test]
    fn a_malformed_stored_value_is_refused_with_what_is_wrong() {
        let err = value_from_json(&serde_json::json!({"$when": "x"})).unwrap_err();
        assert!(err.to_string().contains("unknown tag"), "{err}");
        let err = value_from_json(&serde_json::json!({"$ts": "yesterday"})).unwrap_err();
        assert!(err.to_string().contains("timestamp"), "{err}");
    }
}
