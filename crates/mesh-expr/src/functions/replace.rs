//! `Replace(text, old, new)`: replace every occurrence of a substring.

use std::borrow::Cow;

use super::{Example, Function, Param, arguments, no_check, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Replace",
    signature: "Replace(text, old, new)",
    summary: "Returns the text with every occurrence of `old` replaced by `new`.",
    params: &[
        Param {
            name: "text",
            accepts: Ty::STRING.or(Ty::NULL),
            doc: "the text to search",
        },
        Param {
            name: "old",
            accepts: Ty::STRING,
            doc: "the substring to find, case-sensitively",
        },
        Param {
            name: "new",
            accepts: Ty::STRING,
            doc: "what to put in its place",
        },
    ],
    arity: super::Arity::Exact(3),
    returns: "string; null when `text` is null",
    contract: "Occurrences are found left to right and do not overlap; the replacement is not \
               searched again. An empty `old` matches nothing and returns `text` unchanged. \
               Null `text` gives null; `old` and `new` must be strings (R001). A result larger \
               than the maximum value size is an error (R003), detected before it is built.",
    examples: EXAMPLES,
    pure: true,
    result: text_result,
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"Replace(displayName, " ", ".")"#,
        attributes: &[("displayName", r#""Jane van Dyke""#)],
        result: Ok(r#""Jane.van.Dyke""#),
    },
    Example {
        source: r#"Replace("aaa", "aa", "b")"#,
        attributes: &[],
        result: Ok(r#""ba""#),
    },
    Example {
        source: r#"Replace("abc", "", "x")"#,
        attributes: &[],
        result: Ok(r#""abc""#),
    },
    Example {
        source: r#"Replace(mail, "@old.example", "@new.example")"#,
        attributes: &[],
        result: Ok("null"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [text, old, new] = arguments::<3>("Replace", args, span)?;
    let text = ev.text("Replace", text)?;
    let old = ev.required_text("Replace", old)?;
    let new = ev.required_text("Replace", new)?;
    let Some(text) = text else {
        return Ok(Val::Null);
    };
    ev.charge(text.len(), span)?;
    if old.is_empty() {
        return Ok(Val::Str(text));
    }
    let count = text.matches(old.as_ref()).count();
    if count == 0 {
        return Ok(Val::Str(text));
    }
    let size = (text.len().saturating_sub(count.saturating_mul(old.len())))
        .saturating_add(count.saturating_mul(new.len()));
    ev.check_size("Replace", size, span)?;
    ev.charge(size, span)?;
    Ok(Val::Str(Cow::Owned(text.replace(old.as_ref(), &new))))
}
