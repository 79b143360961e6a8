//! `meshctl audit [--object ID] [--connector C] [--rule R] [--since T] [--until T]
//! [--action A]...`: the audit log, oldest first; and `meshctl audit --verify`: recompute its
//! hash chains and report the first broken row (exit status 1 when one is broken).

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Args;
use mesh_proto::v1;
use serde_json::json;

use super::client::{QueryClient, QueryService, all_pages, block_on};
use super::wire;
use crate::output::{Format, ListTable, print_document, print_list};

/// `meshctl audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Verify the hash chains instead of listing entries.
    #[arg(long, conflicts_with_all = ["object", "connector_object", "connector", "rule", "since", "until", "actions", "limit"])]
    verify: bool,
    /// With --verify: report only broken rows from this sequence on.
    #[arg(long, requires = "verify")]
    from: Option<u64>,
    /// With --verify: report only broken rows up to this sequence.
    #[arg(long, requires = "verify")]
    to: Option<u64>,
    /// Only entries about this mesh object.
    #[arg(long)]
    object: Option<String>,
    /// Only entries about this connector object (`connector/type/external-id`).
    #[arg(long)]
    connector_object: Option<String>,
    /// Only entries about this connector (its connector objects, or exports to it).
    #[arg(long)]
    connector: Option<String>,
    /// Only entries of this rule.
    #[arg(long)]
    rule: Option<String>,
    /// Only entries at or after this time (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Only entries before this time (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// Only entries of this action (repeatable), such as `join`, `values`, `export`.
    #[arg(long = "action")]
    actions: Vec<String>,
    /// At most this many (default: every match).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `meshctl audit`.
pub fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    block_on(async move {
        let client = args.service.connect().await?;
        if args.verify {
            verify(&client, &args).await
        } else {
            search(&client, &args).await
        }
    })?
}

fn connector_object(key: &str) -> anyhow::Result<v1::ConnectorObjectRef> {
    let mut parts = key.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(connector), Some(object_type), Some(external_id)) => Ok(v1::ConnectorObjectRef {
            connector: connector.to_owned(),
            object_type: object_type.to_owned(),
            external_id: external_id.to_owned(),
        }),
        _ => anyhow::bail!(
            "--connector-object {key:?} is not CONNECTOR/TYPE/EXTERNAL_ID, such as hr/User/1001"
        ),
    }
}

async fn search(client: &QueryClient, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let object = args
        .connector_object
        .as_deref()
        .map(connector_object)
        .transpose()?;
    let entries = all_pages(args.limit, |page_token, page_size| {
        let request = client.request(v1::SearchAuditRequest {
            mesh_object_id: args.object.clone().unwrap_or_default(),
            connector_object: object.clone(),
            connector: args.connector.clone().unwrap_or_default(),
            rule: args.rule.clone().unwrap_or_default(),
            since: args.since.map(mesh_proto::timestamp_to_pb),
            until: args.until.map(mesh_proto::timestamp_to_pb),
            actions: args.actions.clone(),
            page_size,
            page_token,
        });
        let client = client.clone();
        async move {
            let page = client.answer(client.mesh_query().search_audit(request).await)?;
            Ok((page.entries, page.next_page_token))
        }
    })
    .await?;
    print_list(
        args.output,
        "entries",
        &entries,
        wire::audit_entry_json,
        &ListTable {
            header: &["TIME", "ACTOR", "SEQ", "ACTION", "WHAT"],
            row: &|e| {
                vec![
                    wire::time_text(e.recorded_at.as_ref()),
                    e.actor.clone(),
                    e.sequence.to_string(),
                    e.action.clone(),
                    e.message.clone(),
                ]
            },
            empty: None,
        },
    )?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(client: &QueryClient, args: &AuditArgs) -> anyhow::Result<ExitCode> {
    let request = client.request(v1::VerifyAuditChainRequest {
        from_sequence: args.from,
        to_sequence: args.to,
    });
    let bar = super::client::spinner("verifying the audit log's hash chains");
    let report = client.answer(client.mesh_query().verify_audit_chain(request).await);
    bar.finish_and_clear();
    let report = report?;
    let document = json!({
        "valid": report.valid,
        "entriesChecked": report.entries_checked,
        "firstBadSequence": report.first_bad_sequence,
        "problem": (!report.problem.is_empty()).then_some(&report.problem),
        "headHash": report.head_hash,
    });
    if !print_document(args.output, &document)? {
        if report.valid {
            println!(
                "the audit log is intact: {} entries checked, newest hash {}",
                report.entries_checked, report.head_hash
            );
        } else {
            println!(
                "the audit log is BROKEN at sequence {}: {}\n{} entries checked",
                report
                    .first_bad_sequence
                    .map_or_else(|| "?".to_owned(), |s| s.to_string()),
                report.problem,
                report.entries_checked
            );
        }
    }
    Ok(if report.valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
