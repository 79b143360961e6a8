//! Durations in the configuration: `"30s"`, `"1m30s"`, `"500ms"`, `"2h"`, or a number of seconds.
//!
//! A bare number (TOML `30`, `2.5`, `"30"`, or `MESH_SHUTDOWN__GRACE_PERIOD=30`) is seconds. A
//! string is one or more `<number><unit>` parts with units `ms`, `s`, `m`, `h`, `d`
//! (`"1m30s"`, `"1h 30m"`). Negative, empty and unknown-unit values are rejected with a message
//! that shows the accepted forms.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};

const EXPECTED: &str = "a duration such as \"30s\", \"500ms\", \"1m30s\" or a number of seconds";

/// Deserializes one duration (`#[serde(with = "duration")]`).
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Formats a duration the way the parser reads it back (`1m30s`), for docs and logs.
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    if ms > 0 {
        out.push_str(&format!("{ms}ms"));
    }
    out
}

/// Parses `"30s"`, `"1m30s"`, `"500ms"`, `"1h 30m"` or `"30"` (seconds).
pub fn parse_duration(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err(format!("empty duration; expected {EXPECTED}"));
    }
    if let Ok(secs) = s.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {input:?}; expected {EXPECTED}"))?;
        let unit_secs = match unit {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3_600.0,
            "d" => 86_400.0,
            _ => return Err(format!("invalid duration {input:?}; expected {EXPECTED}")),
        };
        total += seconds(value * unit_secs)?;
        rest = after.trim_start();
    }
    Ok(total)
}

fn seconds(secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("invalid duration {secs}; expected {EXPECTED}"))
}

struct DurationVisitor;

impl<'de> Visitor<'de> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        seconds(v).map_err(|_| E::invalid_value(de::Unexpected::Float(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse_duration(v).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// A list of durations (`#[serde(with = "duration::list")]`), e.g. `["1s", "5s", "30s"]`.
pub(crate) mod list {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        d.deserialize_seq(ListVisitor)
    }

    struct ListVisitor;

    struct One(Duration);

    impl<'de> serde::Deserialize<'de> for One {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            super::deserialize(d).map(One)
        }
    }

    impl<'de> Visitor<'de> for ListVisitor {
        type Value = Vec<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of durations, each {EXPECTED}")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Duration>, A::Error> {
            let mut out = Vec::new();
            while let Some(One(d)) = seq.next_element()? {
                out.push(d);
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        let cases = [
            ("30s", 30_000),
            ("500ms", 500),
            ("1m30s", 90_000),
            ("1h 30m", 5_400_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("30", 30_000),
            ("1.5", 1_500),
            ("0.5s", 500),
        ];
        for (input, ms) in cases {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(ms)),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_nonsense() {
        for input in ["", "ten", "30 parsecs", "-1s", "s", "1x"] {
            assert!(parse_duration(input).is_err(), "{input}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for ms in [0u64, 500, 30_000, 90_000, 5_400_500, 86_400_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d), "{ms}");
        }
    }
}
