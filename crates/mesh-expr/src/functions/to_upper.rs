//! `ToUpper(text)`: uppercase text.

use super::{Case, Example, Function, Param, change_case, no_check, text_result};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;

pub(crate) static FUNCTION: Function = Function {
    name: "ToUpper",
    signature: "ToUpper(text)",
    summary: "Returns the text in uppercase.",
    params: &[Param {
        name: "text",
        accepts: Ty::STRING.or(Ty::NULL),
        doc: "the text to convert",
    }],
    arity: super::Arity::Exact(1),
    returns: "string; null when `text` is null",
    contract: "Uses Unicode's default case mapping, the same in every locale. A character may \
               become several (`ß` becomes `SS`). Null gives null; any other type than string \
               is an error (R001). Idempotent: `ToUpper(ToUpper(x)) == ToUpper(x)`.",
    examples: EXAMPLES,
    pure: true,
    result: text_result,
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"ToUpper("gb-london")"#,
        attributes: &[],
        result: Ok(r#""GB-LONDON""#),
    },
    Example {
        source: "ToUpper(street)",
        attributes: &[("street", r#""Hauptstraße 5""#)],
        result: Ok(r#""HAUPTSTRASSE 5""#),
    },
    Example {
        source: "ToUpper(null)",
        attributes: &[],
        result: Ok("null"),
    },
    Example {
        source: "ToUpper(tags)",
        attributes: &[("tags", r#"["a", "b"]"#)],
        result: Err("R001"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    change_case(ev, args, span, "ToUpper", Case::Upper)
}
