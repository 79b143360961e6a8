//! The generated parts of docs/transform-script.md, and the runner for function examples.
//!
//! Function examples live next to each function's code ([`crate::Function::examples`]); this
//! module runs them (the example tests call [`run_example`]) and renders them into Markdown,
//! so that the reference can never disagree with the implementation: a test fails when the
//! committed docs differ from [`functions_markdown`] or [`codes_markdown`].

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use mesh_model::{AttributeName, Attributes, Value};

use crate::diagnostic::Code;
use crate::functions::{EXAMPLE_NOW, Example, Function, functions};
use crate::value::{parse_timestamp, to_literal};
use crate::{Diagnostics, EvalContext, EvalError, compile};

/// What running an example gave.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleOutcome {
    /// The script compiled and evaluated to this value.
    Value(Value),
    /// The script did not compile.
    Refused(Diagnostics),
    /// The script compiled and evaluation failed.
    Failed(EvalError),
}

impl ExampleOutcome {
    /// Returns the outcome in the form [`Example::result`] uses: the literal of the value, or
    /// the code of the first error.
    pub fn as_expected(&self) -> Result<String, String> {
        match self {
            Self::Value(value) => Ok(to_literal(value)),
            Self::Refused(diagnostics) => Err(diagnostics
                .errors()
                .next()
                .map_or_else(String::new, |d| d.code.as_str().to_owned())),
            Self::Failed(error) => Err(error.code().to_owned()),
        }
    }
}

/// Why an example itself is malformed (not what it demonstrates).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExampleError {
    /// An attribute name in the example is not a valid attribute name.
    #[error("example attribute name {0:?} is invalid")]
    Name(String),
    /// An attribute value in the example is neither a constant literal nor RFC 3339.
    #[error("example attribute value {0:?} is not a literal")]
    Value(String),
}

/// Returns the time examples run at.
pub fn example_now() -> DateTime<Utc> {
    parse_timestamp(EXAMPLE_NOW).unwrap_or(DateTime::UNIX_EPOCH)
}

/// Builds an example's attributes from their literal form.
pub fn example_attributes(example: &Example) -> Result<Attributes, ExampleError> {
    let context = EvalContext::new(example_now());
    let mut attributes = Attributes::new();
    for (name, literal) in example.attributes {
        let name = AttributeName::parse(name).map_err(|_| ExampleError::Name((*name).into()))?;
        let value = match parse_timestamp(literal) {
            Some(t) => Value::Timestamp(t),
            None => compile(literal, None)
                .ok()
                .filter(|p| p.attributes().next().is_none())
                .and_then(|p| p.eval(&Attributes::new(), &context).ok())
                .ok_or_else(|| ExampleError::Value((*literal).into()))?,
        };
        attributes.insert(name, value);
    }
    Ok(attributes)
}

/// Runs one example at [`EXAMPLE_NOW`].
pub fn run_example(example: &Example) -> Result<ExampleOutcome, ExampleError> {
    let attributes = example_attributes(example)?;
    let context = EvalContext::new(example_now());
    Ok(match compile(example.source, None) {
        Err(diagnostics) => ExampleOutcome::Refused(diagnostics),
        Ok(program) => match program.eval(&attributes, &context) {
            Ok(value) => ExampleOutcome::Value(value),
            Err(error) => ExampleOutcome::Failed(error),
        },
    })
}

/// Renders the "Functions" section of the reference: every function with its signature,
/// parameters, contract and examples (with their actual results).
pub fn functions_markdown() -> String {
    let mut out = String::new();
    for function in functions() {
        function_markdown(&mut out, function);
    }
    out
}

fn function_markdown(out: &mut String, f: &Function) {
    let _ = writeln!(out, "### {}\n", f.name());
    let _ = writeln!(out, "`{}` → {}\n", f.signature(), f.returns());
    let _ = writeln!(out, "{}\n", f.summary());
    if !f.params().is_empty() {
        let _ = writeln!(out, "| Parameter | Accepts | Meaning |");
        let _ = writeln!(out, "|---|---|---|");
        for param in f.params() {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                param.name,
                f.param_type(param),
                cell(param.doc)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}\n", f.contract());
    let _ = writeln!(out, "| Script | Attributes | Result |");
    let _ = writeln!(out, "|---|---|---|");
    for example in f.examples() {
        let attributes = if example.attributes.is_empty() {
            "—".to_owned()
        } else {
            example
                .attributes
                .iter()
                .map(|(name, value)| format!("`{name}` = `{}`", cell(value)))
                .collect::<Vec<_>>()
                .join("<br>")
        };
        let result = match run_example(example) {
            Ok(outcome @ ExampleOutcome::Value(_)) => match outcome.as_expected() {
                Ok(literal) => format!("`{}`", cell(&literal)),
                Err(code) => code,
            },
            Ok(ExampleOutcome::Refused(diagnostics)) => match diagnostics.errors().next() {
                Some(d) => format!("refused: {} {}", d.code, cell(&d.message)),
                None => "refused".to_owned(),
            },
            Ok(ExampleOutcome::Failed(error)) => {
                format!("error {}: {}", error.code(), cell(&error.to_string()))
            }
            Err(error) => format!("invalid example: {error}"),
        };
        let _ = writeln!(
            out,
            "| `{}` | {attributes} | {result} |",
            cell(example.source)
        );
    }
    out.push('\n');
}

/// Renders the table of every diagnostic and runtime error code.
pub fn codes_markdown() -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| Code | Severity | Meaning |");
    let _ = writeln!(out, "|---|---|---|");
    for code in Code::ALL {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            code.as_str(),
            code.severity(),
            cell(code.title())
        );
    }
    for (code, title) in EvalError::CODES {
        let _ = writeln!(out, "| {code} | runtime error | {} |", cell(title));
    }
    out
}

/// Escapes text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}
