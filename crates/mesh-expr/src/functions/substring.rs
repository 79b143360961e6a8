//! `Substring(text, start, length)`: a run of characters from a text.

use super::{Example, Function, Param, arguments, char_offset, cut, negative_count, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Substring",
    signature: "Substring(text, start, length)",
    summary: "Returns `length` characters of the text, starting at character `start` (0-based).",
    params: &[
        Param {
            name: "text",
            accepts: Ty::STRING.or(Ty::NULL),
            doc: "the text to take from",
        },
        Param {
            name: "start",
            accepts: Ty::INTEGER,
            doc: "the position of the first character to take; 0 is the first character",
        },
        Param {
            name: "length",
            accepts: Ty::INTEGER,
            doc: "how many characters to take, 0 or more",
        },
    ],
    arity: super::Arity::Exact(3),
    returns: "string; null when `text` is null",
    contract: "Positions and lengths count Unicode characters and never split one. Positions \
               start at 0, as in C#, Java and JavaScript (not at 1 as in Excel's `MID`). A \
               `start` at or past the end gives the empty string; a `length` reaching past the \
               end stops at the end. Null `text` gives null. `start` and `length` must be \
               integers (R001), 0 or more (R002; E024 for a negative constant). \
               `Concat(Left(s, n), Substring(s, n, Len))` is `s` for any `Len` at least the \
               length of `s`.",
    examples: EXAMPLES,
    pure: true,
    result: text_result,
    check: |args, _| negative_count(args, 1).or_else(|| negative_count(args, 2)),
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: "Substring(costCenter, 3, 4)",
        attributes: &[("costCenter", r#""GB-1234-LON""#)],
        result: Ok(r#""1234""#),
    },
    Example {
        source: r#"Substring("Ærøskøbing", 1, 3)"#,
        attributes: &[],
        result: Ok(r#""røs""#),
    },
    Example {
        source: r#"Substring("abc", 5, 2)"#,
        attributes: &[],
        result: Ok(r#""""#),
    },
    Example {
        source: r#"Substring("abc", 1, 100)"#,
        attributes: &[],
        result: Ok(r#""bc""#),
    },
    Example {
        source: r#"Substring("abc", -1, 2)"#,
        attributes: &[],
        result: Err("E024"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [text, start, length] = arguments::<3>("Substring", args, span)?;
    let text = ev.text("Substring", text)?;
    let start = ev.count("Substring", start)?;
    let length = ev.count("Substring", length)?;
    let Some(text) = text else {
        return Ok(Val::Null);
    };
    ev.charge(text.len(), span)?;
    let begin = char_offset(&text, start);
    let rest = text.get(begin..).unwrap_or("");
    let end = begin.saturating_add(char_offset(rest, length));
    Ok(Val::Str(cut(text, begin, end)))
}
