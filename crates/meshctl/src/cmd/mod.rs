//! The command groups. Each group is one module with a clap `Subcommand` enum and a `run`
//! function returning the process exit status; add a group by adding a variant here.

pub mod expr;

use std::process::ExitCode;

use clap::Subcommand;

/// Every top-level command.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check and try TransformScript expressions (transforms and filters).
    #[command(subcommand)]
    Expr(expr::ExprCommand),
}

/// Runs one command.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Expr(command) => expr::run(command),
    }
}
