//! `meshctl exports`: list export commands by target and state, and `meshctl exports approve
//! TARGET` to release deprovisions the mass-deletion guard holds.
//!
//! Both read and write the mesh database directly (`--database-url`, or `MESH_POSTGRES__URL`
//! as `meshd` reads it) until the query service's gRPC API serves them.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use mesh_model::MeshObjectId;
use mesh_store::projection::{self, ExportFilter, ExportRow, ExportState};
use serde_json::json;

use crate::output::{OutputFormat, print_json};

/// `meshctl exports …`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExportsArgs {
    #[command(subcommand)]
    action: Option<ExportsAction>,
    #[command(flatten)]
    list: ListArgs,
}

/// What to do with exports.
#[derive(Debug, Subcommand)]
enum ExportsAction {
    /// Release the deprovisions a target's mass-deletion guard holds, and count its window
    /// afresh.
    Approve(ApproveArgs),
}

#[derive(Debug, Args)]
struct Database {
    /// The mesh database.
    #[arg(
        long,
        env = "MESH_POSTGRES__URL",
        default_value = "postgres://postgres@127.0.0.1:5432/identitymesh",
        hide_env_values = true
    )]
    database_url: String,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this target connector.
    #[arg(long)]
    target: Option<String>,
    /// Only these states (repeatable): queued, held, sent, confirmed, failed.
    #[arg(long = "status", value_parser = parse_state)]
    states: Vec<ExportState>,
    /// Only this mesh object.
    #[arg(long)]
    object: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: i64,
    #[command(flatten)]
    database: Database,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: OutputFormat,
}

#[derive(Debug, Args)]
struct ApproveArgs {
    /// The target connector whose held deprovisions to release.
    target: String,
    #[command(flatten)]
    database: Database,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: OutputFormat,
}

fn parse_state(name: &str) -> Result<ExportState, String> {
    ExportState::parse(name).ok_or_else(|| {
        let known: Vec<&str> = ExportState::ALL.iter().map(|(_, n)| *n).collect();
        format!(
            "unknown state {name:?}; expected one of {}",
            known.join(", ")
        )
    })
}

/// Runs `meshctl exports`.
pub fn run(args: ExportsArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.action {
            Some(ExportsAction::Approve(approve)) => run_approve(approve).await,
            None => run_list(args.list).await,
        }
    })
}

async fn connect(database: &Database) -> anyhow::Result<sqlx::PgPool> {
    let pool = mesh_store::connect_lazy(&database.database_url, 2)?;
    sqlx::query("SELECT 1")
        .execute(&pool)
        .await
        .with_context(|| {
            format!(
                "cannot reach the mesh database at {}",
                mesh_runtime::config::redacted_url(&database.database_url)
            )
        })?;
    Ok(pool)
}

async fn run_list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let mesh_object = match &args.object {
        Some(id) => {
            Some(MeshObjectId::parse(id).map_err(|e| anyhow::anyhow!("--object {id:?}: {e}"))?)
        }
        None => None,
    };
    let pool = connect(&args.database).await?;
    let rows = projection::list(
        &pool,
        &ExportFilter {
            target: args.target.clone(),
            states: args.states.clone(),
            mesh_object,
            limit: args.limit,
        },
    )
    .await?;
    let held = projection::held_guards(&pool).await?;
    match args.output {
        OutputFormat::Json => print_json(&json!({
            "exports": rows.iter().map(row_json).collect::<Vec<_>>(),
            "heldTargets": held.iter().map(|(t, since)| json!({"target": t, "since": since.to_rfc3339()})).collect::<Vec<_>>(),
        }))?,
        OutputFormat::Text => {
            for (target, since) in &held {
                println!(
                    "guard holding {target} since {since}: its deprovisions wait for `meshctl exports approve {target}`"
                );
            }
            println!(
                "{:<8} {:<16} {:<8} {:<10} {:>3} {:<36} {:>4} RESULT",
                "SEQ", "TARGET", "OP", "STATE", "TRY", "MESH OBJECT", "VER"
            );
            for row in &rows {
                println!(
                    "{:<8} {:<16} {:<8} {:<10} {:>3} {:<36} {:>4} {}",
                    row.seq,
                    row.target,
                    row.operation,
                    row.state.as_str(),
                    row.attempts,
                    row.mesh_object,
                    row.mesh_object_version,
                    match (&row.result, &row.message) {
                        (Some(r), Some(m)) if !m.is_empty() => format!("{r}: {m}"),
                        (Some(r), _) => r.clone(),
                        (None, _) => String::new(),
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn row_json(row: &ExportRow) -> serde_json::Value {
    json!({
        "seq": row.seq,
        "key": row.idempotency_key,
        "target": row.target,
        "operation": row.operation,
        "state": row.state.as_str(),
        "attempts": row.attempts,
        "meshObject": row.mesh_object.to_string(),
        "version": row.mesh_object_version,
        "rule": row.rule,
        "result": row.result,
        "message": row.message,
        "targetObjectId": row.target_object_id,
        "issuedAt": row.issued_at.to_rfc3339(),
        "updatedAt": row.updated_at.to_rfc3339(),
    })
}

async fn run_approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let pool = connect(&args.database).await?;
    let Some(released) = projection::approve(&pool, &args.target).await? else {
        bail!(
            "the mass-deletion guard of {} is not holding; nothing to approve",
            args.target
        );
    };
    match args.output {
        OutputFormat::Json => {
            print_json(&json!({"target": args.target, "released": released}))?;
        }
        OutputFormat::Text => println!(
            "released {released} held deprovision(s) of {}; the guard counts afresh from now",
            args.target
        ),
    }
    Ok(ExitCode::SUCCESS)
}
