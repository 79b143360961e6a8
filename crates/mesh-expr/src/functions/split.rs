//! `Split(text, delimiter)`: cut a text into a list.

use std::borrow::Cow;

use mesh_model::Value;

use super::{Example, Function, Param, arguments, no_check};
use crate::eval::{Eval, EvalError, EvalResult};
use crate::limits::MAX_LIST_LEN;
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Split",
    signature: "Split(text, delimiter)",
    summary: "Returns the parts of the text between occurrences of the delimiter, as a list.",
    params: &[
        Param {
            name: "text",
            accepts: Ty::STRING.or(Ty::NULL),
            doc: "the text to cut",
        },
        Param {
            name: "delimiter",
            accepts: Ty::STRING,
            doc: "the separator, matched case-sensitively; empty cuts between characters",
        },
    ],
    arity: super::Arity::Exact(2),
    returns: "list of strings; null when `text` is null",
    contract: "Parts are kept as they are, including empty ones between two delimiters \
               (`Split(\"a,,b\", \",\")` has three parts); trim them with `Trim` if needed. \
               The empty text gives the empty list. An empty delimiter gives one part per \
               character. Null `text` gives null; `delimiter` must be a string (R001). More \
               parts than the maximum list length is an error (R004).",
    examples: EXAMPLES,
    pure: true,
    result: |args| match args.first() {
        Some(ty) if !ty.may_be_null() => Ty::LIST,
        _ => Ty::LIST.or(Ty::NULL),
    },
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"Split(proxyAddresses, ";")"#,
        attributes: &[(
            "proxyAddresses",
            r#""SMTP:jane@example.com;smtp:js@example.com""#,
        )],
        result: Ok(r#"["SMTP:jane@example.com", "smtp:js@example.com"]"#),
    },
    Example {
        source: r#"Split("a,,b", ",")"#,
        attributes: &[],
        result: Ok(r#"["a", "", "b"]"#),
    },
    Example {
        source: r#"Split("", ",")"#,
        attributes: &[],
        result: Ok("[]"),
    },
    Example {
        source: r#"Split("äbc", "")"#,
        attributes: &[],
        result: Ok(r#"["ä", "b", "c"]"#),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [text, delimiter] = arguments::<2>("Split", args, span)?;
    let text = ev.text("Split", text)?;
    let delimiter = ev.required_text("Split", delimiter)?;
    let Some(text) = text else {
        return Ok(Val::Null);
    };
    ev.charge(text.len(), span)?;
    let mut parts = Vec::new();
    let mut size = 0usize;
    let mut push = |part: &str| -> Result<(), EvalError> {
        if parts.len() >= MAX_LIST_LEN {
            return Err(EvalError::ListTooLong {
                what: "Split",
                max: MAX_LIST_LEN,
                span,
            });
        }
        size = size.saturating_add(part.len()).saturating_add(16);
        ev.check_size("Split", size, span)?;
        parts.push(Value::from(part));
        Ok(())
    };
    if text.is_empty() {
        // The empty text has no parts; `str::split` would give one empty part.
    } else if delimiter.is_empty() {
        let mut buf = [0u8; 4];
        for c in text.chars() {
            push(c.encode_utf8(&mut buf))?;
        }
    } else {
        for part in text.split(delimiter.as_ref()) {
            push(part)?;
        }
    }
    ev.charge(size, span)?;
    Ok(Val::List(Cow::Owned(parts)))
}
