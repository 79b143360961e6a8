//! `ToLower(text)`: lowercase text.

use std::borrow::Cow;

use super::{Example, Function, Param, arguments, no_check, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "ToLower",
    signature: "ToLower(text)",
    summary: "Returns the text in lowercase.",
    params: &[Param {
        name: "text",
        accepts: Ty::STRING.or(Ty::NULL),
        doc: "the text to convert",
    }],
    arity: super::Arity::Exact(1),
    returns: "string; null when `text` is null",
    contract: "Uses Unicode's default case mapping, the same in every locale (no Turkish \
               dotless i). A character may become several (`İ` becomes `i̇`). Null gives null; \
               any other type than string is an error (R001). Idempotent: \
               `ToLower(ToLower(x)) == ToLower(x)`.",
    examples: EXAMPLES,
    pure: true,
    result: text_result,
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"ToLower("Jane.SMITH@Example.com")"#,
        attributes: &[],
        result: Ok(r#""jane.smith@example.com""#),
    },
    Example {
        source: "ToLower(Concat(Left(FirstName, 1), LastName))",
        attributes: &[("FirstName", r#""John""#), ("LastName", r#""Smith""#)],
        result: Ok(r#""jsmith""#),
    },
    Example {
        source: r#"ToLower("ÉCOLE Straße")"#,
        attributes: &[],
        result: Ok(r#""école straße""#),
    },
    Example {
        source: "ToLower(middleName)",
        attributes: &[],
        result: Ok("null"),
    },
    Example {
        source: "ToLower(employeeNumber)",
        attributes: &[("employeeNumber", "42")],
        result: Err("R001"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [text] = arguments::<1>("ToLower", args, span)?;
    let Some(text) = ev.text("ToLower", text)? else {
        return Ok(Val::Null);
    };
    ev.charge(text.len(), span)?;
    let lowered = match text {
        Cow::Borrowed(s) if s.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) => {
            Cow::Borrowed(s)
        }
        // ASCII case mapping keeps the length, so the size was already within bounds.
        Cow::Owned(mut s) if s.is_ascii() => {
            s.make_ascii_lowercase();
            Cow::Owned(s)
        }
        other => {
            ev.check_size("ToLower", other.len(), span)?;
            let mapped = other.to_lowercase();
            ev.check_size("ToLower", mapped.len(), span)?;
            Cow::Owned(mapped)
        }
    };
    Ok(Val::Str(lowered))
}
