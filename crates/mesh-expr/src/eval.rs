//! The evaluator: walks a checked program over one set of attributes.
//!
//! Evaluation is total: every failure is an [`EvalError`] value, never a panic, and every
//! evaluation ends (no loops; recursion bounded by [`crate::limits::MAX_DEPTH`]; work bounded
//! by [`MAX_WORK_BYTES`]). It reads nothing but the attributes and the [`EvalContext`]: the
//! time is the event's, never the wall clock's, so replaying an event gives the same result.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use mesh_model::{Attributes, Value, ValueKind};

use crate::ast::CmpOp;
use crate::compare::{equals, holds, order};
use crate::diagnostic::render_one;
use crate::limits::{MAX_LIST_LEN, MAX_VALUE_BYTES, MAX_WORK_BYTES};
use crate::node::{Node, NodeKind};
use crate::span::Span;
use crate::value::{Val, value_size};

/// What a program may know besides the attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EvalContext {
    /// The time `Now()` returns: the time of the event being processed.
    pub now: DateTime<Utc>,
}

impl EvalContext {
    /// Returns a context whose `Now()` is `now`.
    pub const fn new(now: DateTime<Utc>) -> Self {
        Self { now }
    }
}

/// Why an evaluation failed. The pipeline skips the contribution and audits the error; it
/// never stops a stage.
///
/// Each variant has a stable code (`R001`, …; see [`EvalError::code`]) that, like the compile
/// codes, is never reused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// R001: a value of the wrong type reached a function or an operator.
    #[error("{what} expects {expected}, found {found}")]
    TypeMismatch {
        /// The function or operator, e.g. `Left` or `` `<` ``.
        what: &'static str,
        /// What it accepts, in words.
        expected: &'static str,
        /// The type it was given.
        found: ValueKind,
        /// The offending argument or operand.
        span: Span,
    },
    /// R002: a value of the right type that the function cannot use (a negative count, an
    /// invalid pattern, text that is not a number).
    #[error("{what}: {reason}")]
    InvalidArgument {
        /// The function.
        what: &'static str,
        /// What is wrong with the value.
        reason: String,
        /// The offending argument.
        span: Span,
    },
    /// R003: a built string or list would exceed [`MAX_VALUE_BYTES`].
    #[error("{what} would build a value of at least {size} bytes; the maximum is {max}")]
    ValueTooLarge {
        /// The function or list that builds the value.
        what: &'static str,
        /// The size reached when building stopped.
        size: usize,
        /// The maximum.
        max: usize,
        /// The expression that builds it.
        span: Span,
    },
    /// R004: a built list would exceed [`MAX_LIST_LEN`] elements.
    #[error("{what} would build a list of more than {max} elements")]
    ListTooLong {
        /// The function or list that builds the list.
        what: &'static str,
        /// The maximum.
        max: usize,
        /// The expression that builds it.
        span: Span,
    },
    /// R005: the evaluation read and wrote more than [`MAX_WORK_BYTES`] in total.
    #[error("the evaluation exceeded its work budget of {max} bytes")]
    WorkBudgetExceeded {
        /// The budget.
        max: usize,
        /// The expression that exhausted it.
        span: Span,
    },
}

impl EvalError {
    /// Every runtime error code with its description, for docs and tools.
    pub const CODES: &'static [(&'static str, &'static str)] = &[
        (
            "R001",
            "a value of the wrong type reached a function or an operator",
        ),
        (
            "R002",
            "a value the function cannot use (negative count, invalid pattern, …)",
        ),
        (
            "R003",
            "a built string or list would exceed the maximum value size",
        ),
        ("R004", "a built list would exceed the maximum list length"),
        ("R005", "the evaluation exceeded its work budget"),
    ];

    /// Returns the stable code: `R001` to `R005`.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::TypeMismatch { .. } => "R001",
            Self::InvalidArgument { .. } => "R002",
            Self::ValueTooLarge { .. } => "R003",
            Self::ListTooLong { .. } => "R004",
            Self::WorkBudgetExceeded { .. } => "R005",
        }
    }

    /// Returns the span of the expression that failed.
    pub const fn span(&self) -> Span {
        match self {
            Self::TypeMismatch { span, .. }
            | Self::InvalidArgument { span, .. }
            | Self::ValueTooLarge { span, .. }
            | Self::ListTooLong { span, .. }
            | Self::WorkBudgetExceeded { span, .. } => *span,
        }
    }

    /// Renders the error like a compile diagnostic, with the source line and a caret under
    /// the expression that failed.
    pub fn render(&self, source: &str, origin: &str) -> String {
        let mut out = String::new();
        render_one(
            &mut out,
            "error",
            self.code(),
            &self.to_string(),
            self.span(),
            None,
            source,
            origin,
        );
        out
    }
}

