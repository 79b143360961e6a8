//! TransformScript: the safe transform and filter language of Identity Mesh.
//!
//! Flow and MeshComposer rules compute attribute values with it
//! (`ToLower(Concat(Left(FirstName, 1), LastName))`), projection rules filter with it
//! (`department != "Contractors"`), risk policies decide with it. Authors are users, so a
//! script must never crash, hang or leak anything, and a bad one is refused with a precise,
//! helpful message before it ever runs.
//!
//! Pipeline, after VRL: lexer → parser (recursive descent, depth-capped) → checker
//! (names, arity, static types, constant folding) → [`Program`] → [`Program::eval`]. A
//! program is compiled once when a rule is loaded and evaluated for every event, on any
//! thread.
//!
//! Invariants:
//! - **Total**: once a program compiles, evaluation returns a value or an [`EvalError`] for
//!   every input, never panics, and always ends. Bounds are in [`limits`].
//! - **Pure**: no I/O, no clock, no randomness. `Now()` is [`EvalContext::now`], the time of
//!   the event being processed, so replaying history gives the same result.
//! - **Stable codes**: every [`Diagnostic`] has a [`Code`] (`E…`/`W…`) and every
//!   [`EvalError`] a code (`R…`); a code is never reused.
//!
//! The language reference, generated in part from this crate, is docs/transform-script.md.
//! This crate sits between `mesh-model` (values, attribute names) and `mesh-engine` (rules).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod ast;
mod checker;
mod compare;
mod diagnostic;
pub mod docs;
mod eval;
mod functions;
mod lexer;
pub mod limits;
mod node;
mod parser;
mod program;
mod schema;
mod span;
mod suggest;
mod types;
mod value;

pub use diagnostic::{Code, Diagnostic, Diagnostics, Severity};
pub use eval::{EvalContext, EvalError};
pub use functions::{Arity, EXAMPLE_NOW, Example, Function, Param, functions};
pub use program::{Program, compile, compile_filter};
pub use schema::Schema;
pub use span::Span;
pub use value::to_literal;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Program>();
        assert_send_sync::<Diagnostics>();
        assert_send_sync::<EvalError>();
    }
}
