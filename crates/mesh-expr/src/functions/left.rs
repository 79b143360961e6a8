//! `Left(text, count)`: the first characters of a text.

use super::{Example, Function, Param, arguments, char_offset, cut, negative_count, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Left",
    signature: "Left(text, count)",
    summary: "Returns the first `count` characters of the text.",
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
    contract: "Counts Unicode characters (scalar values), never bytes, and never splits one. \
               A `count` larger than the text returns the whole text. Null `text` gives null. \
               `count` must be an integer (R001) and not negative (R002; a negative constant is \
               refused at compile time, E024).",
    examples: EXAMPLES,
    pure: true,
    result: text_result,
    check: |args, _| negative_count(args, 1),
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: "Left(givenName, 1)",
        attributes: &[("givenName", r#""Émilie""#)],
        result: Ok(r#""É""#),
    },
    Example {
        source: r#"Left("Smith", 10)"#,
        attributes: &[],
        result: Ok(r#""Smith""#),
    },
    Example {
        source: r#"Left("日本語テキスト", 3)"#,
        attributes: &[],
        result: Ok(r#""日本語""#),
    },
    Example {
        source: "Left(givenName, 1)",
        attributes: &[],
        result: Ok("null"),
    },
    Example {
        source: "Left(givenName, n)",
        attributes: &[("givenName", r#""Jo""#), ("n", "-1")],
        result: Err("R002"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [text, count] = arguments::<2>("Left", args, span)?;
    let text = ev.text("Left", text)?;
    let count = ev.count("Left", count)?;
    let Some(text) = text else {
        return Ok(Val::Null);
    };
    ev.charge(count.min(text.len()), span)?;
    let end = char_offset(&text, count);
    Ok(Val::Str(cut(text, 0, end)))
}
