//! `meshctl expr`: check a TransformScript and try it on sample values before it goes into a
//! rule (the product's own advice: test rules on small data first).
//!
//! Attribute values on the command line:
//! - `--attr Name=Value`: the value is always a **string**, taken verbatim (`--attr
//!   employeeId=0042` is the text "0042"), since connectors deliver most attributes as text.
//! - `--attr-json Name=JSON`: a typed value written as JSON: `42`, `4.5`, `true`, `null`,
//!   `"text"`, `["a", "b"]`.
//! - `--attr-time Name=RFC3339`: a timestamp.
//!
//! Names are case-insensitive, as everywhere in the mesh; giving one twice is an error.
//! `Now()` is `--now`, or the current time when `--now` is absent: this is the one place
//! where TransformScript meets a real clock.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use mesh_expr::{
    Diagnostic, Diagnostics, EvalContext, EvalError, Program, Schema, compile, compile_filter,
    functions, to_literal,
};
use mesh_model::{AttributeName, Attributes, Value, ValueKind};
use serde_json::json;

use crate::output::{OutputFormat, print_structured};

/// `meshctl expr …`
#[derive(Debug, Subcommand)]
pub enum ExprCommand {
    /// Compile a script and report every problem, with its position and code.
    Check(CheckArgs),
    /// Compile a script and evaluate it on attribute values given on the command line.
    Eval(EvalArgs),
    /// List the built-in functions.
    Functions(FunctionsArgs),
}

#[derive(Debug, Args)]
pub struct ScriptArgs {
    /// The script, or `-` to read it from standard input.
    script: String,
    /// Compile as a filter: the result must be a boolean.
    #[arg(long)]
    filter: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    script: ScriptArgs,
    /// Declare an attribute, as NAME or NAME:TYPE (TYPE: string, integer, decimal, bool,
    /// timestamp, list). With at least one, unknown attributes are reported.
    #[arg(long = "schema", value_name = "NAME[:TYPE]")]
    schema: Vec<String>,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    script: ScriptArgs,
    /// An attribute whose value is a string, as NAME=VALUE.
    #[arg(long = "attr", value_name = "NAME=VALUE")]
    attrs: Vec<String>,
    /// An attribute with a typed value written as JSON, as NAME=JSON.
    #[arg(long = "attr-json", value_name = "NAME=JSON")]
    attrs_json: Vec<String>,
    /// An attribute whose value is a timestamp, as NAME=RFC3339.
    #[arg(long = "attr-time", value_name = "NAME=RFC3339")]
    attrs_time: Vec<String>,
    /// The time `Now()` returns (RFC 3339); the current time when absent.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
}

#[derive(Debug, Args)]
pub struct FunctionsArgs {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: OutputFormat,
}

/// Runs a `meshctl expr` command.
pub fn run(command: ExprCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExprCommand::Check(args) => check(args),
        ExprCommand::Eval(args) => eval(args),
        ExprCommand::Functions(args) => list_functions(args),
    }
}

const ORIGIN: &str = "script";

fn read_script(script: &str) -> anyhow::Result<String> {
    if script != "-" {
        return Ok(script.to_owned());
    }
    let mut source = String::new();
    std::io::stdin()
        .read_to_string(&mut source)
        .context("reading the script from standard input")?;
    // A trailing newline from `echo` or a file is not part of the expression.
    Ok(source.trim_end_matches(['\n', '\r']).to_owned())
}

