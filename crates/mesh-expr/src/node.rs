//! The checked program tree that the evaluator walks.
//!
//! Unlike the syntax tree, function calls here are resolved to their [`Function`], attribute
//! names are folded once (so a lookup allocates nothing), and every sub-tree that does not read
//! an attribute or the clock has been evaluated at compile time into a [`NodeKind::Const`]:
//! `department in ["IT", "HR"]` builds its list once, not on every evaluation.

use mesh_model::{AttributeName, Value};

use crate::ast::CmpOp;
use crate::functions::Function;
use crate::span::Span;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) kind: NodeKind,
    pub(crate) span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Const(Value),
    /// An attribute, by name (compared by its fold, see `AttributeName::fold`).
    Attr(AttributeName),
    List(Vec<Node>),
    Not(Box<Node>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Compare {
        op: CmpOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    In {
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Call {
        function: &'static Function,
        args: Vec<Node>,
    },
}

impl Node {
    pub(crate) fn as_const(&self) -> Option<&Value> {
        match &self.kind {
            NodeKind::Const(value) => Some(value),
            _ => None,
        }
    }
}
