//! `Concat(value, ...)`: join values into one string.

use std::borrow::Cow;

use super::{Example, Function, Param, no_check};
use crate::eval::{Eval, EvalError, EvalResult};
use crate::limits::MAX_VALUE_BYTES;
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::{Val, push_text, text_len_bound};

pub(crate) static FUNCTION: Function = Function {
    name: "Concat",
    signature: "Concat(value, ...)",
    summary: "Returns the text of every argument, joined without a separator.",
    params: &[Param {
        name: "value",
        accepts: Ty::SCALAR,
        doc: "one or more values; null adds nothing",
    }],
    arity: super::Arity::AtLeast(1),
    returns: "string (never null)",
    contract: "Null arguments add nothing, so a missing attribute does not make the whole \
               result null: use `If` or `Coalesce` when it should. Numbers, booleans and \
               timestamps add their text form: integers in decimal, decimals in the shortest \
               form that reads back the same (`2.5`, `1`), `true`/`false`, timestamps in RFC \
               3339 with `Z`. A list argument is an error (R001): use `Join`. A result larger \
               than the maximum value size is an error (R003).",
    examples: EXAMPLES,
    pure: true,
    result: |_| Ty::STRING,
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"Concat(Left(givenName, 1), ". ", sn)"#,
        attributes: &[("givenName", r#""John""#), ("sn", r#""Smith""#)],
        result: Ok(r#""J. Smith""#),
    },
    Example {
        source: r#"Concat("E", employeeNumber, "-", active)"#,
        attributes: &[("employeeNumber", "1042"), ("active", "true")],
        result: Ok(r#""E1042-true""#),
    },
    Example {
        source: r#"Concat(givenName, " ", middleName, " ", sn)"#,
        attributes: &[("givenName", r#""Jane""#), ("sn", r#""Doe""#)],
        result: Ok(r#""Jane  Doe""#),
    },
    Example {
        source: r#"Concat("groups: ", memberOf)"#,
        attributes: &[("memberOf", r#"["admins"]"#)],
        result: Err("R001"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    // One allocation covers the common case of a short name; the buffer grows if needed.
    let mut out = String::with_capacity(32);
    for arg in args {
        let value = ev.eval(arg)?;
        let view = value.view();
        let bound = out.len().saturating_add(text_len_bound(view));
        if bound > MAX_VALUE_BYTES {
            ev.check_size("Concat", bound, span)?;
        }
        if !push_text(&mut out, view) {
            return Err(EvalError::TypeMismatch {
                what: "Concat",
                expected: "a string, number, boolean, timestamp or null",
                found: value.kind(),
                span: arg.span,
            });
        }
    }
    ev.charge(out.len(), span)?;
    Ok(Val::Str(Cow::Owned(out)))
}
