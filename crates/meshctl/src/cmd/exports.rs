//! `meshctl exports`: export commands by target and phase (newest first), or one mesh
//! object's state in every target (`--object`); `meshctl exports approve TARGET` releases the
//! deprovisions a target's mass-deletion guard holds (audited, with the actor and reason).
//! All through the query service (MeshQuery).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use mesh_proto::v1;
use serde_json::json;

use super::client::{Actor, QueryClient, QueryService, all_pages, block_on};
use super::wire;
use crate::output::{Format, print_document, print_table};

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

/// Where an export command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    /// Issued, not yet confirmed (queued, sent, or waiting for a retry).
    Pending,
    /// Confirmed by the target.
    Confirmed,
    /// Failed for good.
    Failed,
    /// A deprovision the mass-deletion guard holds until `meshctl exports approve`.
    Held,
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this target connector.
    #[arg(long)]
    target: Option<String>,
    /// Only this phase.
    #[arg(long, value_enum)]
    phase: Option<Phase>,
    /// Instead of the list: this mesh object's state in each target, with what is outstanding.
    #[arg(long, value_name = "MESH_OBJECT")]
    object: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

#[derive(Debug, Args)]
struct ApproveArgs {
    /// The target connector whose held deprovisions to release.
    target: String,
    #[command(flatten)]
    actor: Actor,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `meshctl exports`.
pub fn run(args: ExportsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(ExportsAction::Approve(approve)) => block_on(run_approve(approve))?,
        None => block_on(run_list(args.list))?,
    }
}

fn phase_name(phase: i32) -> &'static str {
    match v1::ExportPhase::try_from(phase) {
        Ok(v1::ExportPhase::Pending) => "pending",
        Ok(v1::ExportPhase::Confirmed) => "confirmed",
        Ok(v1::ExportPhase::Failed) => "failed",
        Ok(v1::ExportPhase::Held) => "held",
        _ => "unspecified",
    }
}

fn operation_name(operation: i32) -> String {
    v1::ExportOperation::try_from(operation).map_or_else(
        |_| "unspecified".to_owned(),
        |o| {
            o.as_str_name()
                .trim_start_matches("EXPORT_OPERATION_")
                .to_lowercase()
        },
    )
}

fn record_json(record: &v1::ExportRecord) -> serde_json::Value {
    let command = record.command.clone().unwrap_or_default();
    json!({
        "key": command.idempotency_key,
        "target": command.target_connector,
        "operation": operation_name(command.operation),
        "phase": phase_name(record.phase),
        "attempts": record.attempts,
        "meshObject": command.mesh_object,
        "version": command.mesh_object_version,
        "rule": command.rule,
        "lastMessage": record.last_message,
        "issuedAt": wire::time(command.issued_at.as_ref()),
        "completedAt": wire::time(record.completed_at.as_ref()),
        "nextAttemptAt": wire::time(record.next_attempt_at.as_ref()),
    })
}

fn record_row(record: &v1::ExportRecord) -> Vec<String> {
    let command = record.command.clone().unwrap_or_default();
    vec![
        command.target_connector,
        operation_name(command.operation),
        phase_name(record.phase).to_owned(),
        record.attempts.to_string(),
        command.mesh_object,
        command.mesh_object_version.to_string(),
        record.last_message.clone(),
    ]
}

const HEADER: [&str; 7] = [
    "TARGET",
    "OP",
    "PHASE",
    "TRY",
    "MESH OBJECT",
    "VER",
    "RESULT",
];

async fn run_list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.service.connect().await?;
    if let Some(object) = &args.object {
        return object_status(&client, object, &args).await;
    }
    let phase = match args.phase {
        None => v1::ExportPhase::Unspecified,
        Some(Phase::Pending) => v1::ExportPhase::Pending,
        Some(Phase::Confirmed) => v1::ExportPhase::Confirmed,
        Some(Phase::Failed) => v1::ExportPhase::Failed,
        Some(Phase::Held) => v1::ExportPhase::Held,
    };
    let records = all_pages(Some(args.limit), |page_token, page_size| {
        let request = client.request(v1::ListExportsRequest {
            phase: phase.into(),
            target_connector: args.target.clone().unwrap_or_default(),
            page_size,
            page_token,
        });
        let client = client.clone();
        async move {
            let page = client.answer(client.mesh_query().list_exports(request).await)?;
            Ok((page.exports, page.next_page_token))
        }
    })
    .await?;
    let document = json!({ "exports": records.iter().map(record_json).collect::<Vec<_>>() });
    if print_document(args.output, &document)? {
        return Ok(ExitCode::SUCCESS);
    }
    let held: std::collections::BTreeSet<String> = records
        .iter()
        .filter(|r| r.phase == v1::ExportPhase::Held as i32)
        .filter_map(|r| r.command.as_ref().map(|c| c.target_connector.clone()))
        .collect();
    for target in held {
        println!(
            "guard holding {target}: its deprovisions wait for `meshctl exports approve {target}`"
        );
    }
    let rows: Vec<Vec<String>> = records.iter().map(record_row).collect();
    print_table(&HEADER, &rows);
    Ok(ExitCode::SUCCESS)
}

async fn object_status(
    client: &QueryClient,
    object: &str,
    args: &ListArgs,
) -> anyhow::Result<ExitCode> {
    let request = client.request(v1::GetExportStatusRequest {
        mesh_object_id: object.to_owned(),
        target_connector: args.target.clone().unwrap_or_default(),
    });
    let answer = client.answer(client.mesh_query().get_export_status(request).await)?;
    let document = json!({
        "targets": answer.targets.iter().map(|t| json!({
            "target": t.target_connector,
            "inScope": t.in_scope,
            "rule": t.rule,
            "container": t.container,
            "targetObjectId": t.target_object_id,
            "confirmedVersion": t.confirmed_version,
            "exportedAttributes": wire::attributes_json(&t.exported_attributes),
            "deleteDueAt": wire::time(t.delete_due_at.as_ref()),
            "outstanding": t.outstanding.iter().map(record_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    });
    if print_document(args.output, &document)? {
        return Ok(ExitCode::SUCCESS);
    }
    if answer.targets.is_empty() {
        println!("{object} is in no target");
    }
    for t in &answer.targets {
        println!(
            "{}: {}, container {}, confirmed version {}{}",
            t.target_connector,
            if t.in_scope {
                "in scope"
            } else {
                "out of scope"
            },
            t.container,
            t.confirmed_version,
            t.target_object_id
                .as_ref()
                .map(|id| format!(", id {id}"))
                .unwrap_or_default()
        );
        if !t.outstanding.is_empty() {
            let rows: Vec<Vec<String>> = t.outstanding.iter().map(record_row).collect();
            print_table(&HEADER, &rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    let actor = args.actor.name()?;
    let client = args.service.connect().await?;
    let request = client.request(v1::ApproveExportsRequest {
        target_connector: args.target.clone(),
        actor,
        reason: args.actor.reason.clone(),
    });
    let answer = client.answer(client.mesh_query().approve_exports(request).await)?;
    let document = json!({"target": args.target, "released": answer.released});
    if !print_document(args.output, &document)? {
        println!(
            "released {} held deprovision(s) of {}; the guard counts afresh from now",
            answer.released, args.target
        );
    }
    Ok(ExitCode::SUCCESS)
}
