//! `Join(list, delimiter)`: join the elements of a list into one string.

use std::borrow::Cow;

use super::{Example, Function, Param, arguments, no_check};
use crate::eval::{Eval, EvalError, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::{Val, View, push_text, text_len_bound};

pub(crate) static FUNCTION: Function = Function {
    name: "Join",
    signature: "Join(list, delimiter)",
    summary: "Returns the text of the list's elements, separated by the delimiter.",
    params: &[
        Param {
            name: "list",
            accepts: Ty::LIST.or(Ty::NULL),
            doc: "the values to join, e.g. a multi-valued attribute",
        },
        Param {
            name: "delimiter",
            accepts: Ty::STRING,
            doc: "the separator put between two elements",
        },
    ],
    arity: super::Arity::Exact(2),
    returns: "string; null when `list` is null",
    contract: "Null elements are skipped (no doubled delimiter). Numbers, booleans and \
               timestamps join as their text form, as in `Concat`. A nested list is an error \
               (R001). A `list` that is not a list is an error (R001; E022 when it can never \
               be one, as in `Join(\"a\", \",\")`). Null `list` gives null; `delimiter` must be \
               a string. A result larger than the maximum value size is an error (R003).",
    examples: EXAMPLES,
    pure: true,
    result: |args| match args.first() {
        Some(ty) if !ty.may_be_null() => Ty::STRING,
        _ => Ty::STRING.or(Ty::NULL),
    },
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"Join(memberOf, "; ")"#,
        attributes: &[("memberOf", r#"["admins", "staff"]"#)],
        result: Ok(r#""admins; staff""#),
    },
    Example {
        source: r#"Join(["a", null, 3], "-")"#,
        attributes: &[],
        result: Ok(r#""a-3""#),
    },
    Example {
        source: r#"Join(Split("c=GB,o=Example", ","), "/")"#,
        attributes: &[],
        result: Ok(r#""c=GB/o=Example""#),
    },
    Example {
        source: r#"Join("a", ",")"#,
        attributes: &[],
        result: Err("E022"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [list_arg, delimiter] = arguments::<2>("Join", args, span)?;
    let list = ev.eval(list_arg)?;
    let delimiter = ev.required_text("Join", delimiter)?;
    let items = match &list {
        Val::Null => return Ok(Val::Null),
        Val::List(items) => items,
        other => {
            return Err(EvalError::TypeMismatch {
                what: "Join",
                expected: "a list",
                found: other.kind(),
                span: list_arg.span,
            });
        }
    };
    let mut out = String::new();
    let mut first = true;
    for item in items.iter() {
        let view = View::of(item);
        if matches!(view, View::Null) {
            continue;
        }
        let bound = out
            .len()
            .saturating_add(delimiter.len())
            .saturating_add(text_len_bound(view));
        ev.check_size("Join", bound, span)?;
        if !first {
            out.push_str(&delimiter);
        }
        first = false;
        if !push_text(&mut out, view) {
            return Err(EvalError::TypeMismatch {
                what: "Join",
                expected: "a list of strings, numbers, booleans or timestamps",
                found: view.kind(),
                span: list_arg.span,
            });
        }
    }
    ev.charge(out.len().saturating_add(items.len()), span)?;
    Ok(Val::Str(Cow::Owned(out)))
}
