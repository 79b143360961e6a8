//! The standard library: exactly the whitelisted functions, one module each.
//!
//! Each module defines one [`Function`]: its signature, summary, parameters, contract and
//! examples (the single source of truth for docs/transform-script.md and for the example
//! tests), how the checker types it, and how it evaluates. Functions receive their arguments
//! unevaluated so that `If`, `Switch` and `Coalesce` evaluate only what they need.
//!
//! Conventions every function follows unless its contract says otherwise: a null in the main
//! argument gives null (the attribute is absent, so is the result); text is counted in Unicode
//! scalar values (`char`s) and never split inside one; a value of the wrong type is an
//! [`EvalError::TypeMismatch`], caught at compile time when the type can never fit.

mod coalesce;
mod concat;
mod format;
mod if_;
mod join;
mod left;
mod now;
mod replace;
mod right;
mod split;
mod substring;
mod switch;
mod to_lower;
mod to_upper;
mod trim;

use std::borrow::Cow;
use std::fmt;

use crate::eval::{Eval, EvalError, EvalResult};
use crate::node::Node;
use crate::span::Span;
use crate::types::Ty;
use crate::value::Val;

/// The time every example runs at: what `Now()` returns in the examples.
pub const EXAMPLE_NOW: &str = "2026-03-14T09:26:53Z";

/// Validates constant arguments: returns the index of the offending argument and a message.
pub(crate) type CheckFn = fn(&[Node], &[Ty]) -> Option<(usize, String)>;

/// A built-in function of TransformScript.
pub struct Function {
    pub(crate) name: &'static str,
    pub(crate) signature: &'static str,
    pub(crate) summary: &'static str,
    pub(crate) params: &'static [Param],
    pub(crate) arity: Arity,
    pub(crate) returns: &'static str,
    pub(crate) contract: &'static str,
    pub(crate) examples: &'static [Example],
    /// False only for `Now()`: an impure call is never evaluated at compile time.
    pub(crate) pure: bool,
    /// The static type of the result, given the static types of the arguments.
    pub(crate) result: fn(&[Ty]) -> Ty,
    /// Checks constant arguments the types cannot (a negative count, a malformed pattern);
    /// returns the index of the offending argument and the message.
    pub(crate) check: CheckFn,
    pub(crate) eval: for<'a> fn(&mut Eval<'a>, &'a [Node], Span) -> EvalResult<'a>,
}

impl Function {
    /// Returns the canonical spelling of the name, e.g. `ToLower`.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Returns the signature as documented, e.g. `Left(text, count)`.
    pub fn signature(&self) -> &'static str {
        self.signature
    }

    /// Returns the one-sentence summary.
    pub fn summary(&self) -> &'static str {
        self.summary
    }

    /// Returns the parameters in order; the last repeats for a variadic function.
    pub fn params(&self) -> &'static [Param] {
        self.params
    }

    /// Returns what the function returns, in words.
    pub fn returns(&self) -> &'static str {
        self.returns
    }

    /// Returns the contract: behaviour on null, on wrong types, and every error.
    pub fn contract(&self) -> &'static str {
        self.contract
    }

    /// Returns the examples, which also run as tests.
    pub fn examples(&self) -> &'static [Example] {
        self.examples
    }

    /// Returns how many arguments the function takes.
    pub fn arity(&self) -> Arity {
        self.arity
    }

    /// Returns the type a parameter accepts, in words (`string or null`).
    pub fn param_type(&self, param: &Param) -> String {
        param.accepts.describe()
    }

    /// Returns the static type the checker expects for argument `index`.
    pub(crate) fn accepts(&self, index: usize) -> Ty {
        match self.arity {
            Arity::Switch => Ty::ANY,
            _ => self
                .params
                .get(index)
                .or(self.params.last())
                .map_or(Ty::ANY, |p| p.accepts),
        }
    }
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .finish()
    }
}

/// Functions are singletons; two are equal when they are the same function.
impl PartialEq for Function {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

/// One parameter of a function.
#[derive(Debug)]
pub struct Param {
    /// The name used in the signature and the docs.
    pub name: &'static str,
    pub(crate) accepts: Ty,
    /// What the argument means.
    pub doc: &'static str,
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly this many.
    Exact(usize),
    /// This many or more.
    AtLeast(usize),
    /// `Switch`: a value, one or more case/result pairs, and a default: an even count of at
    /// least four.
    Switch,
}

impl Arity {
    /// Returns whether `n` arguments fit.
    pub fn accepts(self, n: usize) -> bool {
        match self {
            Self::Exact(k) => n == k,
            Self::AtLeast(k) => n >= k,
            Self::Switch => n >= 4 && n.is_multiple_of(2),
        }
    }

    /// Describes the arity for messages: `exactly 2 arguments`.
    pub fn describe(self) -> String {
        let plural = |k: usize| if k == 1 { "" } else { "s" };
        match self {
            Self::Exact(k) => format!("exactly {k} argument{}", plural(k)),
            Self::AtLeast(k) => format!("at least {k} argument{}", plural(k)),
            Self::Switch => {
                "a value, one or more case/result pairs and a default (an even number, at least 4)"
                    .to_owned()
            }
        }
    }
}

/// A documented example: a script, the attributes it runs on, and what it gives. Examples run
/// as tests and are rendered into docs/transform-script.md, at [`EXAMPLE_NOW`].
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// The script.
    pub source: &'static str,
    /// Attribute names and values; values are written as TransformScript literals, or as RFC
    /// 3339 text for a timestamp.
    pub attributes: &'static [(&'static str, &'static str)],
    /// `Ok(literal)`: the result written as a literal (timestamps in RFC 3339).
    /// `Err(code)`: the runtime error code, e.g. `R001`.
    pub result: Result<&'static str, &'static str>,
}

