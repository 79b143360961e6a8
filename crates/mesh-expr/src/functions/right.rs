//! `Right(text, count)`: the last characters of a text.

use super::{Example, Function, Param, arguments, cut, negative_count, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Right",
    signature: "Right(text, count)",
    summary: "Returns the last `count` characters of the text.",
    params: &[
        Param {
            name: "text",
            accepts: Ty::STRING.or(Ty::NULL),
            doc: "the text to take from",
        },
        Param {
            name: "count",
            accepts: Ty::INTEGER,
            doc: "how many characters, 0 or more",
        },
    ],
    arity: super::Arity::Exact(2),
    returns: "string; null when `text` is null",
    contract: "Counts Unicode characters, never bytes, and never splits one. A `count` larger \
               than the text returns the whole text. Null `text` gives null. `count` must be an \
               integer (R001) and not negative (R002; E024 for a negative constant).",
    examples: EXAMPLES,
    pure: true,
    result: text_result,
    check: |args, _| negative_count(args, 1),
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: "Right(employeeId, 4)",
        attributes: &[("employeeId", r#""E00012345""#)],
        result: Ok(r#""2345""#),
    },
    Example {
        source: r#"Right("Zoë", 1)"#,
        attributes: &[],
        result: Ok(r#""ë""#),
    },
    Example {
        source: r#"Right("abc", 0)"#,
        attributes: &[],
        result: Ok(r#""""#),
    },
    Example {
        source: "Right(employeeId, 2)",
        attributes: &[("employeeId", "12345")],
        result: Err("R001"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [text, count] = arguments::<2>("Right", args, span)?;
    let text = ev.text("Right", text)?;
    let count = ev.count("Right", count)?;
    let Some(text) = text else {
        return Ok(Val::Null);
    };
    ev.charge(count.min(text.len()), span)?;
    let start = match count.checked_sub(1) {
        None => text.len(),
        Some(skip) => text.char_indices().rev().nth(skip).map_or(0, |(i, _)| i),
    };
    let end = text.len();
    Ok(Val::Str(cut(text, start, end)))
}
