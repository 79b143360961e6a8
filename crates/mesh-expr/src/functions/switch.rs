//! `Switch(value, case1, result1, ..., default)`: choose by matching a value.

use super::{Example, Function, Param, no_check};
use crate::compare::equals;
use crate::eval::{Eval, EvalError, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;

pub(crate) static FUNCTION: Function = Function {
    name: "Switch",
    signature: "Switch(value, case1, result1, ..., default)",
    summary: "Returns the result paired with the first case equal to the value, else the \
              default.",
    params: &[
        Param {
            name: "value",
            accepts: Ty::ANY,
            doc: "the value to match",
        },
        Param {
            name: "case",
            accepts: Ty::ANY,
            doc: "a value to compare with `value`, using `==`",
        },
        Param {
            name: "result",
            accepts: Ty::ANY,
            doc: "the result when its case matches",
        },
        Param {
            name: "default",
            accepts: Ty::ANY,
            doc: "the result when no case matches",
        },
    ],
    arity: super::Arity::Switch,
    returns: "the type of the result chosen",
    contract: "Cases are compared with the rules of `==` (so `1` matches `1.0`, strings match \
               case-sensitively, `null` matches a null value) in order; the first match wins. \
               Cases are evaluated one by one until a match, and only the chosen result is \
               evaluated. Takes an even number of arguments, at least four (E021 otherwise).",
    examples: EXAMPLES,
    pure: true,
    result: |args| {
        let mut ty = Ty::NEVER;
        let results = args.iter().skip(2).step_by(2);
        for result in results {
            ty = ty.or(*result);
        }
        ty.or(args.last().copied().unwrap_or(Ty::ANY))
    },
    check: no_check,
    eval,
};

pub(crate) const EXAMPLES: &[Example] = &[
    Example {
        source: r#"Switch(countryCode, "GB", "United Kingdom", "FR", "France", "Other")"#,
        attributes: &[("countryCode", r#""FR""#)],
        result: Ok(r#""France""#),
    },
    Example {
        source: r#"Switch(ToUpper(countryCode), "GB", "United Kingdom", "Other")"#,
        attributes: &[("countryCode", r#""de""#)],
        result: Ok(r#""Other""#),
    },
    Example {
        source: r#"Switch(level, 1, "junior", 2, "senior", null, "unset", "other")"#,
        attributes: &[],
        result: Ok(r#""unset""#),
    },
    Example {
        source: r#"Switch(level, 1, "junior")"#,
        attributes: &[],
        result: Err("E021"),
    },
];

fn eval<'a>(ev: &mut Eval<'a>, args: &'a [Node], span: Span) -> EvalResult<'a> {
    let malformed = || EvalError::InvalidArgument {
        what: "Switch",
        reason: "expected a value, case/result pairs and a default".to_owned(),
        span,
    };
    let (value, rest) = args.split_first().ok_or_else(malformed)?;
    let (default, pairs) = rest.split_last().ok_or_else(malformed)?;
    let value = ev.eval(value)?;
    for pair in pairs.chunks_exact(2) {
        if let [case, result] = pair {
            let case = ev.eval(case)?;
            if equals(value.view(), case.view()) {
                return ev.eval(result);
            }
        }
    }
    ev.eval(default)
}
