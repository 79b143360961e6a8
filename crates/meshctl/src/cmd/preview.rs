//! `meshctl preview -f DIR`: what applying a candidate rule set would do to the running mesh,
//! computed by the query service without writing anything (docs/rule-versions.md). Exit
//! status 1 when the candidate is invalid, 3 when it would trip a target's mass-deletion
//! guard, so a pipeline can stop before `meshctl rules apply`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use mesh_proto::v1;
use serde_json::json;

use super::client::{QueryService, block_on, spinner};
use super::rules::{print_diagnostics, read_files};
use super::wire;
use crate::output::{Format, print_document, print_table};

/// `meshctl preview`
#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The candidate's rule files or directories (the whole rule set, as `rules apply` takes).
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<PathBuf>,
    /// Examples to show per kind of impact and target.
    #[arg(long, default_value_t = 10)]
    samples: u32,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Runs `meshctl preview`.
pub fn run(args: PreviewArgs) -> anyhow::Result<ExitCode> {
    block_on(preview(args))?
}

fn kind(kind: i32) -> &'static str {
    match v1::ImpactKind::try_from(kind) {
        Ok(v1::ImpactKind::AttributesChanged) => "attributes",
        Ok(v1::ImpactKind::EntersScope) => "enters",
        Ok(v1::ImpactKind::LeavesScope) => "leaves",
        Ok(v1::ImpactKind::Updated) => "updated",
        _ => "unspecified",
    }
}

fn sample_json(s: &v1::ImpactSample) -> serde_json::Value {
    json!({
        "kind": kind(s.kind),
        "meshObjectId": s.mesh_object_id,
        "objectType": s.object_type,
        "targetConnector": s.target_connector,
        "operation": v1::ExportOperation::try_from(s.operation).map_or("", |o| o.as_str_name()),
        "rule": s.rule,
        "changes": s.changes.iter().map(|c| json!({
            "name": c.name,
            "old": wire::value_json(c.old_value.as_ref()),
            "new": wire::value_json(c.new_value.as_ref()),
        })).collect::<Vec<_>>(),
    })
}

async fn preview(args: PreviewArgs) -> anyhow::Result<ExitCode> {
    let files = read_files(&args.files)?;
    let client = args.service.connect().await?;
    let bar = spinner("simulating the candidate against the mesh");
    let request = client.request(v1::PreviewImpactRequest {
        files,
        sample_limit: args.samples,
    });
    let answer = client.answer(client.rule_admin().preview_impact(request).await);
    bar.finish_and_clear();
    let answer = answer?;
    if !answer.valid {
        print_diagnostics(&answer.diagnostics);
        eprintln!("the candidate is invalid; nothing was simulated");
        return Ok(ExitCode::from(1));
    }
    let document = json!({
        "baseVersion": answer.base_version,
        "objectsEvaluated": answer.objects_evaluated,
        "objectsChanged": answer.objects_changed,
        "attributesChanged": answer.attributes_changed,
        "attributesChangedByName": answer.attributes_changed_by_name,
        "massDeletionThresholdExceeded": answer.mass_deletion_threshold_exceeded,
        "targets": answer.targets.iter().map(|t| json!({
            "targetConnector": t.target_connector,
            "enteringScope": t.entering_scope,
            "leavingScope": t.leaving_scope,
            "updated": t.updated,
            "deprovisions": t.deprovisions,
            "massDeletionThreshold": t.mass_deletion_threshold,
            "thresholdExceeded": t.threshold_exceeded,
            "samples": t.samples.iter().map(sample_json).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "samples": answer.samples.iter().map(sample_json).collect::<Vec<_>>(),
    });
    if !print_document(args.output, &document)? {
        print_diagnostics(&answer.diagnostics);
        println!(
            "against version {}: {} of {} mesh objects change, {} attribute values",
            answer.base_version,
            answer.objects_changed,
            answer.objects_evaluated,
            answer.attributes_changed
        );
        for (name, n) in &answer.attributes_changed_by_name {
            println!("  {name}: {n}");
        }
        let rows: Vec<Vec<String>> = answer
            .targets
            .iter()
            .map(|t| {
                vec![
                    t.target_connector.clone(),
                    t.entering_scope.to_string(),
                    t.updated.to_string(),
                    t.leaving_scope.to_string(),
                    t.deprovisions.to_string(),
                    format!(
                        "{}{}",
                        t.mass_deletion_threshold,
                        if t.threshold_exceeded {
                            " EXCEEDED"
                        } else {
                            ""
                        }
                    ),
                ]
            })
            .collect();
        println!();
        print_table(
            &["TARGET", "ENTER", "UPDATE", "LEAVE", "DEPROVISION", "GUARD"],
            &rows,
        );
        let samples: Vec<&v1::ImpactSample> = answer
            .samples
            .iter()
            .chain(answer.targets.iter().flat_map(|t| &t.samples))
            .collect();
        if !samples.is_empty() {
            println!();
            let rows: Vec<Vec<String>> = samples
                .iter()
                .map(|s| {
                    vec![
                        kind(s.kind).to_owned(),
                        s.mesh_object_id.clone(),
                        s.target_connector.clone(),
                        s.changes
                            .iter()
                            .map(|c| {
                                format!(
                                    "{}: {} -> {}",
                                    c.name,
                                    wire::value_text(c.old_value.as_ref()),
                                    wire::value_text(c.new_value.as_ref())
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    ]
                })
                .collect();
            print_table(&["SAMPLE", "MESH OBJECT", "TARGET", "CHANGES"], &rows);
        }
        if answer.mass_deletion_threshold_exceeded {
            eprintln!(
                "applying would exceed a target's mass-deletion guard: its deprovisions would be held until `meshctl exports approve`"
            );
        }
    }
    Ok(if answer.mass_deletion_threshold_exceeded {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}
