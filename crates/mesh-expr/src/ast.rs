//! The syntax tree the parser builds and the checker consumes.
//!
//! The tree is as written: function names are not yet resolved and nothing is typed. `and` and
//! `or` chains are n-ary so that a long filter does not make a deep tree.

use mesh_model::{AttributeName, Value};

use crate::span::Span;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expr {
    pub(crate) kind: ExprKind,
    pub(crate) span: Span,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub(crate) const fn symbol(self) -> &'static str {
        match self {
            Self::Eq => "==",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ExprKind {
    /// `null`, a boolean, a number or a string.
    Literal(Value),
    List(Vec<Expr>),
    Attribute(AttributeName),
    Call {
        name: String,
        name_span: Span,
        args: Vec<Expr>,
    },
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare {
        op: CmpOp,
        op_span: Span,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    In {
        op_span: Span,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}
