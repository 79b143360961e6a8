//! `meshctl rules validate`: load rule documents and print every problem with its file, line
//! and column. Exit status 1 when any problem is an error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use mesh_engine::validate;
use mesh_expr::Severity;

/// Work with rule documents.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rule and connector documents; print every problem (not only the first).
    Validate(ValidateArgs),
}

/// How `rules validate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ValidateOutput {
    /// `file:line:column: error[code]: message`, one per line.
    #[default]
    Text,
    /// A JSON document with every problem.
    Json,
}

/// Arguments of `rules validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Rule files or directories (searched for *.yaml and *.yml).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Rule files or directories, as in `kubectl apply -f`.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: ValidateOutput,
}

/// Runs a `rules` command.
pub fn run(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Validate(args) => validate_command(args),
    }
}

fn validate_command(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let paths: Vec<PathBuf> = args.paths.into_iter().chain(args.files).collect();
    if paths.is_empty() {
        anyhow::bail!("name at least one rule file or directory");
    }
    let mut sources = Vec::new();
    for path in &paths {
        sources.extend(
            mesh_sim::files::read_rules(path)
                .with_context(|| format!("reading rules from {}", path.display()))?,
        );
    }
    let validation = validate(&sources);
    let errors = validation
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = validation.problems.len() - errors;
    match args.output {
        ValidateOutput::Text => {
            for problem in &validation.problems {
                println!("{problem}");
            }
            match &validation.rule_set {
                Some(rules) => println!(
                    "{} files valid: {} connectors, {} join, {} inbound and {} outbound flow, {} projection, {} composer rules, {} access policy rules; {warnings} warning(s)",
                    sources.len(),
                    rules.connectors().count(),
                    rules.all_join_rules().count(),
                    rules
                        .connectors()
                        .map(|c| rules.inbound_flow_rules(&c.name).len())
                        .sum::<usize>(),
                    rules
                        .connectors()
                        .map(|c| rules.outbound_flow_rules(&c.name).len())
                        .sum::<usize>(),
                    rules.projection_rules().len(),
                    rules
                        .mesh_object_types()
                        .iter()
                        .map(|t| rules.composer_rules(t).len())
                        .sum::<usize>(),
                    rules.access_policy().map_or(0, |p| p.rules.len()),
                ),
                None => eprintln!("{errors} error(s), {warnings} warning(s)"),
            }
        }
        ValidateOutput::Json => {
            let problems: Vec<serde_json::Value> = validation
                .problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": p.file,
                        "line": p.position.line,
                        "column": p.position.column,
                        "severity": p.severity.as_str(),
                        "code": p.code,
                        "message": p.message,
                    })
                })
                .collect();
            crate::output::print_json(&serde_json::json!({
                "valid": validation.rule_set.is_some(),
                "errors": errors,
                "warnings": warnings,
                "problems": problems,
            }))?;
        }
    }
    Ok(if validation.rule_set.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