/// Every function, in the order the docs list them.
static FUNCTIONS: [&Function; 15] = [
    &to_lower::FUNCTION,
    &to_upper::FUNCTION,
    &trim::FUNCTION,
    &replace::FUNCTION,
    &concat::FUNCTION,
    &left::FUNCTION,
    &right::FUNCTION,
    &substring::FUNCTION,
    &split::FUNCTION,
    &join::FUNCTION,
    &now::FUNCTION,
    &format::FUNCTION,
    &coalesce::FUNCTION,
    &if_::FUNCTION,
    &switch::FUNCTION,
];

/// Returns every built-in function, in documentation order.
pub fn functions() -> impl Iterator<Item = &'static Function> {
    FUNCTIONS.iter().copied()
}

/// Which way `ToLower` and `ToUpper` map letters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Case {
    Lower,
    Upper,
}

impl Case {
    /// Returns true when the byte is ASCII and already in this case (or not a letter).
    fn holds(self, b: u8) -> bool {
        b.is_ascii()
            && match self {
                Self::Lower => !b.is_ascii_uppercase(),
                Self::Upper => !b.is_ascii_lowercase(),
            }
    }

    fn map_ascii(self, s: &mut str) {
        match self {
            Self::Lower => s.make_ascii_lowercase(),
            Self::Upper => s.make_ascii_uppercase(),
        }
    }

    fn map(self, s: &str) -> String {
        match self {
            Self::Lower => s.to_lowercase(),
            Self::Upper => s.to_uppercase(),
        }
    }
}

/// The shared body of `ToLower` and `ToUpper`: null stays null, text already in the target case
/// is borrowed, ASCII text is mapped in place (its length cannot change), anything else goes
/// through Unicode case mapping, whose result may be longer and is size-checked.
pub(crate) fn change_case<'a>(
    ev: &mut Eval<'a>,
    args: &'a [Node],
    span: Span,
    name: &'static str,
    case: Case,
) -> EvalResult<'a> {
    let [text] = arguments::<1>(name, args, span)?;
    let Some(text) = ev.text(name, text)? else {
        return Ok(Val::Null);
    };
    ev.charge(text.len(), span)?;
    let mapped = match text {
        Cow::Borrowed(s) if s.bytes().all(|b| case.holds(b)) => Cow::Borrowed(s),
        Cow::Owned(mut s) if s.is_ascii() => {
            case.map_ascii(&mut s);
            Cow::Owned(s)
        }
        other => {
            ev.check_size(name, other.len(), span)?;
            let mapped = case.map(&other);
            ev.check_size(name, mapped.len(), span)?;
            Cow::Owned(mapped)
        }
    };
    Ok(Val::Str(mapped))
}

/// Finds a function by name, case-insensitively.
pub(crate) fn lookup(name: &str) -> Option<&'static Function> {
    functions().find(|f| f.name.eq_ignore_ascii_case(name))
}

// Helpers shared by the function modules.

/// The arguments as a fixed-size array. The checker has verified the arity; this keeps
/// evaluation total even if it had not.
fn arguments<'a, const N: usize>(
    what: &'static str,
    args: &'a [Node],
    span: Span,
) -> Result<&'a [Node; N], EvalError> {
    args.try_into().map_err(|_| EvalError::InvalidArgument {
        what,
        reason: format!("expected {N} arguments, found {}", args.len()),
        span,
    })
}

/// The result type of a function that maps text to text and null to null.
fn text_result(args: &[Ty]) -> Ty {
    match args.first() {
        Some(ty) if !ty.may_be_null() => Ty::STRING,
        _ => Ty::STRING.or(Ty::NULL),
    }
}

fn no_check(_: &[Node], _: &[Ty]) -> Option<(usize, String)> {
    None
}

/// Refuses a constant negative count at `index`.
fn negative_count(args: &[Node], index: usize) -> Option<(usize, String)> {
    match args.get(index).and_then(Node::as_const) {
        Some(mesh_model::Value::Integer(i)) if *i < 0 => {
            Some((index, format!("expected a count of 0 or more, found {i}")))
        }
        _ => None,
    }
}

/// Cuts `text` to the byte range `start..end`, borrowing when the input is borrowed. Both
/// ends come from `char_indices`, so they are character boundaries; a range that is not gives
/// the empty string rather than a panic.
fn cut(text: Cow<'_, str>, start: usize, end: usize) -> Cow<'_, str> {
    match text {
        Cow::Borrowed(s) => Cow::Borrowed(s.get(start..end).unwrap_or("")),
        Cow::Owned(mut s) => {
            if start <= end && s.is_char_boundary(start) && s.is_char_boundary(end) {
                // In place: `Left` of an owned string allocates nothing more.
                s.truncate(end);
                s.drain(..start);
                Cow::Owned(s)
            } else {
                Cow::Owned(String::new())
            }
        }
    }
}

/// Returns the byte offset of the `n`th character of `s`, or its length when it has fewer.
fn char_offset(s: &str, n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    s.char_indices().nth(n).map_or(s.len(), |(i, _)| i)
}
