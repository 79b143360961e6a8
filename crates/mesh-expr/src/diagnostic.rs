//! Compile-time diagnostics: stable codes, spans, messages, suggestions, and a renderer.
//!
//! Every problem [`crate::compile`] finds is a [`Diagnostic`] with a [`Code`]. Codes are part
//! of the public contract: rule validation output, audit records and people's notes refer to
//! them, so a code is never reused for another meaning and never renumbered. A retired code
//! stays in [`Code::ALL`] with its variant marked deprecated. Errors (`E…`) refuse the program;
//! warnings (`W…`) are returned alongside a program that compiled.

use std::fmt::{self, Write as _};

use crate::Span;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The program compiles; the author probably wants to look anyway.
    Warning,
    /// The program is refused.
    Error,
}

impl Severity {
    /// Returns `error` or `warning`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Warning => "warning",
            Self::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stable code of a diagnostic. The code string (`E020`) never changes meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Code {
    /// E001: the source is longer than [`crate::limits::MAX_SOURCE_LEN`].
    SourceTooLong,
    /// E002: a character that starts no token.
    UnexpectedCharacter,
    /// E003: a string or quoted attribute name without its closing quote.
    UnterminatedString,
    /// E004: an unknown or malformed escape sequence in a string.
    InvalidEscape,
    /// E005: a number that is malformed or out of range.
    InvalidNumber,
    /// E006: a token where another was expected.
    UnexpectedToken,
    /// E007: the source ends in the middle of an expression.
    UnexpectedEnd,
    /// E008: nesting deeper than [`crate::limits::MAX_DEPTH`].
    TooDeep,
    /// E009: `a < b < c` and other chained comparisons.
    ChainedComparison,
    /// E010: a list literal longer than [`crate::limits::MAX_LIST_LEN`].
    ListTooLong,
    /// E011: a quoted attribute name that is not a valid attribute name.
    InvalidAttributeName,
    /// E012: the source holds no expression.
    EmptySource,
    /// E020: a call to a function that does not exist.
    UnknownFunction,
    /// E021: a call with the wrong number of arguments.
    WrongArity,
    /// E022: a function argument whose type can never fit.
    ArgumentType,
    /// E023: an operand whose type can never fit its operator.
    OperandType,
    /// E024: a constant argument or expression that always fails (negative count, invalid
    /// pattern, …).
    InvalidArgument,
    /// E025: a filter whose result can never be a boolean.
    NotACondition,
    /// W001: an attribute that the supplied schema does not know.
    UnknownAttribute,
    /// W002: a function name written in a different case than its canonical spelling.
    FunctionNameCase,
    /// W003: a comparison between types that are never equal, so its result is fixed.
    MixedTypeComparison,
}

impl Code {
    /// Every code, in code order. Codes are never removed from this list.
    pub const ALL: &'static [Code] = &[
        Self::SourceTooLong,
        Self::UnexpectedCharacter,
        Self::UnterminatedString,
        Self::InvalidEscape,
        Self::InvalidNumber,
        Self::UnexpectedToken,
        Self::UnexpectedEnd,
        Self::TooDeep,
        Self::ChainedComparison,
        Self::ListTooLong,
        Self::InvalidAttributeName,
        Self::EmptySource,
        Self::UnknownFunction,
        Self::WrongArity,
        Self::ArgumentType,
        Self::OperandType,
        Self::InvalidArgument,
        Self::NotACondition,
        Self::UnknownAttribute,
        Self::FunctionNameCase,
        Self::MixedTypeComparison,
    ];

    /// Returns the code as written in messages and docs, e.g. `E020`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SourceTooLong => "E001",
            Self::UnexpectedCharacter => "E002",
            Self::UnterminatedString => "E003",
            Self::InvalidEscape => "E004",
            Self::InvalidNumber => "E005",
            Self::UnexpectedToken => "E006",
            Self::UnexpectedEnd => "E007",
            Self::TooDeep => "E008",
            Self::ChainedComparison => "E009",
            Self::ListTooLong => "E010",
            Self::InvalidAttributeName => "E011",
            Self::EmptySource => "E012",
            Self::UnknownFunction => "E020",
            Self::WrongArity => "E021",
            Self::ArgumentType => "E022",
            Self::OperandType => "E023",
            Self::InvalidArgument => "E024",
            Self::NotACondition => "E025",
            Self::UnknownAttribute => "W001",
            Self::FunctionNameCase => "W002",
            Self::MixedTypeComparison => "W003",
        }
    }

    /// Returns whether diagnostics with this code refuse the program.
    pub const fn severity(self) -> Severity {
        match self {
            Self::UnknownAttribute | Self::FunctionNameCase | Self::MixedTypeComparison => {
                Severity::Warning
            }
            _ => Severity::Error,
        }
    }

    /// Returns a one-line description of the code, as listed in the docs.
    pub const fn title(self) -> &'static str {
        match self {
            Self::SourceTooLong => "the source is longer than the maximum source length",
            Self::UnexpectedCharacter => "a character that starts no token",
            Self::UnterminatedString => "a string or quoted name without its closing quote",
            Self::InvalidEscape => "an unknown or malformed escape sequence in a string",
            Self::InvalidNumber => "a number that is malformed or out of range",
            Self::UnexpectedToken => "a token where another was expected",
            Self::UnexpectedEnd => "the source ends in the middle of an expression",
            Self::TooDeep => "nesting deeper than the maximum depth",
            Self::ChainedComparison => "a chained comparison such as `a < b < c`",
            Self::ListTooLong => "a list literal longer than the maximum list length",
            Self::InvalidAttributeName => "a quoted attribute name that is not a valid name",
            Self::EmptySource => "the source holds no expression",
            Self::UnknownFunction => "a call to a function that does not exist",
            Self::WrongArity => "a call with the wrong number of arguments",
            Self::ArgumentType => "a function argument whose type can never fit",
            Self::OperandType => "an operand whose type can never fit its operator",
            Self::InvalidArgument => "a constant argument or expression that always fails",
            Self::NotACondition => "a filter whose result can never be a boolean",
            Self::UnknownAttribute => "an attribute the supplied schema does not know",
            Self::FunctionNameCase => "a function name not in its canonical spelling",
            Self::MixedTypeComparison => "a comparison whose operand types are never equal",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a program's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The stable code.
    pub code: Code,
    /// Where in the source the problem is.
    pub span: Span,
    /// What is wrong, in one sentence without a trailing period.
    pub message: String,
    /// How to fix it, when there is an obvious fix (`did you mean `ToLower`?`).
    pub suggestion: Option<String>,
}

