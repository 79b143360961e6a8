//! `Format(value, pattern)`: timestamps and numbers as text.
//!
//! Two pattern languages, chosen by the value's type:
//!
//! - **Timestamps** use strftime specifiers as chrono implements them (`%Y-%m-%d`,
//!   `%H:%M:%S`, `%d %B %Y`, `%s`, …), always in UTC. A pattern is parsed and refused before
//!   formatting when it holds an unknown specifier, because chrono's `Display` fails (and
//!   `to_string` panics) on one.
//! - **Numbers** use a small subset of the .NET/Excel custom numeric format: see
//!   [`NumberPattern`].

use std::fmt::Write as _;

use chrono::format::StrftimeItems;
use chrono::{DateTime, Utc};

use super::{Example, Function, Param, arguments};
use crate::eval::{Eval, EvalError, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::{Val, parse_timestamp};

/// The longest pattern accepted, in bytes; it bounds the output (`%c` repeated) as well.
pub(crate) const MAX_PATTERN_LEN: usize = 256;
/// The most `0` placeholders before the decimal point.
const MAX_INTEGER_DIGITS: usize = 32;
/// The most decimal places: beyond 15 an `f64` has no more precision to show.
const MAX_DECIMALS: usize = 15;

pub(crate) static FUNCTION: Function = Function {
    name: "Format",
    signature: "Format(value, pattern)",
    summary: "Returns a timestamp or a number as text, following a pattern.",
    params: &[
        Param {
            name: "value",
            accepts: Ty::TIMESTAMP.or(Ty::NUMBER).or(Ty::STRING).or(Ty::NULL),
            doc: "a timestamp, a number, or text holding one",
        },
        Param {
            name: "pattern",
            accepts: Ty::STRING,
            doc: "a strftime pattern for a timestamp, a numeric pattern for a number",
        },
    ],
    arity: super::Arity::Exact(2),
    returns: "string; null when `value` is null",
    contract: "A timestamp is formatted in UTC with a strftime pattern (see *Format patterns* \
               below). A number is formatted with a numeric pattern: `0` a digit always shown, \
               `#` a digit shown when significant, `,` thousands separators, `.` the decimal \
               point; text before and after the placeholders is copied. Decimals round half to \
               even on the exact binary value. Text is read as a timestamp when it is RFC 3339, \
               else as a number when it is an integer or decimal literal (`-12`, `3.5`), \
               else it is an error (R002). A pattern that is invalid for the value is an error \
               (R002; E024 when the pattern is a constant that fits no value type), as is a \
               pattern longer than 256 bytes, NaN or infinity. Null `value` gives null; a \
               boolean or a list is an error (R001).",
    examples: EXAMPLES,
    pure: true,
    result: |args| match args.first() {
        Some(ty) if !ty.may_be_null() => Ty::STRING,
        _ => Ty::STRING.or(Ty::NULL),
    },
    check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"Format(hireDate, "%Y-%m-%d")"#,
        attributes: &[("hireDate", "2024-02-29T08:30:00Z")],
        result: Ok(r#""2024-02-29""#),
    },
    Example {
        source: r#"Format(hireDate, "%d %B %Y, %H:%M")"#,
        attributes: &[("hireDate", r#""2024-02-29T08:30:00+01:00""#)],
        result: Ok(r#""29 February 2024, 07:30""#),
    },
    Example {
        source: r#"Format(employeeNumber, "000000")"#,
        attributes: &[("employeeNumber", "1042")],
        result: Ok(r#""001042""#),
    },
    Example {
        source: r##"Format(salary, "#,##0.00")"##,
        attributes: &[("salary", "1234567.891")],
        result: Ok(r#""1,234,567.89""#),
    },
    Example {
        source: r#"Format(-0.5, "0.##")"#,
        attributes: &[],
        result: Ok(r#""-0.5""#),
    },
    Example {
        source: r#"Format(badge, "E-0000")"#,
        attributes: &[("badge", r#""42""#)],
        result: Ok(r#""E-0042""#),
    },
    Example {
        source: r#"Format(hireDate, "%Q")"#,
        attributes: &[],
        result: Err("E024"),
    },
    Example {
        source: r#"Format(hireDate, "%Y")"#,
        attributes: &[("hireDate", r#""soon""#)],
        result: Err("R002"),
    },
];

/// Refuses a constant pattern that fits no value the first argument can have.
fn check(args: &[Node], types: &[Ty]) -> Option<(usize, String)> {
    let pattern = match args.get(1).and_then(Node::as_const) {
        Some(mesh_model::Value::String(p)) => p,
        _ => return None,
    };
    let value = types.first().copied().unwrap_or(Ty::ANY).without(Ty::NULL);
    let date = validate_date_pattern(pattern);
    let number = validate_number_pattern(pattern);
    // Text can hold either kind, so it makes both patterns possible.
    let may_be_date = value.meets(Ty::TIMESTAMP.or(Ty::STRING));
    let may_be_number = value.meets(Ty::NUMBER.or(Ty::STRING));
    match (date, number) {
        (Ok(()), _) if may_be_date => None,
        (_, Ok(())) if may_be_number => None,
        (Err(date), _) if may_be_date && !may_be_number => Some((1, date)),
        (_, Err(number)) if may_be_number && !may_be_date => Some((1, number)),
        (Err(date), Err(number)) => Some((
            1,
            format!(
                "not a valid pattern: as a timestamp pattern, {date}; as a number pattern, {number}"
            ),
        )),
        _ => None,
    }
}

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [value_arg, pattern_arg] = arguments::<2>("Format", args, span)?;
    let value = ev.eval(value_arg)?;
    let pattern = ev.required_text("Format", pattern_arg)?;
    let invalid = |reason: String| EvalError::InvalidArgument {
        what: "Format",
        reason,
        span: pattern_arg.span,
    };
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(invalid(format!(
            "the pattern is {} bytes long; the maximum is {MAX_PATTERN_LEN}",
            pattern.len()
        )));
    }
    ev.charge(pattern.len(), span)?;
    let number = |n: Number| format_number(n, &pattern).map_err(invalid);
    let text = match value {
        Val::Null => return Ok(Val::Null),
        Val::Timestamp(t) => format_date(t, &pattern).map_err(invalid)?,
        Val::Integer(i) => number(Number::Integer(i))?,
        Val::Decimal(d) => number(Number::Decimal(d))?,
        Val::Str(s) => {
            if let Some(t) = parse_timestamp(&s) {
                format_date(t, &pattern).map_err(invalid)?
            } else if let Some(n) = parse_number_text(&s) {
                number(n)?
            } else {
                return Err(EvalError::InvalidArgument {
                    what: "Format",
                    reason: format!(
                        "{:?} is neither an RFC 3339 timestamp nor a number",
                        Preview(&s)
                    ),
                    span: value_arg.span,
                });
            }
        }
        other => {
            return Err(EvalError::TypeMismatch {
                what: "Format",
                expected: "a timestamp, a number or text holding one",
                found: other.kind(),
                span: value_arg.span,
            });
        }
    };
    Ok(Val::Str(text.into()))
}

/// Shows at most 40 characters of a rejected value: an error message must not carry a whole
/// attribute (it may be large, or sensitive).
struct Preview<'s>(&'s str);

impl std::fmt::Debug for Preview<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cut: String = self.0.chars().take(40).collect();
        if cut.len() < self.0.len() {
            write!(f, "{:?}…", cut)
        } else {
            write!(f, "{:?}", cut)
        }
    }
}

/// Checks a timestamp pattern without formatting anything.
pub(crate) fn validate_date_pattern(pattern: &str) -> Result<(), String> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(format!("longer than {MAX_PATTERN_LEN} bytes"));
    }
    StrftimeItems::new(pattern)
        .parse()
        .map(|_| ())
        .map_err(|_| "it holds an unknown or incomplete `%` specifier".to_owned())
}

fn format_date(t: DateTime<Utc>, pattern: &str) -> Result<String, String> {
    let items = StrftimeItems::new(pattern).parse().map_err(|_| {
        "the timestamp pattern holds an unknown or incomplete `%` specifier".to_owned()
    })?;
    let mut out = String::new();
    // Valid items cannot fail on a UTC date-time, but `write!` keeps this total regardless.
    write!(out, "{}", t.format_with_items(items.iter()))
        .map_err(|_| "the timestamp cannot be formatted with this pattern".to_owned())?;
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
enum Number {
    Integer(i64),
    Decimal(f64),
}

/// Reads `-12`, `3.5`, `+7`; refuses `1e5`, `inf`, `NaN`, which `f64::from_str` would accept.
fn parse_number_text(s: &str) -> Option<Number> {
    let s = s.trim();
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (whole, fraction) = match digits.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (digits, None),
    };
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
        return None;
    }
    match fraction {
        None => s.parse().ok().map(Number::Integer),
        Some(_) => s
            .parse()
            .ok()
            .filter(|d: &f64| d.is_finite())
            .map(Number::Decimal),
    }
}

/// A parsed numeric pattern: `[prefix] digits [. decimals] [suffix]`.
///
/// - `0` is a digit always shown (padding with zeros), `#` a digit shown only when
///   significant; in the decimals all `0`s come before all `#`s (`0.0#`).
/// - `,` anywhere among the integer placeholders turns on thousands separators.
/// - Text before the first placeholder and after the last is copied as it is; it may not
///   contain `0` or `#`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NumberPattern<'p> {
    prefix: &'p str,
    suffix: &'p str,
    min_integer_digits: usize,
    grouping: bool,
    min_decimals: usize,
    max_decimals: usize,
}

pub(crate) fn validate_number_pattern(pattern: &str) -> Result<(), String> {
    NumberPattern::parse(pattern).map(|_| ())
}

impl<'p> NumberPattern<'p> {
    fn parse(pattern: &'p str) -> Result<Self, String> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!("longer than {MAX_PATTERN_LEN} bytes"));
        }
        let Some(start) = pattern.find(['0', '#']) else {
            return Err("a number pattern needs at least one `0` or `#`".to_owned());
        };
        let body_len = pattern
            .get(start..)
            .unwrap_or("")
            .find(|c: char| !matches!(c, '0' | '#' | ',' | '.'))
            .unwrap_or(pattern.len() - start);
        let end = start + body_len;
        let prefix = pattern.get(..start).unwrap_or("");
        let body = pattern.get(start..end).unwrap_or("");
        let suffix = pattern.get(end..).unwrap_or("");
        if suffix.contains(['0', '#']) {
            return Err("a number pattern has one run of `0`/`#` placeholders".to_owned());
        }
        let (integer, decimals) = match body.split_once('.') {
            Some((i, d)) => (i, d),
            None => (body, ""),
        };
        if decimals.contains(['.', ',']) {
            return Err("after the decimal point only `0` and `#` may follow".to_owned());
        }
        if integer.ends_with(',') {
            return Err("`,` must stand between digit placeholders".to_owned());
        }
        let min_decimals = decimals.bytes().take_while(|b| *b == b'0').count();
        if decimals.get(min_decimals..).unwrap_or("").contains('0') {
            return Err("in the decimals, every `0` must come before every `#`".to_owned());
        }
        let min_integer_digits = integer.bytes().filter(|b| *b == b'0').count();
        if min_integer_digits > MAX_INTEGER_DIGITS {
            return Err(format!(
                "at most {MAX_INTEGER_DIGITS} `0` before the decimal point"
            ));
        }
        if decimals.len() > MAX_DECIMALS {
            return Err(format!("at most {MAX_DECIMALS} decimal places"));
        }
        Ok(Self {
            prefix,
            suffix,
            min_integer_digits,
            grouping: integer.contains(','),
            min_decimals,
            max_decimals: decimals.len(),
        })
    }
}

fn format_number(n: Number, pattern: &str) -> Result<String, String> {
    let p = NumberPattern::parse(pattern)?;
    let (negative, digits) = match n {
        Number::Integer(i) => {
            let mut s = i.unsigned_abs().to_string();
            if p.max_decimals > 0 {
                s.push('.');
                s.extend(std::iter::repeat_n('0', p.max_decimals));
            }
            (i < 0, s)
        }
        Number::Decimal(d) => {
            if !d.is_finite() {
                return Err(format!("cannot format {d}"));
            }
            (
                d.is_sign_negative(),
                format!("{:.*}", p.max_decimals, d.abs()),
            )
        }
    };
    let (integer, decimals) = match digits.split_once('.') {
        Some((i, d)) => (i, d),
        None => (digits.as_str(), ""),
    };
    let significant = decimals.trim_end_matches('0').len();
    let decimals = decimals
        .get(..significant.max(p.min_decimals))
        .unwrap_or(decimals);
    let integer = integer.trim_start_matches('0');
    let is_zero = integer.is_empty() && decimals.bytes().all(|b| b == b'0');

    let mut out = String::new();
    // No "-0.00": a value that rounds to zero shows no sign.
    if negative && !is_zero {
        out.push('-');
    }
    out.push_str(p.prefix);
    let padding = p.min_integer_digits.saturating_sub(integer.len());
    let padded: String = std::iter::repeat_n('0', padding)
        .chain(integer.chars())
        .collect();
    if p.grouping {
        let len = padded.len();
        for (i, c) in padded.chars().enumerate() {
            if i > 0 && (len - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
    } else {
        out.push_str(&padded);
    }
    if !decimals.is_empty() {
        out.push('.');
        out.push_str(decimals);
    }
    out.push_str(p.suffix);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: Number, p: &str) -> String {
        format_number(n, p).unwrap()
    }

    #[test]
    fn number_patterns() {
        use Number::{Decimal as D, Integer as I};
        assert_eq!(num(I(1042), "000000"), "001042");
        assert_eq!(num(I(-1234567), "#,##0"), "-1,234,567");
        assert_eq!(num(I(i64::MIN), "0"), "-9223372036854775808");
        assert_eq!(num(I(5), "0.00"), "5.00");
        assert_eq!(num(I(5), "0.##"), "5");
        assert_eq!(num(D(2.5), "0"), "2");
        assert_eq!(num(D(3.5), "0"), "4");
        assert_eq!(num(D(0.5), "#.00"), ".50");
        assert_eq!(num(D(-0.001), "0.00"), "0.00");
        assert_eq!(num(D(1234.5), "$#,##0.00 USD"), "$1,234.50 USD");
        assert_eq!(num(D(1.25), "0.0#"), "1.25");
        assert_eq!(num(D(1.2), "0.0#"), "1.2");
        assert_eq!(num(I(0), "#"), "");
        assert_eq!(num(I(0), "0"), "0");
        assert_eq!(num(D(1e300), "0").len(), 301);
    }

    #[test]
    fn bad_number_patterns_are_refused() {
        for p in [
            "",
            "abc",
            "0.0.0",
            "0,",
            "0.#0",
            "0 and 0",
            "0.0000000000000000",
        ] {
            assert!(NumberPattern::parse(p).is_err(), "{p}");
        }
        assert!(format_number(Number::Decimal(f64::NAN), "0").is_err());
    }

    #[test]
    fn bad_date_patterns_are_refused_not_panicking() {
        for p in ["%Q", "%", "%Y-%", "%-", "%:"] {
            assert!(validate_date_pattern(p).is_err(), "{p}");
        }
        assert!(validate_date_pattern("%Y-%m-%dT%H:%M:%S%.3f%:z").is_ok());
    }

    #[test]
    fn number_text_is_strict() {
        assert!(matches!(
            parse_number_text("-12"),
            Some(Number::Integer(-12))
        ));
        assert!(matches!(parse_number_text("3.5"), Some(Number::Decimal(_))));
        for s in ["1e5", "inf", "NaN", "", "-", "1.", ".5", "0x10"] {
            assert!(parse_number_text(s).is_none(), "{s}");
        }
    }
}
