//! The evaluator's working form of values.
//!
//! [`Val`] borrows from the attributes and from the program's constants wherever it can: an
//! attribute reference, `Left` or `Trim` of one, or a literal costs no allocation. Only a
//! function that builds new text (`Concat`, `Replace`, `ToLower` of borrowed text, …)
//! allocates. The final result becomes an owned [`Value`] once, at the end.

use std::borrow::Cow;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use mesh_model::{Value, ValueKind};

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Integer(i64),
    Decimal(f64),
    Str(Cow<'a, str>),
    Timestamp(DateTime<Utc>),
    List(Cow<'a, [Value]>),
}

impl<'a> Val<'a> {
    /// Borrows a stored value.
    pub(crate) fn borrowed(value: &'a Value) -> Self {
        match value {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Integer(i) => Val::Integer(*i),
            Value::Decimal(d) => Val::Decimal(*d),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Timestamp(t) => Val::Timestamp(*t),
            Value::List(items) => Val::List(Cow::Borrowed(items)),
        }
    }

    pub(crate) fn into_value(self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => Value::Bool(b),
            Val::Integer(i) => Value::Integer(i),
            Val::Decimal(d) => Value::Decimal(d),
            // Borrowed text becomes shared text without an intermediate `String`.
            Val::Str(Cow::Borrowed(s)) => Value::from(s),
            Val::Str(Cow::Owned(s)) => Value::from(s),
            Val::Timestamp(t) => Value::Timestamp(t),
            Val::List(items) => Value::List(items.into_owned()),
        }
    }

    pub(crate) fn view(&self) -> View<'_> {
        match self {
            Val::Null => View::Null,
            Val::Bool(b) => View::Bool(*b),
            Val::Integer(i) => View::Integer(*i),
            Val::Decimal(d) => View::Decimal(*d),
            Val::Str(s) => View::Str(s),
            Val::Timestamp(t) => View::Timestamp(*t),
            Val::List(items) => View::List(items),
        }
    }

    pub(crate) fn kind(&self) -> ValueKind {
        self.view().kind()
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }
}

/// A borrowed look at either a [`Val`] or a stored [`Value`], so that comparison and text
/// conversion are written once for both.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum View<'v> {
    Null,
    Bool(bool),
    Integer(i64),
    Decimal(f64),
    Str(&'v str),
    Timestamp(DateTime<Utc>),
    List(&'v [Value]),
}

impl<'v> View<'v> {
    pub(crate) fn of(value: &'v Value) -> Self {
        match value {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Integer(i) => View::Integer(*i),
            Value::Decimal(d) => View::Decimal(*d),
            Value::String(s) => View::Str(s),
            Value::Timestamp(t) => View::Timestamp(*t),
            Value::List(items) => View::List(items),
        }
    }

    pub(crate) fn kind(self) -> ValueKind {
        match self {
            View::Null => ValueKind::Null,
            View::Bool(_) => ValueKind::Bool,
            View::Integer(_) => ValueKind::Integer,
            View::Decimal(_) => ValueKind::Decimal,
            View::Str(_) => ValueKind::String,
            View::Timestamp(_) => ValueKind::Timestamp,
            View::List(_) => ValueKind::List,
        }
    }
}

/// Appends the text form of a scalar, as `Concat` and `Join` use it; returns false for a list,
/// which has no text form. Null appends nothing.
#[inline]
pub(crate) fn push_text(out: &mut String, value: View<'_>) -> bool {
    match value {
        View::Null => {}
        View::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        View::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        View::Decimal(d) => {
            let _ = write!(out, "{d}");
        }
        View::Str(s) => out.push_str(s),
        View::Timestamp(t) => out.push_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        View::List(_) => return false,
    }
    true
}

/// Returns an upper bound of the bytes [`push_text`] appends, without formatting.
#[inline]
pub(crate) fn text_len_bound(value: View<'_>) -> usize {
    match value {
        View::Null => 0,
        View::Bool(_) => 5,
        View::Integer(_) => 20,
        // f64's Display never uses exponents: 1e308 prints 309 digits.
        View::Decimal(_) => 330,
        View::Str(s) => s.len(),
        View::Timestamp(_) => 40,
        View::List(_) => 0,
    }
}

/// Returns the size a built value counts against [`crate::limits::MAX_VALUE_BYTES`].
pub(crate) fn value_size(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len(),
        Value::List(items) => items
            .iter()
            .map(|item| value_size(item).saturating_add(16))
            .fold(0usize, usize::saturating_add),
        _ => 8,
    }
}

/// Parses the RFC 3339 text that a timestamp becomes after a trip through JSON.
pub(crate) fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Writes a value in TransformScript literal syntax, used by the docs and by `meshctl` to show
/// results unambiguously. Timestamps, which have no literal, are written in RFC 3339 without
/// quotes.
pub fn to_literal(value: &Value) -> String {
    let mut out = String::new();
    write_literal(&mut out, value);
    out
}

fn write_literal(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Decimal(d) => {
            // Keep a decimal point so that 1.0 does not read back as the integer 1.
            if d.is_finite() && d.fract() == 0.0 && d.abs() < 1e16 {
                let _ = write!(out, "{d:.1}");
            } else {
                let _ = write!(out, "{d}");
            }
        }
        Value::String(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => {
                        let _ = write!(out, "\\u{{{:X}}}", u32::from(c));
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Timestamp(t) => out.push_str(&t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_literal(out, item);
            }
            out.push(']');
        }
    }
}
