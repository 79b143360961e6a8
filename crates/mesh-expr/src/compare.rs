//! Comparison rules, shared by `==`, `!=`, `<`, `<=`, `>`, `>=`, `in` and `Switch`.
//!
//! Equality never fails and never converts between unrelated types:
//! - `null` equals only `null`;
//! - integers and decimals compare by numeric value, exactly (`1 == 1.0`; no rounding through
//!   `f64`, so `9007199254740993 != 9007199254740992.0`); NaN equals nothing;
//! - strings compare by their exact characters, case-sensitively (use `ToLower` for a
//!   case-insensitive test);
//! - a timestamp equals a string when the string is RFC 3339 text for the same instant (a
//!   timestamp that travelled through JSON arrives as a string);
//! - lists are equal when they have the same length and equal elements in order;
//! - any other pair of types (`"1"` and `1`, `true` and `"true"`) is not equal.
//!
//! Ordering is defined for two numbers, two strings (by Unicode code point, which is UTF-8
//! byte order) and two timestamps (or a timestamp and RFC 3339 text). If either side is null
//! the ordering is unknown and every ordering operator yields `false`, as SQL's filters do.
//! Any other pair is a type error.

use std::cmp::Ordering;

use crate::ast::CmpOp;
use crate::types::Ty;
use crate::value::{View, parse_timestamp};

/// Returns whether two values are equal under the rules above.
pub(crate) fn equals(a: View<'_>, b: View<'_>) -> bool {
    match (a, b) {
        (View::Null, View::Null) => true,
        (View::Bool(x), View::Bool(y)) => x == y,
        (View::Str(x), View::Str(y)) => x == y,
        (View::Timestamp(x), View::Timestamp(y)) => x == y,
        (View::Timestamp(t), View::Str(s)) | (View::Str(s), View::Timestamp(t)) => {
            parse_timestamp(s) == Some(t)
        }
        (View::List(x), View::List(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(x, y)| equals(View::of(x), View::of(y)))
        }
        (x, y) => numeric_order(x, y) == Some(Ordering::Equal),
    }
}

/// The outcome of an ordering comparison that is not a type error.
pub(crate) enum Ordered {
    /// Both sides are comparable.
    Known(Ordering),
    /// A null side or a NaN: every ordering operator yields false.
    Unknown,
}

/// Orders two values, or returns `Err(())` when their types cannot be ordered.
pub(crate) fn order(a: View<'_>, b: View<'_>) -> Result<Ordered, ()> {
    if let Some(ordering) = numeric_order(a, b) {
        return Ok(Ordered::Known(ordering));
    }
    match (a, b) {
        (View::Null, _) | (_, View::Null) => Ok(Ordered::Unknown),
        (View::Integer(_) | View::Decimal(_), View::Integer(_) | View::Decimal(_)) => {
            Ok(Ordered::Unknown)
        }
        (View::Str(x), View::Str(y)) => Ok(Ordered::Known(x.cmp(y))),
        (View::Timestamp(x), View::Timestamp(y)) => Ok(Ordered::Known(x.cmp(&y))),
        (View::Timestamp(t), View::Str(s)) => parse_timestamp(s)
            .map(|s| Ordered::Known(t.cmp(&s)))
            .ok_or(()),
        (View::Str(s), View::Timestamp(t)) => parse_timestamp(s)
            .map(|s| Ordered::Known(s.cmp(&t)))
            .ok_or(()),
        _ => Err(()),
    }
}

/// Applies an ordering operator to the outcome of [`order`].
pub(crate) fn holds(op: CmpOp, ordered: Ordered) -> bool {
    let Ordered::Known(ordering) = ordered else {
        return false;
    };
    match op {
        CmpOp::Eq => ordering == Ordering::Equal,
        CmpOp::Ne => ordering != Ordering::Equal,
        CmpOp::Lt => ordering == Ordering::Less,
        CmpOp::Le => ordering != Ordering::Greater,
        CmpOp::Gt => ordering == Ordering::Greater,
        CmpOp::Ge => ordering != Ordering::Less,
    }
}

