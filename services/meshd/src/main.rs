//! `meshd`: run Identity Mesh services, migrate the database.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mesh_runtime::config::MeshConfig;
use mesh_runtime::shutdown::Shutdown;
use mesh_runtime::telemetry;

// Every stage allocates per message (decoded events, attribute maps, protobuf buffers); glibc's
// allocator showed as an eighth of the risk service's CPU time in its benchmark.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The Identity Mesh daemon.
#[derive(Debug, Parser)]
#[command(name = "meshd", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML); `MESH_*` environment variables override it.
    #[arg(long, short, global = true, env = "MESH_CONFIG_FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run services in this process until SIGTERM or SIGINT: names, or `all`.
    Run {
        /// Services to run (`all` for every one).
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Apply the PostgreSQL migrations and exit.
    Migrate,
    /// Run the examples/ estate through the whole pipeline in memory (no servers needed) and
    /// print what joined, which source won each attribute and why, and what would be exported.
    Demo {
        /// The directory holding rules/ and data/.
        #[arg(default_value = "examples")]
        examples: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo is pure and in memory: it needs no configuration, runtime or telemetry.
    if let Command::Demo { examples } = &cli.command {
        return match mesh_sim::demo::run(examples) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("meshd demo: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match MeshConfig::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("meshd: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("meshd: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "meshd failed");
            eprintln!("meshd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: MeshConfig) -> anyhow::Result<()> {
    let telemetry = telemetry::init("meshd", &config.telemetry)?;
    let result = match command {
        Command::Run { services } => {
            let services = meshd::resolve_services(&services)?;
            let shutdown = Shutdown::on_signals()?;
            let app = meshd::App::build(config, services).await?;
            let report = app.run_until_stopped(shutdown).await?;
            if report.is_clean() {
                Ok(())
            } else {
                Err(anyhow::anyhow!("shutdown was not clean: {report:?}"))
            }
        }
        Command::Migrate => meshd::migrate(&config).await,
        Command::Demo { .. } => Ok(()),
    };
    telemetry.shutdown().await?;
    result
}
