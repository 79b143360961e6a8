//! `meshctl dead-letters [--stage S]`: the messages a stage gave up on (MESH_DLQ), oldest
//! first, with why; `meshctl dead-letters replay SEQ --reason WHY` republishes one on its
//! original subject (audited). `meshctl dlq list|replay` is the same command.

use std::process::ExitCode;

use clap::Args;
use mesh_proto::v1;

use super::client::{Actor, QueryService, all_pages, block_on};
use super::wire;
use crate::output::{Format, ListTable, print_list};

/// `meshctl dead-letters`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeadLettersArgs {
    #[command(subcommand)]
    action: Option<DeadLetterAction>,
    #[command(flatten)]
    list: ListArgs,
}

/// What to do with a dead letter.
#[derive(Debug, clap::Subcommand)]
enum DeadLetterAction {
    /// List them (the same as no subcommand).
    List(ListArgs),
    /// Republish a dead letter's payload and headers on its original subject.
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// Its MESH_DLQ sequence (from `meshctl dead-letters`).
    sequence: u64,
    #[command(flatten)]
    actor: Actor,
    #[command(flatten)]
    service: QueryService,
}

/// `meshctl dead-letters` (listing).
#[derive(Debug, Args)]
struct ListArgs {
    /// Only dead letters of this stage (a consumer such as `correlation` or `flow`).
    #[arg(long)]
    stage: Option<String>,
    /// At most this many (default: all).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `meshctl dead-letters`.
pub fn run(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Some(DeadLetterAction::Replay(replay_args)) => block_on(replay(replay_args))?,
        Some(DeadLetterAction::List(list_args)) => block_on(list(list_args))?,
        None => block_on(list(args.list))?,
    }
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let actor = args.actor.name()?;
    let client = args.service.connect().await?;
    let request = client.request(v1::ReplayDeadLetterRequest {
        dlq_sequence: args.sequence,
        actor,
        reason: args.actor.reason.clone(),
    });
    let answer = client.answer(client.mesh_query().replay_dead_letter(request).await)?;
    if answer.duplicate {
        println!(
            "republished on {}, but JetStream dropped it as a duplicate (still inside its duplicate window); retry later",
            answer.subject
        );
    } else {
        println!(
            "republished on {} (stream sequence {})",
            answer.subject, answer.stream_sequence
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.service.connect().await?;
    let entries = all_pages(args.limit, |page_token, page_size| {
        let request = client.request(v1::ListDeadLettersRequest {
            stage: args.stage.clone().unwrap_or_default(),
            page_size,
            page_token,
        });
        let client = client.clone();
        async move {
            let page = client.answer(client.mesh_query().list_dead_letters(request).await)?;
            Ok((page.entries, page.next_page_token))
        }
    })
    .await?;
    print_list(
        args.output,
        "deadLetters",
        &entries,
        wire::dead_letter_json,
        &ListTable {
            header: &[
                "SEQ", "FAILED", "STAGE", "MESSAGE", "ATTEMPTS", "REPLAYED", "REASON",
            ],
            row: &|e| {
                let d = e.dead_letter.clone().unwrap_or_default();
                vec![
                    e.dlq_sequence.to_string(),
                    wire::time_text(d.failed_at.as_ref()),
                    d.stage,
                    format!("{} #{}", d.stream, d.stream_sequence),
                    d.attempts.to_string(),
                    wire::time_text(e.replayed_at.as_ref()),
                    d.reason,
                ]
            },
            empty: Some("no dead letters"),
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
