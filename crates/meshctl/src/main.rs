//! meshctl: the Identity Mesh operator CLI, shaped like kubectl.
//!
//! `main` only parses the command line and maps the outcome to an exit status; each command
//! group lives in its own module under `cmd/` (`expr`, `rules`, `simulate`, `import`,
//! `exports`, `decide`, and the query service's `get`, `lineage`, `find`, `review`, `audit`,
//! `dead-letters`). Exit status: 0 on success, 1 when the command ran and found a problem (a
//! script that does not compile, an evaluation error, a broken audit chain, a service that
//! could not be asked), 2 for a usage error.

mod cmd;
mod output;

use std::process::ExitCode;

use clap::Parser;

/// Operate an Identity Mesh: rules, simulations, objects, lineage, audit.
#[derive(Debug, Parser)]
#[command(name = "meshctl", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cmd::run(cli.command) {
        Ok(status) => status,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
