//! `Now()`: the time of the event being processed.

use super::{Example, Function, arguments, no_check};
use crate::eval::{Eval, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

pub(crate) static FUNCTION: Function = Function {
    name: "Now",
    signature: "Now()",
    summary: "Returns the time of the event being processed.",
    params: &[],
    arity: super::Arity::Exact(0),
    returns: "timestamp (UTC)",
    contract: "The time comes from the evaluation context: the event's time, never the clock \
               of the machine. Replaying an event therefore gives the same result, and all \
               calls in one evaluation return the same instant. `meshctl expr eval` uses \
               `--now`, or the current time when it is not given.",
    examples: EXAMPLES,
    pure: false,
    result: |_| Ty::TIMESTAMP,
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: "Now()",
        attributes: &[],
        result: Ok("2026-03-14T09:26:53Z"),
    },
    Example {
        source: r#"Format(Now(), "%Y-%m-%d")"#,
        attributes: &[],
        result: Ok(r#""2026-03-14""#),
    },
    Example {
        source: "accountExpires < Now()",
        attributes: &[("accountExpires", "2025-12-31T23:59:59Z")],
        result: Ok("true"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let [] = arguments::<0>("Now", args, span)?;
    Ok(Val::Timestamp(ev.context.now))
}
