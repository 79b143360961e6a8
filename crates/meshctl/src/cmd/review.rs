//! `meshctl review list [--connector C] [--reason disconnector|ambiguous]`: the review queue,
//! oldest first. Each entry's id is what resolving it takes:
//! `meshctl review resolve ENTRY --join MESH_OBJECT | --ignore --reason WHY` (audited).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use mesh_proto::v1;

use super::client::{Actor, QueryService, all_pages, block_on};
use super::wire;
use crate::output::{Format, ListTable, print_list};

/// `meshctl review …`
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// List disconnectors and ambiguous matches waiting for an operator, oldest first.
    List(ListArgs),
    /// Join an entry's connector object to a mesh object by hand, or ignore it until it
    /// changes.
    Resolve(ResolveArgs),
}

/// `meshctl review resolve`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("resolution").required(true).args(["join", "ignore"])))]
pub struct ResolveArgs {
    /// The entry's id (from `meshctl review list`).
    entry: String,
    /// Join the connector object to this mesh object.
    #[arg(long, value_name = "MESH_OBJECT")]
    join: Option<String>,
    /// Leave it unjoined and out of the queue until it changes.
    #[arg(long)]
    ignore: bool,
    #[command(flatten)]
    actor: Actor,
    #[command(flatten)]
    service: QueryService,
}

async fn resolve(args: ResolveArgs) -> anyhow::Result<ExitCode> {
    use v1::resolve_review_entry_request::{Ignore, Join, Resolution};
    let actor = args.actor.name()?;
    let resolution = match &args.join {
        Some(id) => Resolution::Join(Join {
            mesh_object_id: id.clone(),
        }),
        None => Resolution::Ignore(Ignore {}),
    };
    let client = args.service.connect().await?;
    let request = client.request(v1::ResolveReviewEntryRequest {
        entry_id: args.entry.clone(),
        resolution: Some(resolution),
        actor,
        reason: args.actor.reason.clone(),
    });
    let answer = client.answer(client.mesh_query().resolve_review_entry(request).await)?;
    match &args.join {
        Some(id) => println!(
            "joined to {id} (audit entry {}); flow links it now",
            answer.audit_sequence
        ),
        None => println!(
            "ignored until it changes (audit entry {})",
            answer.audit_sequence
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// Why an entry is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Reason {
    /// No join rule matched and no anchor rule applied.
    Disconnector,
    /// A join rule matched several mesh objects.
    Ambiguous,
}

/// `meshctl review list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only connector objects of this connector.
    #[arg(long)]
    connector: Option<String>,
    /// Only entries queued for this reason.
    #[arg(long, value_enum)]
    reason: Option<Reason>,
    /// At most this many (default: the whole queue).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `meshctl review`.
pub fn run(command: ReviewCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReviewCommand::List(args) => block_on(list(args))?,
        ReviewCommand::Resolve(args) => block_on(resolve(args))?,
    }
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let reason = match args.reason {
        None => v1::ReviewReason::Unspecified,
        Some(Reason::Disconnector) => v1::ReviewReason::Disconnector,
        Some(Reason::Ambiguous) => v1::ReviewReason::Ambiguous,
    };
    let client = args.service.connect().await?;
    let entries = all_pages(args.limit, |page_token, page_size| {
        let request = client.request(v1::ListReviewQueueRequest {
            connector: args.connector.clone().unwrap_or_default(),
            reason: reason.into(),
            page_size,
            page_token,
        });
        let client = client.clone();
        async move {
            let page = client.answer(client.mesh_query().list_review_queue(request).await)?;
            Ok((page.entries, page.next_page_token))
        }
    })
    .await?;
    print_list(
        args.output,
        "entries",
        &entries,
        wire::review_entry_json,
        &ListTable {
            header: &["ENTRY", "QUEUED", "REASON", "CONNECTOR OBJECT", "WHY"],
            row: &|e| {
                vec![
                    e.id.clone(),
                    wire::time_text(e.queued_at.as_ref()),
                    wire::reason(e.reason).to_owned(),
                    wire::object_ref(e.object.as_ref()),
                    e.message.clone(),
                ]
            },
            empty: Some("the review queue is empty"),
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