fn compile_script(
    args: &ScriptArgs,
    source: &str,
    schema: Option<&Schema>,
) -> Result<Program, Diagnostics> {
    if args.filter {
        compile_filter(source, schema)
    } else {
        compile(source, schema)
    }
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let source = read_script(&args.script.script)?;
    let schema = if args.schema.is_empty() {
        None
    } else {
        Some(parse_schema(&args.schema)?)
    };
    let compiled = compile_script(&args.script, &source, schema.as_ref());
    match args.script.output {
        format @ (OutputFormat::Json | OutputFormat::Yaml) => {
            let (diagnostics, program) = match &compiled {
                Ok(program) => (program.warnings(), Some(program)),
                Err(diagnostics) => (diagnostics, None),
            };
            print_structured(
                format,
                &json!({
                    "ok": program.is_some(),
                    "diagnostics": diagnostics_json(diagnostics, &source),
                    "attributes": program.map(|p| p.attributes().map(|a| a.as_str()).collect::<Vec<_>>()),
                    "readsNow": program.map(Program::reads_now),
                }),
            )?;
        }
        OutputFormat::Text => match &compiled {
            Ok(program) => {
                if !program.warnings().is_empty() {
                    eprint!("{}", program.warnings().render(&source, ORIGIN));
                }
                let attributes: Vec<&str> = program.attributes().map(|a| a.as_str()).collect();
                println!(
                    "ok: {} warning(s); reads {}",
                    program.warnings().len(),
                    if attributes.is_empty() {
                        "no attributes".to_owned()
                    } else {
                        attributes.join(", ")
                    }
                );
            }
            Err(diagnostics) => eprint!("{}", diagnostics.render(&source, ORIGIN)),
        },
    }
    Ok(if compiled.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let source = read_script(&args.script.script)?;
    let attributes = parse_attributes(&args)?;
    let now = match &args.now {
        Some(text) => DateTime::parse_from_rfc3339(text)
            .with_context(|| format!("--now {text:?} is not an RFC 3339 time"))?
            .with_timezone(&Utc),
        None => Utc::now(),
    };
    let format = args.script.output;
    let program = match compile_script(&args.script, &source, None) {
        Ok(program) => program,
        Err(diagnostics) => {
            match format {
                OutputFormat::Json | OutputFormat::Yaml => print_structured(
                    format,
                    &json!({
                        "ok": false,
                        "diagnostics": diagnostics_json(&diagnostics, &source),
                    }),
                )?,
                OutputFormat::Text => eprint!("{}", diagnostics.render(&source, ORIGIN)),
            }
            return Ok(ExitCode::from(1));
        }
    };
    if format == OutputFormat::Text && !program.warnings().is_empty() {
        eprint!("{}", program.warnings().render(&source, ORIGIN));
    }
    let context = EvalContext::new(now);
    let result = if args.script.filter {
        program.eval_filter(&attributes, &context).map(Value::Bool)
    } else {
        program.eval(&attributes, &context)
    };
    match (result, format) {
        (Ok(value), OutputFormat::Text) => println!("{}", to_literal(&value)),
        (Ok(value), OutputFormat::Json | OutputFormat::Yaml) => print_structured(
            format,
            &json!({
                "ok": true,
                "value": serde_json::to_value(&value)?,
                "type": value.kind().as_str(),
                "diagnostics": diagnostics_json(program.warnings(), &source),
            }),
        )?,
        (Err(error), OutputFormat::Text) => {
            eprint!("{}", error.render(&source, ORIGIN));
            return Ok(ExitCode::from(1));
        }
        (Err(error), OutputFormat::Json | OutputFormat::Yaml) => {
            print_structured(
                format,
                &json!({
                    "ok": false,
                    "error": eval_error_json(&error, &source),
                    "diagnostics": diagnostics_json(program.warnings(), &source),
                }),
            )?;
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_functions(args: FunctionsArgs) -> anyhow::Result<ExitCode> {
    match args.output {
        OutputFormat::Text => {
            for function in functions() {
                println!("{:<45} {}", function.signature(), function.summary());
            }
        }
        format @ (OutputFormat::Json | OutputFormat::Yaml) => {
            let list: Vec<_> = functions()
                .map(|f| {
                    json!({
                        "name": f.name(),
                        "signature": f.signature(),
                        "summary": f.summary(),
                        "returns": f.returns(),
                    })
                })
                .collect();
            print_structured(format, &serde_json::Value::Array(list))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn split_assignment<'a>(flag: &str, text: &'a str) -> anyhow::Result<(AttributeName, &'a str)> {
    let Some((name, value)) = text.split_once('=') else {
        bail!("{flag} {text:?}: expected NAME=VALUE");
    };
    let name = AttributeName::parse(name).with_context(|| format!("{flag} {text:?}"))?;
    Ok((name, value))
}

fn parse_attributes(args: &EvalArgs) -> anyhow::Result<Attributes> {
    let mut attributes = Attributes::new();
    let mut add = |flag: &str, name: AttributeName, value: Value| -> anyhow::Result<()> {
        if attributes.get(&name).is_some() {
            bail!("{flag}: attribute {name} is given twice (names are case-insensitive)");
        }
        attributes.insert(name, value);
        Ok(())
    };
    for text in &args.attrs {
        let (name, value) = split_assignment("--attr", text)?;
        add("--attr", name, Value::from(value))?;
    }
    for text in &args.attrs_json {
        let (name, json) = split_assignment("--attr-json", text)?;
        let value: Value = serde_json::from_str(json)
            .with_context(|| format!("--attr-json {text:?}: the value is not valid JSON"))?;
        add("--attr-json", name, value)?;
    }
    for text in &args.attrs_time {
        let (name, time) = split_assignment("--attr-time", text)?;
        let time = DateTime::parse_from_rfc3339(time)
            .with_context(|| format!("--attr-time {text:?}: not an RFC 3339 time"))?
            .with_timezone(&Utc);
        add("--attr-time", name, Value::Timestamp(time))?;
    }
    Ok(attributes)
}

fn parse_schema(entries: &[String]) -> anyhow::Result<Schema> {
    let mut schema = Schema::new();
    for entry in entries {
        let (name, kind) = match entry.split_once(':') {
            // SCIM URNs contain colons: only a known type name after the last colon is a type.
            Some((name, kind)) if parse_kind(kind).is_some() => (name, parse_kind(kind)),
            _ => (entry.as_str(), None),
        };
        let name = AttributeName::parse(name).with_context(|| format!("--schema {entry:?}"))?;
        schema.insert(name, kind);
    }
    Ok(schema)
}

fn parse_kind(text: &str) -> Option<ValueKind> {
    Some(match text {
        "string" => ValueKind::String,
        "integer" => ValueKind::Integer,
        "decimal" => ValueKind::Decimal,
        "bool" | "boolean" => ValueKind::Bool,
        "timestamp" => ValueKind::Timestamp,
        "list" => ValueKind::List,
        _ => return None,
    })
}

fn diagnostics_json(diagnostics: &Diagnostics, source: &str) -> serde_json::Value {
    diagnostics
        .iter()
        .map(|d: &Diagnostic| {
            let (line, column) = d.span.position(source);
            json!({
                "code": d.code.as_str(),
                "severity": d.severity().as_str(),
                "message": d.message,
                "suggestion": d.suggestion,
                "span": { "start": d.span.start, "end": d.span.end },
                "line": line,
                "column": column,
            })
        })
        .collect()
}

fn eval_error_json(error: &EvalError, source: &str) -> serde_json::Value {
    let span = error.span();
    let (line, column) = span.position(source);
    json!({
        "code": error.code(),
        "message": error.to_string(),
        "span": { "start": span.start, "end": span.end },
        "line": line,
        "column": column,
    })
}
