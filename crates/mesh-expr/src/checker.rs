//! The checker: syntax tree to checked program tree, with diagnostics.
//!
//! It resolves function names (case-insensitively, warning when the spelling differs from
//! the canonical one), checks arity, infers a static [`Ty`] for every expression and refuses
//! operands that can never fit, validates constant arguments, and folds every sub-tree that
//! reads neither an attribute nor `Now()` into a constant, reporting one that always fails.
//! After an error it carries on with an "any value" type so that one mistake yields one
//! diagnostic, not a cascade.

use std::collections::BTreeSet;

use chrono::DateTime;
use mesh_model::{AttributeName, Attributes, Value};

use crate::ast::{CmpOp, Expr, ExprKind};
use crate::compare::{may_equal, may_order};
use crate::diagnostic::{Code, Diagnostic};
use crate::eval::{EvalContext, run};
use crate::functions::{self, Arity, Function};
use crate::node::{Node, NodeKind};
use crate::schema::Schema;
use crate::span::Span;
use crate::suggest::did_you_mean;
use crate::types::Ty;

pub(crate) struct Checked {
    pub(crate) root: Node,
    pub(crate) ty: Ty,
    pub(crate) attributes: BTreeSet<AttributeName>,
    pub(crate) reads_now: bool,
}

pub(crate) fn check(
    expr: &Expr,
    schema: Option<&Schema>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Checked {
    let empty = Attributes::new();
    // Constant folding never evaluates `Now()`, so this time is never observed.
    let fold_context = EvalContext::new(DateTime::UNIX_EPOCH);
    let mut checker = Checker {
        schema,
        diagnostics,
        attributes: BTreeSet::new(),
        reads_now: false,
        empty: &empty,
        fold_context: &fold_context,
    };
    let (root, ty) = checker.expr(expr);
    Checked {
        root,
        ty,
        attributes: checker.attributes,
        reads_now: checker.reads_now,
    }
}

struct Checker<'c> {
    schema: Option<&'c Schema>,
    diagnostics: &'c mut Vec<Diagnostic>,
    attributes: BTreeSet<AttributeName>,
    reads_now: bool,
    empty: &'c Attributes,
    fold_context: &'c EvalContext,
}

