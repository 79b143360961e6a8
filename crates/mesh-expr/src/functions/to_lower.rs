//! `ToLower(text)`: lowercase text.

use super::{Case, Example, Function, Param, change_case, no_check, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;

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
    change_case(ev, args, span, "ToLower", Case::Lower)
}