/// The state of one evaluation. Functions receive it to evaluate their arguments lazily.
#[derive(Debug)]
pub(crate) struct Eval<'a> {
    attributes: &'a Attributes,
    pub(crate) context: &'a EvalContext,
    work: usize,
}

pub(crate) type EvalResult<'a> = Result<Val<'a>, EvalError>;

impl<'a> Eval<'a> {
    pub(crate) fn new(attributes: &'a Attributes, context: &'a EvalContext) -> Self {
        Self {
            attributes,
            context,
            work: 0,
        }
    }

    pub(crate) fn eval(&mut self, node: &'a Node) -> EvalResult<'a> {
        match &node.kind {
            NodeKind::Const(value) => Ok(Val::borrowed(value)),
            NodeKind::Attr(name) => Ok(self.attributes.get(name).map_or(Val::Null, Val::borrowed)),
            NodeKind::Call { function, args } => (function.eval)(self, args, node.span),
            NodeKind::List(items) => self.list(items, node.span),
            NodeKind::Not(operand) => Ok(Val::Bool(!self.condition("`not`", operand)?)),
            NodeKind::And(operands) => {
                for operand in operands {
                    if !self.condition("`and`", operand)? {
                        return Ok(Val::Bool(false));
                    }
                }
                Ok(Val::Bool(true))
            }
            NodeKind::Or(operands) => {
                for operand in operands {
                    if self.condition("`or`", operand)? {
                        return Ok(Val::Bool(true));
                    }
                }
                Ok(Val::Bool(false))
            }
            NodeKind::Compare { op, lhs, rhs } => self.compare(*op, lhs, rhs),
            NodeKind::In { lhs, rhs } => {
                let needle = self.eval(lhs)?;
                let haystack = self.eval(rhs)?;
                match &haystack {
                    Val::Null => Ok(Val::Bool(false)),
                    Val::List(items) => {
                        self.charge(items.len(), node.span)?;
                        let needle = needle.view();
                        Ok(Val::Bool(
                            items
                                .iter()
                                .any(|item| equals(needle, crate::value::View::of(item))),
                        ))
                    }
                    other => Err(EvalError::TypeMismatch {
                        what: "`in`",
                        expected: "a list on its right",
                        found: other.kind(),
                        span: rhs.span,
                    }),
                }
            }
        }
    }

    /// Evaluates a boolean operand: `null` counts as false, anything but a boolean fails.
    pub(crate) fn condition(
        &mut self,
        what: &'static str,
        node: &'a Node,
    ) -> Result<bool, EvalError> {
        match self.eval(node)? {
            Val::Bool(b) => Ok(b),
            Val::Null => Ok(false),
            other => Err(EvalError::TypeMismatch {
                what,
                expected: "a boolean",
                found: other.kind(),
                span: node.span,
            }),
        }
    }

    fn compare(&mut self, op: CmpOp, lhs: &'a Node, rhs: &'a Node) -> EvalResult<'a> {
        let a = self.eval(lhs)?;
        let b = self.eval(rhs)?;
        let result = match op {
            CmpOp::Eq => equals(a.view(), b.view()),
            CmpOp::Ne => !equals(a.view(), b.view()),
            _ => match order(a.view(), b.view()) {
                Ok(ordered) => holds(op, ordered),
                Err(()) => {
                    // Blame the side whose type is the odd one out: the right side when the
                    // left is orderable at all, else the left.
                    let left_orderable = matches!(
                        a.kind(),
                        ValueKind::Integer
                            | ValueKind::Decimal
                            | ValueKind::String
                            | ValueKind::Timestamp
                    );
                    let (found, span) = if left_orderable {
                        (b.kind(), rhs.span)
                    } else {
                        (a.kind(), lhs.span)
                    };
                    return Err(EvalError::TypeMismatch {
                        what: op_name(op),
                        expected: "two numbers, two strings or two timestamps",
                        found,
                        span,
                    });
                }
            },
        };
        Ok(Val::Bool(result))
    }

