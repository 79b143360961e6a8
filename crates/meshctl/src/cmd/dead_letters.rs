//! `meshctl dead-letters [--stage S]`: the messages a stage gave up on (MESH_DLQ), oldest
//! first, with why.

use std::process::ExitCode;

use clap::Args;
use mesh_proto::v1;
use serde_json::json;

use super::client::{QueryService, all_pages, block_on};
use super::wire;
use crate::output::{Format, print_document, print_table};

/// `meshctl dead-letters`
#[derive(Debug, Args)]
pub struct DeadLettersArgs {
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
    block_on(list(args))?
}

async fn list(args: DeadLettersArgs) -> anyhow::Result<ExitCode> {
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
    let document = json!({
        "deadLetters": entries.iter().map(wire::dead_letter_json).collect::<Vec<_>>(),
    });
    if print_document(args.output, &document)? {
        return Ok(ExitCode::SUCCESS);
    }
    if entries.is_empty() {
        println!("no dead letters");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
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
        })
        .collect();
    print_table(
        &[
            "SEQ", "FAILED", "STAGE", "MESSAGE", "ATTEMPTS", "REPLAYED", "REASON",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}
