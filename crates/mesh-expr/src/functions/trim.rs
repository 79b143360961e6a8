//! `Trim(text)`: strip leading and trailing white space.

use std::borrow::Cow;

use super::{Example, Function, Param, arguments, no_check, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Trim",
    signature: "Trim(text)",
    summary: "Returns the text without leading and trailing white space.",
    params: &[Param {
        name: "text",
        accepts: Ty::STRING.or(Ty::NULL),
        doc: "the text to trim",
    }],
    arity: super::Arity::Exact(1),
    returns: "string; null when `text` is null",
    contract: "White space is Unicode's `White_Space` property: spaces, tabs, line breaks, \
               no-break spaces and the like. White space inside the text is kept. Null gives \
               null; any other type than string is an error (R001). Idempotent.",
    examples: EXAMPLES,
    pure: true,
    result: text_result,
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"Trim("  Jane Smith \t\n")"#,
        attributes: &[],
        result: Ok(r#""Jane Smith""#),
    },
    Example {
        source: "Trim(displayName)",
        attributes: &[("displayName", "\"\\u{A0}Dr. Who\\u{A0}\"")],
        result: Ok(r#""Dr. Who""#),
    },
    Example {
        source: "Trim(displayName)",
        attributes: &[],
        result: Ok("null"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [text] = arguments::<1>("Trim", args, span)?;
    let Some(text) = ev.text("Trim", text)? else {
        return Ok(Val::Null);
    };
    ev.charge(text.len(), span)?;
    let trimmed = match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.trim()),
        Cow::Owned(s) if s.trim().len() == s.len() => Cow::Owned(s),
        Cow::Owned(s) => Cow::Owned(s.trim().to_owned()),
    };
    Ok(Val::Str(trimmed))
}
