//! The bounds every program lives within.
//!
//! A rule author's script is untrusted input: these caps make sure that no script and no
//! attribute set can exhaust the stack, the memory or the CPU of a pipeline stage. They are
//! enforced by the lexer and parser (source length, nesting depth, list literal length) and by
//! the evaluator (size of every value a program builds, total work per evaluation). Each is
//! documented in docs/transform-script.md under "Bounds".

/// The longest source accepted, in bytes.
pub const MAX_SOURCE_LEN: usize = 16 * 1024;

/// The deepest nesting of parentheses, calls, lists and prefix operators.
///
/// The parser, the checker and the evaluator all recurse along the nesting, so this cap is
/// also the cap on their stack use. `and`/`or` chains are flattened, so `a or b or c ...` does
/// not count towards it.
pub const MAX_DEPTH: usize = 64;

/// The most elements a list may have, whether written as a literal or built at run time (by
/// `Split` or a list literal).
pub const MAX_LIST_LEN: usize = 10_000;

/// The largest value a program may build, in bytes: a string's UTF-8 length, or for a list the
/// sum of its elements plus 16 bytes per element. Values passed through unchanged from the
/// attributes are not counted: the program did not build them.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// The most bytes one evaluation may read and write in total, across every function call.
///
/// Programs have no loops, so each node runs at most once; this budget still stops a long
/// script from doing megabytes of work per node over large attributes.
pub const MAX_WORK_BYTES: usize = 16 * 1024 * 1024;