    fn list(&mut self, items: &'a [Node], span: Span) -> EvalResult<'a> {
        if items.len() > MAX_LIST_LEN {
            return Err(EvalError::ListTooLong {
                what: "a list literal",
                max: MAX_LIST_LEN,
                span,
            });
        }
        let mut out = Vec::with_capacity(items.len());
        let mut size = 0usize;
        for item in items {
            let value = self.eval(item)?.into_value();
            size = size.saturating_add(value_size(&value)).saturating_add(16);
            self.check_size("a list literal", size, span)?;
            out.push(value);
        }
        self.charge(size, span)?;
        Ok(Val::List(Cow::Owned(out)))
    }

    /// Counts `bytes` of work against the evaluation's budget.
    pub(crate) fn charge(&mut self, bytes: usize, span: Span) -> Result<(), EvalError> {
        self.work = self.work.saturating_add(bytes);
        if self.work > MAX_WORK_BYTES {
            return Err(EvalError::WorkBudgetExceeded {
                max: MAX_WORK_BYTES,
                span,
            });
        }
        Ok(())
    }

    /// Fails when a value being built has reached `size` bytes, over the cap.
    pub(crate) fn check_size(
        &self,
        what: &'static str,
        size: usize,
        span: Span,
    ) -> Result<(), EvalError> {
        if size > MAX_VALUE_BYTES {
            return Err(EvalError::ValueTooLarge {
                what,
                size,
                max: MAX_VALUE_BYTES,
                span,
            });
        }
        Ok(())
    }

    /// Evaluates a text argument: `Ok(None)` for null, an error for anything but a string.
    pub(crate) fn text(
        &mut self,
        what: &'static str,
        node: &'a Node,
    ) -> Result<Option<Cow<'a, str>>, EvalError> {
        match self.eval(node)? {
            Val::Str(s) => Ok(Some(s)),
            Val::Null => Ok(None),
            other => Err(EvalError::TypeMismatch {
                what,
                expected: "a string",
                found: other.kind(),
                span: node.span,
            }),
        }
    }

    /// Evaluates a text argument that may not be null.
    pub(crate) fn required_text(
        &mut self,
        what: &'static str,
        node: &'a Node,
    ) -> Result<Cow<'a, str>, EvalError> {
        match self.eval(node)? {
            Val::Str(s) => Ok(s),
            other => Err(EvalError::TypeMismatch {
                what,
                expected: "a string",
                found: other.kind(),
                span: node.span,
            }),
        }
    }

    /// Evaluates a count argument: a non-negative integer.
    pub(crate) fn count(&mut self, what: &'static str, node: &'a Node) -> Result<usize, EvalError> {
        match self.eval(node)? {
            Val::Integer(i) => usize::try_from(i).map_err(|_| EvalError::InvalidArgument {
                what,
                reason: format!("expected a count of 0 or more, found {i}"),
                span: node.span,
            }),
            other => Err(EvalError::TypeMismatch {
                what,
                expected: "an integer",
                found: other.kind(),
                span: node.span,
            }),
        }
    }
}

pub(crate) const fn op_name(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "`==`",
        CmpOp::Ne => "`!=`",
        CmpOp::Lt => "`<`",
        CmpOp::Le => "`<=`",
        CmpOp::Gt => "`>`",
        CmpOp::Ge => "`>=`",
    }
}

