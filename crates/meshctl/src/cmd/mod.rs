//! The command groups. Each group is one module with a clap `Subcommand` enum and a `run`
//! function returning the process exit status; add a group by adding a variant here.

pub mod audit;
pub mod bench;
pub mod client;
pub mod dead_letters;
pub mod decide;
pub mod exports;
pub mod expr;
pub mod import;
pub mod objects;
pub mod overrides;
pub mod preview;
pub mod review;
pub mod rules;
pub mod simulate;
pub mod wire;

use std::process::ExitCode;

use clap::Subcommand;

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check and try TransformScript expressions (transforms and filters).
    #[command(subcommand)]
    Expr(expr::ExprCommand),
    /// Validate rules locally; apply, list, show, diff and roll back the running mesh's rule
    /// versions.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
    /// Show what applying a candidate rule set would change, without changing anything.
    Preview(preview::PreviewArgs),
    /// Pin an attribute of a mesh object above every rule, or remove the pin.
    #[command(subcommand)]
    Override(overrides::OverrideCommand),
    /// Run rules over sample data in memory and show the resulting mesh and exports.
    Simulate(simulate::SimulateArgs),
    /// Upload an HR extract to the connector agent: diff, then joiners, movers, leavers.
    Import(import::ImportArgs),
    /// List export commands by target and state; approve what the mass-deletion guard holds.
    Exports(exports::ExportsArgs),
    /// Ask the risk service for an access decision and show why.
    Decide(decide::DecideArgs),
    /// Show a mesh object or a connector object (from the query service).
    #[command(subcommand)]
    Get(objects::GetCommand),
    /// Show why each attribute of a mesh object holds its value: the winner, every candidate
    /// and the override.
    Lineage(objects::LineageArgs),
    /// Find mesh objects whose attribute equals a value.
    Find(objects::FindArgs),
    /// Work the review queue: disconnectors and ambiguous matches.
    #[command(subcommand)]
    Review(review::ReviewCommand),
    /// Search the audit log, or verify its hash chains (`--verify`).
    Audit(audit::AuditArgs),
    /// List the messages a stage gave up on (MESH_DLQ), or replay one.
    #[command(alias = "dlq")]
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Measure a running mesh (see docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Expr(command) => expr::run(command),
        Command::Rules(command) => rules::run(command),
        Command::Preview(args) => preview::run(args),
        Command::Override(command) => overrides::run(command),
        Command::Simulate(args) => simulate::run(args),
        Command::Import(args) => import::run(args),
        Command::Bench(command) => bench::run(command),
        Command::Exports(args) => exports::run(args),
        Command::Decide(args) => decide::run(args),
        Command::Get(command) => objects::run_get(command),
        Command::Lineage(args) => objects::run_lineage(args),
        Command::Find(args) => objects::run_find(args),
        Command::Review(command) => review::run(command),
        Command::Audit(args) => audit::run(args),
        Command::DeadLetters(args) => dead_letters::run(args),
    }
}
