//! `Coalesce(value, ...)`: the first value that is not null.

use super::{Example, Function, Param, no_check};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Coalesce",
    signature: "Coalesce(value, ...)",
    summary: "Returns the first argument that is not null.",
    params: &[Param {
        name: "value",
        accepts: Ty::ANY,
        doc: "one or more values of any type",
    }],
    arity: super::Arity::AtLeast(1),
    returns: "the type of the argument chosen; null when every argument is null",
    contract: "Arguments are evaluated left to right and evaluation stops at the first that \
               is not null, so a later argument that would fail is never evaluated. The empty \
               string and the empty list are not null: `Coalesce(\"\", \"x\")` is `\"\"`.",
    examples: EXAMPLES,
    pure: true,
    result: |args| {
        let mut ty = Ty::NEVER;
        for arg in args {
            ty = ty.or(arg.without(Ty::NULL));
            if !arg.may_be_null() {
                return ty;
            }
        }
        ty.or(Ty::NULL)
    },
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: "Coalesce(preferredName, givenName)",
        attributes: &[("givenName", r#""Robert""#)],
        result: Ok(r#""Robert""#),
    },
    Example {
        source: r#"Coalesce(mail, userPrincipalName, "unknown")"#,
        attributes: &[("userPrincipalName", r#""bob@example.com""#)],
        result: Ok(r#""bob@example.com""#),
    },
    Example {
        source: r#"Coalesce("", "x")"#,
        attributes: &[],
        result: Ok(r#""""#),
    },
    Example {
        source: "Coalesce(nickname, ToLower(employeeNumber))",
        attributes: &[("nickname", r#""Bob""#), ("employeeNumber", "7")],
        result: Ok(r#""Bob""#),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], _span: Span) -> EvalResult<'a> {
    for arg in args {
        let value = ev.eval(arg)?;
        if !value.is_null() {
            return Ok(value);
        }
    }
    Ok(Val::Null)
}