impl Diagnostic {
    /// Returns a diagnostic without a suggestion.
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Self {
        Self {
            code,
            span,
            message: message.into(),
            suggestion: None,
        }
    }

    /// Returns the diagnostic with `suggestion` attached.
    #[must_use]
    pub fn with_suggestion(mut self, suggestion: impl Into<String>) -> Self {
        self.suggestion = Some(suggestion.into());
        self
    }

    /// Returns the severity of the diagnostic's code.
    pub const fn severity(&self) -> Severity {
        self.code.severity()
    }

    /// Returns true for an error.
    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }

    /// Renders the diagnostic in the style of rustc: the headline, the position, the source
    /// line with a caret under the span, and the suggestion. `origin` names the script (a rule
    /// name, a file) in the position line.
    pub fn render(&self, source: &str, origin: &str) -> String {
        let mut out = String::new();
        render_one(
            &mut out,
            self.severity().as_str(),
            self.code.as_str(),
            &self.message,
            self.span,
            self.suggestion.as_deref(),
            source,
            origin,
        );
        out
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}[{}] at {}: {}",
            self.severity(),
            self.code,
            self.span,
            self.message
        )?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " ({suggestion})")?;
        }
        Ok(())
    }
}

/// The diagnostics of one compilation, in source order.
///
/// Returned as the error of [`crate::compile`] (then it holds at least one error, and any
/// warnings found before it), and available from [`crate::Program::warnings`] on success.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub(crate) fn from_vec(mut items: Vec<Diagnostic>) -> Self {
        // Stable sort: diagnostics at the same position keep the order they were found in.
        items.sort_by_key(|d| (d.span.start, d.span.end));
        Self { items }
    }

    /// Iterates over the diagnostics in source order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.items.iter()
    }

    /// Returns the diagnostics as a slice.
    pub fn as_slice(&self) -> &[Diagnostic] {
        &self.items
    }

    /// Returns the number of diagnostics.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Returns true when there is no diagnostic.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Iterates over the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    /// Iterates over the warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| !d.is_error())
    }

    /// Returns true when at least one diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    /// Renders every diagnostic (see [`Diagnostic::render`]), separated by blank lines.
    pub fn render(&self, source: &str, origin: &str) -> String {
        let mut out = String::new();
        for (i, diagnostic) in self.items.iter().enumerate() {
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&diagnostic.render(source, origin));
        }
        out
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.iter()
    }
}

/// Summarises the first error; [`Diagnostics::render`] shows them all with their context.
impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.errors().count();
        match self.errors().next().or_else(|| self.items.first()) {
            None => f.write_str("no diagnostics"),
            Some(first) if errors > 1 => write!(f, "{first} (and {} more)", errors - 1),
            Some(first) => write!(f, "{first}"),
        }
    }
}

impl std::error::Error for Diagnostics {}

/// Renders one headline plus source excerpt; shared with runtime errors so that both look
/// alike in `meshctl` and in audit records.
#[allow(clippy::too_many_arguments)]
pub(crate) fn render_one(
    out: &mut String,
    severity: &str,
    code: &str,
    message: &str,
    span: Span,
    suggestion: Option<&str>,
    source: &str,
    origin: &str,
) {
    let start = floor_char_boundary(source, span.start);
    let end = floor_char_boundary(source, span.end.max(start));
    let line_start = source
        .get(..start)
        .and_then(|s| s.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_end = source
        .get(start..)
        .and_then(|s| s.find('\n'))
        .map_or(source.len(), |i| start + i);
    let line_no = source.get(..start).map_or(0, |s| s.matches('\n').count()) + 1;
    let line = source.get(line_start..line_end).unwrap_or("");
    let column = source
        .get(line_start..start)
        .map_or(0, |s| s.chars().count())
        + 1;
    let caret_len = source
        .get(start..end.min(line_end))
        .map_or(0, |s| s.chars().count())
        .max(1);
    let gutter = line_no.to_string().len();

    let _ = writeln!(out, "{severity}[{code}]: {message}");
    let _ = writeln!(out, "{:gutter$}--> {origin}:{line_no}:{column}", "");
    let _ = writeln!(out, "{:gutter$} |", "");
    let _ = writeln!(out, "{line_no} | {}", printable(line));
    let _ = writeln!(
        out,
        "{:gutter$} | {}{}",
        "",
        " ".repeat(column - 1),
        "^".repeat(caret_len)
    );
    if let Some(suggestion) = suggestion {
        let _ = writeln!(out, "{:gutter$} = help: {suggestion}", "");
    }
}

/// Makes a source line safe to print on a terminal: a script may contain escape sequences or
/// other control characters, which would otherwise reach the operator's terminal verbatim.
/// Each character maps to exactly one character so that the caret stays aligned.
fn printable(line: &str) -> String {
    line.chars()
        .map(|c| match c {
            '\t' | '\r' => ' ',
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect()
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    if i >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}