/// Evaluates `root` as a filter: a boolean as it is, null as false, and the kind of any other
/// result as the error.
pub(crate) fn run_filter(
    root: &Node,
    attributes: &Attributes,
    context: &EvalContext,
) -> Result<Result<bool, ValueKind>, EvalError> {
    if let Some(holds) = text_comparison(root, attributes) {
        return Ok(Ok(holds));
    }
    let mut eval = Eval::new(attributes, context);
    Ok(match eval.eval(root)? {
        Val::Bool(b) => Ok(b),
        Val::Null => Ok(false),
        other => Err(other.kind()),
    })
}

/// The commonest filter, an attribute compared with a text by `==` or `!=` (`status ==
/// "Terminated"`, `department != "Contractors"`), decided without an evaluator when the
/// attribute holds text: two texts are equal exactly when they are the same text (see
/// [`equals`]). `None` for any other filter or value, which the evaluator decides.
fn text_comparison(root: &Node, attributes: &Attributes) -> Option<bool> {
    let NodeKind::Compare { op, lhs, rhs } = &root.kind else {
        return None;
    };
    let equal = match (&lhs.kind, &rhs.kind) {
        (NodeKind::Attr(name), NodeKind::Const(Value::String(text)))
        | (NodeKind::Const(Value::String(text)), NodeKind::Attr(name)) => {
            match attributes.get(name)? {
                Value::String(value) => value.as_str() == text.as_str(),
                _ => return None,
            }
        }
        _ => return None,
    };
    match op {
        CmpOp::Eq => Some(equal),
        CmpOp::Ne => Some(!equal),
        _ => None,
    }
}

/// Evaluates `root` to an owned value.
pub(crate) fn run(
    root: &Node,
    attributes: &Attributes,
    context: &EvalContext,
) -> Result<Value, EvalError> {
    let mut eval = Eval::new(attributes, context);
    eval.eval(root).map(Val::into_value)
}

#[cfg(test)]
mod tests {
    use mesh_model::{AttributeName, Attributes, Value};

    use super::{Eval, EvalContext, Val, text_comparison};
    use crate::program::compile_filter;

    /// The shortcut for `attribute == "text"` decides exactly as the evaluator does, or
    /// leaves the filter to it.
    #[test]
    fn text_comparisons_decide_as_the_evaluator() {
        let values = [
            Value::from("Terminated"),
            Value::from("terminated"),
            Value::from("Terminated "),
            Value::from(""),
            Value::from("1"),
            Value::from("2026-01-01T00:00:00Z"),
            Value::Integer(1),
            Value::Bool(true),
            Value::Null,
            Value::List(vec![Value::from("Terminated")]),
        ];
        let filters = [
            r#"status == "Terminated""#,
            r#"status != "Terminated""#,
            r#""Terminated" == status"#,
            r#"status == "1""#,
            r#"status != "2026-01-01T00:00:00Z""#,
            r#"status == """#,
        ];
        let context = EvalContext::new(chrono::DateTime::UNIX_EPOCH);
        let mut decided = 0;
        for filter in filters {
            let program = compile_filter(filter, None).unwrap();
            for value in values.iter().cloned().map(Some).chain([None]) {
                let mut attributes = Attributes::new();
                if let Some(value) = value.clone() {
                    attributes.insert(AttributeName::parse("status").unwrap(), value);
                }
                let evaluated = match Eval::new(&attributes, &context).eval(program.root()) {
                    Ok(Val::Bool(holds)) => holds,
                    other => panic!("{filter} on {value:?}: {other:?}"),
                };
                if let Some(holds) = text_comparison(program.root(), &attributes) {
                    assert_eq!(holds, evaluated, "{filter} on {value:?}");
                    decided += 1;
                }
                assert_eq!(
                    program.eval_filter(&attributes, &context),
                    Ok(evaluated),
                    "{filter} on {value:?}"
                );
            }
        }
        // Every filter over each of the six texts.
        assert_eq!(decided, filters.len() * 6);
    }
}
