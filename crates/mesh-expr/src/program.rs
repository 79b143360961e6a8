//! Compiled programs: parse and check once, evaluate many times.

use std::sync::Arc;

use mesh_model::{AttributeName, Attributes, Value, ValueKind};

use crate::checker;
use crate::diagnostic::{Code, Diagnostic, Diagnostics};
use crate::eval::{EvalContext, EvalError, run, run_filter};
use crate::node::Node;
use crate::parser::parse;
use crate::schema::Schema;
use crate::span::Span;
use crate::types::Ty;

/// A checked TransformScript program, ready to evaluate.
///
/// Cheap to clone (one reference count) and `Send + Sync`: load a rule once, share its
/// program across every worker. Immutable: evaluation keeps its state on the stack.
#[derive(Debug, Clone)]
pub struct Program {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    source: Box<str>,
    root: Node,
    ty: Ty,
    warnings: Diagnostics,
    /// In name order, without repeats: a slice iterates more cheaply than the checker's set,
    /// and resolution asks for it on every update of a mesh object.
    attributes: Box<[AttributeName]>,
    reads_now: bool,
}

/// Parses and checks `source`.
///
/// With a `schema`, unknown attributes are warned about (W001) and declared types sharpen the
/// type checks. On success the program carries the warnings ([`Program::warnings`]); on
/// failure the [`Diagnostics`] hold every error found, and the warnings found before them.
pub fn compile(source: &str, schema: Option<&Schema>) -> Result<Program, Diagnostics> {
    compile_as(source, schema, false)
}

/// Compiles a filter: like [`compile`], and also refuses (E025) a program whose result can
/// never be a boolean, such as `department`. Evaluate it with [`Program::eval_filter`].
pub fn compile_filter(source: &str, schema: Option<&Schema>) -> Result<Program, Diagnostics> {
    compile_as(source, schema, true)
}

fn compile_as(source: &str, schema: Option<&Schema>, filter: bool) -> Result<Program, Diagnostics> {
    let expr = parse(source).map_err(|d| Diagnostics::from_vec(vec![d]))?;
    let mut diagnostics = Vec::new();
    let checked = checker::check(&expr, schema, &mut diagnostics);
    if filter && checked.ty.never_fits(Ty::BOOL.or(Ty::NULL)) {
        diagnostics.push(
            Diagnostic::new(
                Code::NotACondition,
                checked.root.span,
                format!(
                    "a filter must give a boolean, but this gives {}",
                    checked.ty.describe()
                ),
            )
            .with_suggestion("compare the value, e.g. `department == \"Sales\"`"),
        );
    }
    let diagnostics = Diagnostics::from_vec(diagnostics);
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    Ok(Program {
        inner: Arc::new(Inner {
            source: source.into(),
            root: checked.root,
            ty: checked.ty,
            warnings: diagnostics,
            attributes: checked.attributes.into_iter().collect(),
            reads_now: checked.reads_now,
        }),
    })
}

impl Program {
    /// Evaluates the program over `attributes`. Attribute names are looked up
    /// case-insensitively; an absent attribute is null.
    pub fn eval(&self, attributes: &Attributes, context: &EvalContext) -> Result<Value, EvalError> {
        run(&self.inner.root, attributes, context)
    }

    /// Evaluates the program as a filter: null counts as false; any other non-boolean result
    /// is an [`EvalError::TypeMismatch`].
    pub fn eval_filter(
        &self,
        attributes: &Attributes,
        context: &EvalContext,
    ) -> Result<bool, EvalError> {
        // Decided on the working value: a boolean needs no owned value built and dropped.
        match run_filter(&self.inner.root, attributes, context)? {
            Ok(holds) => Ok(holds),
            Err(found) => Err(EvalError::TypeMismatch {
                what: "a filter",
                expected: "a boolean",
                found,
                span: self.inner.root.span,
            }),
        }
    }

    /// Returns the compiled expression, for the evaluator's own tests.
    #[cfg(test)]
    pub(crate) fn root(&self) -> &Node {
        &self.inner.root
    }

    /// Returns the source the program was compiled from.
    pub fn source(&self) -> &str {
        &self.inner.source
    }

    /// Returns the warnings found while compiling; empty for a clean program.
    pub fn warnings(&self) -> &Diagnostics {
        &self.inner.warnings
    }

    /// Returns the attributes the program may read, in name order: what a MeshComposer rule
    /// depends on, and what `meshctl` asks for.
    pub fn attributes(&self) -> impl Iterator<Item = &AttributeName> {
        self.inner.attributes.iter()
    }

    /// Returns true when the program calls `Now()`, so that its result depends on the time
    /// of the event as well as on the attributes.
    pub fn reads_now(&self) -> bool {
        self.inner.reads_now
    }

    /// Returns the types the result may have, as far as the checker can tell.
    pub fn result_kinds(&self) -> impl Iterator<Item = ValueKind> {
        self.inner.ty.kinds()
    }

    /// Returns the span of the whole program.
    pub fn span(&self) -> Span {
        self.inner.root.span
    }
}
