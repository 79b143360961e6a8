//! `If(condition, then, else)`: choose between two values.

use super::{Example, Function, Param, arguments, no_check};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;

pub(crate) static FUNCTION: Function = Function {
    name: "If",
    signature: "If(condition, then, else)",
    summary: "Returns `then` when the condition is true, else `else`.",
    params: &[
        Param {
            name: "condition",
            accepts: Ty::BOOL.or(Ty::NULL),
            doc: "a boolean; null counts as false",
        },
        Param {
            name: "then",
            accepts: Ty::ANY,
            doc: "the result when the condition is true",
        },
        Param {
            name: "else",
            accepts: Ty::ANY,
            doc: "the result otherwise",
        },
    ],
    arity: super::Arity::Exact(3),
    returns: "the type of the branch taken",
    contract: "Only the branch taken is evaluated, so the other may fail without harm. A null \
               condition (an absent attribute) counts as false, as everywhere in boolean \
               context. A condition that is neither boolean nor null is an error (R001; E022 \
               when it can never be one).",
    examples: EXAMPLES,
    pure: true,
    result: |args| {
        let branch = |i: usize| args.get(i).copied().unwrap_or(Ty::ANY);
        branch(1).or(branch(2))
    },
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"If(department == "Contractors", "ext", "staff")"#,
        attributes: &[("department", r#""Contractors""#)],
        result: Ok(r#""ext""#),
    },
    Example {
        source: r#"If(isManager, "M", "")"#,
        attributes: &[],
        result: Ok(r#""""#),
    },
    Example {
        source: "If(false, Left(givenName, 1), sn)",
        attributes: &[("givenName", "42"), ("sn", r#""Smith""#)],
        result: Ok(r#""Smith""#),
    },
    Example {
        source: r#"If(givenName, "yes", "no")"#,
        attributes: &[("givenName", r#""Jane""#)],
        result: Err("R001"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [condition, then, otherwise] = arguments::<3>("If", args, span)?;
    if ev.condition("If", condition)? {
        ev.eval(then)
    } else {
        ev.eval(otherwise)
    }
}
