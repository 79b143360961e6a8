//! Request bodies as JSON, refusing an object that names a member twice.
//!
//! RFC 8259 §4 leaves the meaning of `{"userName":"a","userName":"b"}` to each parser:
//! serde_json keeps the last value, a proxy or an audit hook in front of the agent may read the
//! first. Two readers of one request must not see two users, so such a body is invalid
//! (400 `invalidSyntax`), like a name given twice in different case (RFC 7643 §2.1).
//! serde_json's nesting limit (128) still applies: the parse goes through its deserializer.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value as Json};

/// Parses `bytes` as one JSON value with no duplicate member names and nothing after it.
pub fn parse(bytes: &[u8]) -> Result<Json, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }

    fn visit_i64<E: Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_u64<E: Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }

    fn visit_f64<E: Error>(self, v: f64) -> Result<Json, E> {
        Number::from_f64(v)
            .map(Json::Number)
            .ok_or_else(|| E::custom("a number must be finite"))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Json, E> {
        no_nul(v)?;
        Ok(Json::String(v.to_owned()))
    }

    fn visit_string<E: Error>(self, v: String) -> Result<Json, E> {
        no_nul(&v)?;
        Ok(Json::String(v))
    }

    fn visit_unit<E: Error>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            no_nul(&name)?;
            if members.contains_key(&name) {
                return Err(A::Error::custom(format!(
                    "the member {name:?} is given twice in one object"
                )));
            }
            let value = map.next_value_seed(Strict)?;
            members.insert(name, value);
        }
        Ok(Json::Object(members))
    }
}

/// Refuses U+0000: PostgreSQL cannot store it in `jsonb` (or `text`), so a body carrying one
/// would fail in the store instead of being refused as the client's error.
fn no_nul<E: Error>(text: &str) -> Result<(), E> {
    if text.contains('\0') {
        return Err(E::custom(
            "a string contains U+0000, which cannot be stored",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_serde_json_accepts_without_duplicates() {
        let text = r#"{"a":[1,-2,3.5,true,null,"s\u00e9"],"b":{"c":{}},"d":18446744073709551615}"#;
        assert_eq!(
            parse(text.as_bytes()).unwrap(),
            serde_json::from_str::<Json>(text).unwrap()
        );
    }

    #[test]
    fn refuses_duplicate_names_at_any_depth_and_trailing_text() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"x":[{"a":1,"b":2,"a":1}]}"#,
            r#"{"a":1} {}"#,
            "[1,]",
        ] {
            assert!(parse(text.as_bytes()).is_err(), "{text}");
        }
        let error = parse(br#"{"userName":"a","userName":"b"}"#).unwrap_err();
        assert!(
            error.to_string().contains("\"userName\" is given twice"),
            "{error}"
        );
    }

    #[test]
    fn refuses_nul_in_values_and_names() {
        for text in [
            r#"{"userName":"a\u0000b"}"#,
            r#"{"a\u0000":1}"#,
            r#"["\u0000"]"#,
        ] {
            let error = parse(text.as_bytes()).unwrap_err();
            assert!(error.to_string().contains("U+0000"), "{text}: {error}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(deep.as_bytes()).is_err());
    }
}
