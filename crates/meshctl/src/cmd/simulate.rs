//! `meshctl simulate`: run rules over sample data in memory and show what the mesh would do,
//! before the rules touch production.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use mesh_engine::load;
use mesh_sim::{Report, World, files, simulate};

/// How `simulate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SimulateOutput {
    /// Tables for people.
    #[default]
    Table,
    /// The full report as JSON (meshObjects, disconnectors, ambiguous, exports,
    /// transformErrors, trace).
    Json,
    /// The same report as YAML.
    Yaml,
}

/// Arguments of `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// A rule file or directory.
    #[arg(long, value_name = "PATH")]
    rules: PathBuf,
    /// A data directory: `<connector>.csv|json|ndjson` snapshots and optional `events.ndjson`.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: SimulateOutput,
    /// Leave the explanation (`trace`) out of the JSON output.
    #[arg(long)]
    no_trace: bool,
}

/// Runs `simulate`.
pub fn run(args: SimulateArgs) -> anyhow::Result<ExitCode> {
    let sources = files::read_rules(&args.rules)
        .with_context(|| format!("reading rules from {}", args.rules.display()))?;
    let rules = match load(&sources) {
        Ok(rules) => rules,
        Err(error) => {
            for problem in &error.problems {
                eprintln!("{problem}");
            }
            anyhow::bail!("the rules are refused; `meshctl rules validate` shows the same");
        }
    };
    let events = files::read_data(&args.data, &rules)
        .with_context(|| format!("reading data from {}", args.data.display()))?;
    let world = simulate(World::new(rules).with_tracing(!args.no_trace), &events)
        .map_err(|(index, error)| anyhow::anyhow!("event {index}: {error}"))?;
    let report = Report::of(&world);
    match args.output {
        SimulateOutput::Table => print!("{}", report.to_table()),
        SimulateOutput::Json => {
            crate::output::print_json(&serde_json::to_value(&report)?)?;
        }
        SimulateOutput::Yaml => {
            crate::output::print_yaml(&serde_json::to_value(&report)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