fn numeric_order(a: View<'_>, b: View<'_>) -> Option<Ordering> {
    match (a, b) {
        (View::Integer(x), View::Integer(y)) => Some(x.cmp(&y)),
        (View::Decimal(x), View::Decimal(y)) => x.partial_cmp(&y),
        (View::Integer(i), View::Decimal(d)) => int_vs_decimal(i, d),
        (View::Decimal(d), View::Integer(i)) => int_vs_decimal(i, d).map(Ordering::reverse),
        _ => None,
    }
}

/// Compares an integer with a decimal exactly. Converting the integer to `f64` would round
/// above 2^53 and make distinct values equal.
fn int_vs_decimal(i: i64, d: f64) -> Option<Ordering> {
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if d.is_nan() {
        return None;
    }
    if d >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if d < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    let whole = d.trunc();
    // In [-2^63, 2^63) an integral f64 converts to i64 exactly.
    let whole_int = whole as i64;
    match i.cmp(&whole_int) {
        Ordering::Equal => {
            let fraction = d - whole;
            Some(if fraction > 0.0 {
                Ordering::Less
            } else if fraction < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            })
        }
        other => Some(other),
    }
}

/// Returns true when some pair of kinds from the two sets could be equal; the checker warns
/// (W003) when none could, since the comparison's result is then fixed.
pub(crate) fn may_equal(a: Ty, b: Ty) -> bool {
    let comparable = [
        (Ty::NULL, Ty::NULL),
        (Ty::BOOL, Ty::BOOL),
        (Ty::NUMBER, Ty::NUMBER),
        (Ty::STRING, Ty::STRING),
        (Ty::TIMESTAMP, Ty::TIMESTAMP.or(Ty::STRING)),
        (Ty::STRING, Ty::TIMESTAMP),
        (Ty::LIST, Ty::LIST),
    ];
    comparable.iter().any(|(x, y)| a.meets(*x) && b.meets(*y))
}

/// Returns true when some pair of kinds from the two sets can be ordered without a type error.
pub(crate) fn may_order(a: Ty, b: Ty) -> bool {
    // Null orders as "unknown" (false), never as an error; judge the non-null kinds.
    let (a, b) = (a.without(Ty::NULL), b.without(Ty::NULL));
    if !a.meets(Ty::ANY) || !b.meets(Ty::ANY) {
        return true;
    }
    let orderable = [
        (Ty::NUMBER, Ty::NUMBER),
        (Ty::STRING, Ty::STRING.or(Ty::TIMESTAMP)),
        (Ty::TIMESTAMP, Ty::TIMESTAMP.or(Ty::STRING)),
    ];
    orderable.iter().any(|(x, y)| a.meets(*x) && b.meets(*y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_and_decimals_compare_exactly() {
        assert!(equals(View::Integer(1), View::Decimal(1.0)));
        assert!(!equals(
            View::Integer(9_007_199_254_740_993),
            View::Decimal(9_007_199_254_740_992.0)
        ));
        assert_eq!(int_vs_decimal(2, 2.5), Some(Ordering::Less));
        assert_eq!(int_vs_decimal(-2, -2.5), Some(Ordering::Greater));
        assert_eq!(int_vs_decimal(i64::MAX, 9.3e18), Some(Ordering::Less));
        assert_eq!(int_vs_decimal(i64::MIN, -9.3e18), Some(Ordering::Greater));
        assert_eq!(int_vs_decimal(0, f64::NAN), None);
        assert!(!equals(View::Decimal(f64::NAN), View::Decimal(f64::NAN)));
    }

    #[test]
    fn mixed_types_are_never_equal() {
        assert!(!equals(View::Str("1"), View::Integer(1)));
        assert!(!equals(View::Null, View::Str("")));
        assert!(equals(View::Null, View::Null));
        assert!(order(View::Str("a"), View::Integer(1)).is_err());
        assert!(matches!(
            order(View::Null, View::Integer(1)),
            Ok(Ordered::Unknown)
        ));
    }
}