impl Checker<'_> {
    fn errors(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn expr(&mut self, expr: &Expr) -> (Node, Ty) {
        let span = expr.span;
        let errors_before = self.errors();
        let (kind, ty) = match &expr.kind {
            ExprKind::Literal(value) => {
                let ty = Ty::of(value.kind());
                return (node(NodeKind::Const(value.clone()), span), ty);
            }
            ExprKind::Attribute(name) => {
                let ty = self.attribute(name, span);
                return (node(NodeKind::Attr(name.clone()), span), ty);
            }
            ExprKind::List(items) => {
                let items: Vec<Node> = items.iter().map(|item| self.expr(item).0).collect();
                (NodeKind::List(items), Ty::LIST)
            }
            ExprKind::Not(operand) => {
                let operand = self.condition("`not`", operand);
                (NodeKind::Not(Box::new(operand)), Ty::BOOL)
            }
            ExprKind::And(operands) => {
                let operands = operands
                    .iter()
                    .map(|o| self.condition("`and`", o))
                    .collect();
                (NodeKind::And(operands), Ty::BOOL)
            }
            ExprKind::Or(operands) => {
                let operands = operands.iter().map(|o| self.condition("`or`", o)).collect();
                (NodeKind::Or(operands), Ty::BOOL)
            }
            ExprKind::Compare {
                op,
                op_span,
                lhs,
                rhs,
            } => {
                let (lhs, lhs_ty) = self.expr(lhs);
                let (rhs, rhs_ty) = self.expr(rhs);
                self.comparison(*op, *op_span, lhs_ty, rhs_ty, span);
                let kind = NodeKind::Compare {
                    op: *op,
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                };
                (kind, Ty::BOOL)
            }
            ExprKind::In { op_span, lhs, rhs } => {
                let (lhs, _) = self.expr(lhs);
                let (rhs, rhs_ty) = self.expr(rhs);
                if rhs_ty.never_fits(Ty::LIST.or(Ty::NULL)) {
                    self.report(
                        Diagnostic::new(
                            Code::OperandType,
                            rhs.span,
                            format!(
                                "`in` expects a list on its right, found {}",
                                rhs_ty.describe()
                            ),
                        )
                        .with_suggestion("write the candidates as a list: `x in [\"a\", \"b\"]`"),
                    );
                }
                let _ = op_span;
                let kind = NodeKind::In {
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                };
                (kind, Ty::BOOL)
            }
            ExprKind::Call {
                name,
                name_span,
                args,
            } => match self.call(name, *name_span, args, span) {
                Some((kind, ty)) => (kind, ty),
                None => return (node(NodeKind::Const(Value::Null), span), Ty::ANY),
            },
        };
        let node = node(kind, span);
        if self.errors() > errors_before {
            return (node, ty);
        }
        self.fold(node, ty)
    }

    /// Checks an operand used as a condition: boolean, or null (false).
    fn condition(&mut self, what: &str, expr: &Expr) -> Node {
        let (node, ty) = self.expr(expr);
        if ty.never_fits(Ty::BOOL.or(Ty::NULL)) {
            let mut diagnostic = Diagnostic::new(
                Code::OperandType,
                node.span,
                format!("{what} expects a boolean, found {}", ty.describe()),
            );
            if ty.meets(Ty::STRING) {
                diagnostic = diagnostic
                    .with_suggestion("compare it to get a boolean, e.g. `department == \"IT\"`");
            }
            self.report(diagnostic);
        }
        node
    }

    fn attribute(&mut self, name: &AttributeName, span: Span) -> Ty {
        self.attributes.insert(name.clone());
        let Some(schema) = self.schema else {
            return Ty::ANY;
        };
        match schema.get(name) {
            Some(Some(kind)) => Ty::of(kind).or(Ty::NULL),
            Some(None) => Ty::ANY,
            None => {
                let mut diagnostic = Diagnostic::new(
                    Code::UnknownAttribute,
                    span,
                    format!("attribute `{name}` is not in the schema; it will always be null"),
                );
                let known = schema.iter().map(|(n, _)| n.as_str());
                if let Some(close) = did_you_mean(name.as_str(), known) {
                    diagnostic = diagnostic.with_suggestion(format!("did you mean `{close}`?"));
                }
                self.report(diagnostic);
                Ty::ANY
            }
        }
    }

    fn comparison(&mut self, op: CmpOp, op_span: Span, lhs: Ty, rhs: Ty, span: Span) {
        match op {
            CmpOp::Eq | CmpOp::Ne => {
                if !may_equal(lhs, rhs) {
                    let always = if op == CmpOp::Eq { "false" } else { "true" };
                    let present = |ty: Ty| match ty.without(Ty::NULL) {
                        p if p.meets(Ty::ANY) => p.describe(),
                        _ => "null".to_owned(),
                    };
                    self.report(
                        Diagnostic::new(
                            Code::MixedTypeComparison,
                            span,
                            format!(
                                "{} and {} values are never equal, so `{}` is always {always}",
                                present(lhs),
                                present(rhs),
                                op.symbol()
                            ),
                        )
                        .with_suggestion(
                            "compare values of the same type: a number with a number, text \
                             with text",
                        ),
                    );
                }
            }
            _ => {
                if !may_order(lhs, rhs) {
                    self.report(Diagnostic::new(
                        Code::OperandType,
                        op_span,
                        format!(
                            "`{}` cannot order {} and {}: it compares two numbers, two \
                             strings or two timestamps",
                            op.symbol(),
                            lhs.describe(),
                            rhs.describe()
                        ),
                    ));
                }
            }
        }
    }

    fn call(
        &mut self,
        name: &str,
        name_span: Span,
        args: &[Expr],
        span: Span,
    ) -> Option<(NodeKind, Ty)> {
        let Some(function) = functions::lookup(name) else {
            let mut diagnostic = Diagnostic::new(
                Code::UnknownFunction,
                name_span,
                format!("unknown function `{name}`"),
            );
            if let Some(close) = did_you_mean(name, functions::functions().map(Function::name)) {
                diagnostic = diagnostic.with_suggestion(format!("did you mean `{close}`?"));
            }
            self.report(diagnostic);
            // Check the arguments anyway: their own mistakes are worth reporting now.
            for arg in args {
                self.expr(arg);
            }
            return None;
        };
        if function.name != name {
            self.report(
                Diagnostic::new(
                    Code::FunctionNameCase,
                    name_span,
                    format!("function `{name}` is spelled `{}`", function.name),
                )
                .with_suggestion(format!("write `{}`", function.name)),
            );
        }
        if !function.arity.accepts(args.len()) {
            let diagnostic = Diagnostic::new(
                Code::WrongArity,
                span,
                format!(
                    "`{}` takes {}, found {}",
                    function.name,
                    function.arity.describe(),
                    args.len()
                ),
            );
            let hint = match function.arity {
                Arity::Switch if args.len() % 2 == 1 && args.len() >= 3 => {
                    format!("the last argument is the default: `{}`", function.signature)
                }
                _ => format!("write `{}`", function.signature),
            };
            self.report(diagnostic.with_suggestion(hint));
        }
        let mut nodes = Vec::with_capacity(args.len());
        let mut types = Vec::with_capacity(args.len());
        for (index, arg) in args.iter().enumerate() {
            let (node, ty) = self.expr(arg);
            let accepts = function.accepts(index);
            if ty.never_fits(accepts) {
                let param = function
                    .params
                    .get(index)
                    .or(function.params.last())
                    .map_or("argument", |p| p.name);
                let mut diagnostic = Diagnostic::new(
                    Code::ArgumentType,
                    node.span,
                    format!(
                        "`{param}` of `{}` must be {}, found {}",
                        function.name,
                        accepts.describe(),
                        ty.describe()
                    ),
                );
                if accepts.meets(Ty::LIST) && !ty.meets(Ty::LIST) {
                    diagnostic = diagnostic.with_suggestion("wrap the value in a list: `[value]`");
                } else if accepts.meets(Ty::STRING) && ty.meets(Ty::LIST) {
                    diagnostic = diagnostic
                        .with_suggestion("turn a list into text with `Join(list, \", \")`");
                } else if accepts == Ty::INTEGER && ty.meets(Ty::STRING) {
                    diagnostic = diagnostic.with_suggestion("write the number without quotes");
                }
                self.report(diagnostic);
            }
            nodes.push(node);
            types.push(ty);
        }
        if let Some((index, message)) = (function.check)(&nodes, &types) {
            let at = nodes.get(index).map_or(span, |n| n.span);
            self.report(Diagnostic::new(
                Code::InvalidArgument,
                at,
                format!("`{}`: {message}", function.name),
            ));
        }
        if !function.pure {
            self.reads_now = true;
        }
        let ty = (function.result)(&types);
        Some((
            NodeKind::Call {
                function,
                args: nodes,
            },
            ty,
        ))
    }

    /// Evaluates a node whose operands are all constants, once, at compile time.
    fn fold(&mut self, node: Node, ty: Ty) -> (Node, Ty) {
        let foldable = match &node.kind {
            NodeKind::Const(_) | NodeKind::Attr(_) => false,
            NodeKind::List(items) | NodeKind::And(items) | NodeKind::Or(items) => {
                items.iter().all(is_const)
            }
            NodeKind::Not(operand) => is_const(operand),
            NodeKind::Compare { lhs, rhs, .. } | NodeKind::In { lhs, rhs } => {
                is_const(lhs) && is_const(rhs)
            }
            NodeKind::Call { function, args } => function.pure && args.iter().all(is_const),
        };
        if !foldable {
            return (node, ty);
        }
        match run(&node, self.empty, self.fold_context) {
            Ok(value) => {
                let ty = Ty::of(value.kind());
                (
                    Node {
                        kind: NodeKind::Const(value),
                        span: node.span,
                    },
                    ty,
                )
            }
            Err(error) => {
                self.report(Diagnostic::new(
                    Code::InvalidArgument,
                    error.span(),
                    format!("this always fails: {error}"),
                ));
                (node, ty)
            }
        }
    }
}

fn node(kind: NodeKind, span: Span) -> Node {
    Node { kind, span }
}

fn is_const(node: &Node) -> bool {
    matches!(node.kind, NodeKind::Const(_))
}
