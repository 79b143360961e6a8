//! `meshctl rules validate`: load rule documents and print every problem with its file, line
//! and column. Exit status 1 when any problem is an error. It runs locally, without a mesh.
//!
//! `meshctl rules apply|list|show|diff|rollback` and `meshctl preview` talk to the query
//! service's RuleAdmin (docs/rule-versions.md): apply stores the files as a new version that
//! the running services switch to; a refused set prints every diagnostic and exits 1.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use mesh_engine::validate;
use mesh_expr::Severity;
use mesh_proto::v1;
use serde_json::json;

use super::client::{Actor, QueryService, all_pages, block_on, spinner};
use super::wire;
use crate::output::{Format, print_document, print_table};

/// Work with rule documents.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Check rule and connector documents; print every problem (not only the first).
    Validate(ValidateArgs),
    /// Apply rule files as a new version of the running mesh (refused whole if any is invalid).
    Apply(ApplyArgs),
    /// List the rule versions, newest first.
    List(ListArgs),
    /// Show one version (default: the one in force) and, with --files, its files.
    Show(ShowArgs),
    /// Compare two versions rule by rule.
    Diff(DiffArgs),
    /// Make an earlier version's rules current again, as a new version.
    Rollback(RollbackArgs),
}

/// How `rules validate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum ValidateOutput {
    /// `file:line:column: error[code]: message`, one per line.
    #[default]
    Text,
    /// A JSON document with every problem.
    Json,
    /// The same document as YAML.
    Yaml,
}

/// Arguments of `rules validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Rule files or directories (searched for *.yaml and *.yml).
    #[arg(value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Rule files or directories, as in `kubectl apply -f`.
    #[arg(short = 'f', long = "filename", value_name = "PATH")]
    files: Vec<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t)]
    output: ValidateOutput,
}

/// Runs a `rules` command.
pub fn run(command: RulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        RulesCommand::Validate(args) => validate_command(args),
        RulesCommand::Apply(args) => block_on(apply(args))?,
        RulesCommand::List(args) => block_on(list(args))?,
        RulesCommand::Show(args) => block_on(show(args))?,
        RulesCommand::Diff(args) => block_on(diff(args))?,
        RulesCommand::Rollback(args) => block_on(rollback(args))?,
    }
}

fn validate_command(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let paths: Vec<PathBuf> = args.paths.into_iter().chain(args.files).collect();
    if paths.is_empty() {
        anyhow::bail!("name at least one rule file or directory");
    }
    let mut sources = Vec::new();
    for path in &paths {
        sources.extend(
            mesh_sim::files::read_rules(path)
                .with_context(|| format!("reading rules from {}", path.display()))?,
        );
    }
    let validation = validate(&sources);
    let errors = validation
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = validation.problems.len() - errors;
    match args.output {
        ValidateOutput::Text => {
            for problem in &validation.problems {
                println!("{problem}");
            }
            match &validation.rule_set {
                Some(rules) => println!(
                    "{} files valid: {} connectors, {} join, {} inbound and {} outbound flow, {} projection, {} composer rules, {} access policy rules; {warnings} warning(s)",
                    sources.len(),
                    rules.connectors().count(),
                    rules.all_join_rules().count(),
                    rules
                        .connectors()
                        .map(|c| rules.inbound_flow_rules(&c.name).len())
                        .sum::<usize>(),
                    rules
                        .connectors()
                        .map(|c| rules.outbound_flow_rules(&c.name).len())
                        .sum::<usize>(),
                    rules.projection_rules().len(),
                    rules
                        .mesh_object_types()
                        .iter()
                        .map(|t| rules.composer_rules(t).len())
                        .sum::<usize>(),
                    rules.access_policy().map_or(0, |p| p.rules.len()),
                ),
                None => eprintln!("{errors} error(s), {warnings} warning(s)"),
            }
        }
        ValidateOutput::Json | ValidateOutput::Yaml => {
            let problems: Vec<serde_json::Value> = validation
                .problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "file": p.file,
                        "line": p.position.line,
                        "column": p.position.column,
                        "severity": p.severity.as_str(),
                        "code": p.code,
                        "message": p.message,
                    })
                })
                .collect();
            let document = serde_json::json!({
                "valid": validation.rule_set.is_some(),
                "errors": errors,
                "warnings": warnings,
                "problems": problems,
            });
            if args.output == ValidateOutput::Yaml {
                crate::output::print_yaml(&document)?;
            } else {
                crate::output::print_json(&document)?;
            }
        }
    }
    Ok(if validation.rule_set.is_some() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Arguments of `rules apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Rule files or directories, as in `kubectl apply -f`; together they replace the whole
    /// rule set.
    #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
    files: Vec<PathBuf>,
    /// Refuse unless this is still the version in force (another operator may have applied).
    #[arg(long, value_name = "VERSION")]
    expect: Option<u64>,
    #[command(flatten)]
    actor: Actor,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

/// Reads rule files or directories as wire files, each path relative to its directory.
pub fn read_files(paths: &[PathBuf]) -> anyhow::Result<Vec<v1::RuleFile>> {
    let mut files = Vec::new();
    for path in paths {
        for source in mesh_sim::files::read_rules_relative(path)
            .with_context(|| format!("reading rules from {}", path.display()))?
        {
            files.push(v1::RuleFile {
                path: source.path,
                content: source.contents,
            });
        }
    }
    if files.is_empty() {
        anyhow::bail!("no *.yaml or *.yml file in {paths:?}");
    }
    Ok(files)
}

/// Prints diagnostics as `file:line:column: severity[code]: message` on stderr.
pub fn print_diagnostics(diagnostics: &[v1::Diagnostic]) {
    for d in diagnostics {
        let severity = match v1::Severity::try_from(d.severity) {
            Ok(v1::Severity::Error) => "error",
            Ok(v1::Severity::Warning) => "warning",
            _ => "info",
        };
        eprintln!(
            "{}:{}:{}: {severity}[{}]: {}",
            d.file, d.line, d.column, d.code, d.message
        );
    }
}

fn diagnostics_json(diagnostics: &[v1::Diagnostic]) -> serde_json::Value {
    json!(diagnostics
        .iter()
        .map(|d| json!({
            "file": d.file, "line": d.line, "column": d.column, "code": d.code,
            "severity": v1::Severity::try_from(d.severity).map_or("unspecified", |s| s.as_str_name()),
            "message": d.message,
        }))
        .collect::<Vec<_>>())
}

fn version_json(v: &v1::RuleVersion) -> serde_json::Value {
    json!({
        "version": v.version,
        "actor": v.actor,
        "reason": v.reason,
        "appliedAt": wire::time(v.applied_at.as_ref()),
        "digest": v.digest,
        "restoredFrom": v.restored_from,
        "rulesByKind": v.summary.as_ref().map(|s| &s.rules_by_kind),
    })
}

fn summary_text(v: &v1::RuleVersion) -> String {
    v.summary
        .as_ref()
        .map(|s| {
            s.rules_by_kind
                .iter()
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

async fn apply(args: ApplyArgs) -> anyhow::Result<ExitCode> {
    let files = read_files(&args.files)?;
    let actor = args.actor.name()?;
    let client = args.service.connect().await?;
    let bar = spinner(&format!("applying {} files", files.len()));
    let request = client.request(v1::ApplyRulesRequest {
        files,
        actor,
        reason: args.actor.reason.clone(),
        expected_current_version: args.expect,
    });
    let answer = client.answer(client.rule_admin().apply_rules(request).await);
    bar.finish_and_clear();
    let answer = answer?;
    let document = json!({
        "applied": answer.applied,
        "version": answer.version.as_ref().map(version_json),
        "diagnostics": diagnostics_json(&answer.diagnostics),
    });
    if !print_document(args.output, &document)? {
        print_diagnostics(&answer.diagnostics);
        match &answer.version {
            Some(v) if answer.applied => println!(
                "applied as version {} ({}); the services switch to it now",
                v.version,
                summary_text(v)
            ),
            _ => eprintln!("refused: nothing was applied; fix the errors above and apply again"),
        }
    }
    Ok(if answer.applied {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Arguments of `rules list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// At most this many (default: all).
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

async fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.service.connect().await?;
    let mut current = 0;
    let versions = all_pages(args.limit, |page_token, page_size| {
        let request = client.request(v1::ListRuleVersionsRequest {
            page_size,
            page_token,
        });
        let client = client.clone();
        async move {
            let page = client.answer(client.rule_admin().list_rule_versions(request).await)?;
            Ok((
                page.versions
                    .into_iter()
                    .map(|v| (v, page.current_version))
                    .collect(),
                page.next_page_token,
            ))
        }
    })
    .await?
    .into_iter()
    .map(|(v, c)| {
        current = c;
        v
    })
    .collect::<Vec<_>>();
    let document = json!({
        "currentVersion": current,
        "versions": versions.iter().map(version_json).collect::<Vec<_>>(),
    });
    if print_document(args.output, &document)? {
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = versions
        .iter()
        .map(|v| {
            vec![
                if v.version == current {
                    format!("{} *", v.version)
                } else {
                    v.version.to_string()
                },
                wire::time_text(v.applied_at.as_ref()),
                v.actor.clone(),
                v.restored_from.map_or_else(
                    || v.reason.clone(),
                    |n| format!("rollback to {n}: {}", v.reason),
                ),
                summary_text(v),
            ]
        })
        .collect();
    print_table(&["VERSION", "APPLIED", "ACTOR", "REASON", "RULES"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rules show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The version (default: the one in force).
    #[arg(default_value_t = 0, value_name = "VERSION")]
    number: u64,
    /// Also print its files.
    #[arg(long)]
    files: bool,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

async fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let client = args.service.connect().await?;
    let request = client.request(v1::GetRuleVersionRequest {
        version: args.number,
    });
    let answer = client.answer(client.rule_admin().get_rule_version(request).await)?;
    let version = answer.version.unwrap_or_default();
    let mut document = version_json(&version);
    if args.files {
        document["files"] = json!(
            answer
                .files
                .iter()
                .map(|f| json!({"path": f.path, "content": f.content}))
                .collect::<Vec<_>>()
        );
    }
    if print_document(args.output, &document)? {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "version {} applied {} by {}: {}",
        version.version,
        wire::time_text(version.applied_at.as_ref()),
        version.actor,
        version.reason
    );
    println!("digest {}; {}", version.digest, summary_text(&version));
    if args.files {
        for file in &answer.files {
            println!("--- {}\n{}", file.path, file.content.trim_end());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rules diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older version.
    from: u64,
    /// The newer version (default: the one in force).
    #[arg(default_value_t = 0)]
    to: u64,
    #[command(flatten)]
    service: QueryService,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t)]
    output: Format,
}

async fn diff(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let client = args.service.connect().await?;
    let request = client.request(v1::DiffRuleVersionsRequest {
        from_version: args.from,
        to_version: args.to,
    });
    let answer = client.answer(client.rule_admin().diff_rule_versions(request).await)?;
    let change_name = |c: &v1::RuleChange| {
        v1::RuleChangeKind::try_from(c.change).map_or("unspecified", |k| match k {
            v1::RuleChangeKind::Added => "added",
            v1::RuleChangeKind::Removed => "removed",
            v1::RuleChangeKind::Modified => "modified",
            v1::RuleChangeKind::Unspecified => "unspecified",
        })
    };
    let document = json!({
        "fromVersion": answer.from_version,
        "toVersion": answer.to_version,
        "changes": answer.changes.iter().map(|c| json!({
            "kind": c.kind, "name": c.name, "change": change_name(c),
            "before": c.before, "after": c.after, "unifiedDiff": c.unified_diff,
        })).collect::<Vec<_>>(),
    });
    if print_document(args.output, &document)? {
        return Ok(ExitCode::SUCCESS);
    }
    if answer.changes.is_empty() {
        println!(
            "versions {} and {} hold the same rules",
            answer.from_version, answer.to_version
        );
    }
    for change in &answer.changes {
        println!("{} {} {}", change_name(change), change.kind, change.name);
        print!("{}", change.unified_diff);
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `rules rollback`.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The version whose rules become current again.
    #[arg(value_name = "VERSION")]
    number: u64,
    #[command(flatten)]
    actor: Actor,
    #[command(flatten)]
    service: QueryService,
}

async fn rollback(args: RollbackArgs) -> anyhow::Result<ExitCode> {
    let actor = args.actor.name()?;
    let client = args.service.connect().await?;
    let request = client.request(v1::RollbackRulesRequest {
        to_version: args.number,
        actor,
        reason: args.actor.reason.clone(),
    });
    let answer = client.answer(client.rule_admin().rollback_rules(request).await)?;
    let version = answer.version.unwrap_or_default();
    println!(
        "version {} restores version {}; the services switch to it now",
        version.version, args.number
    );
    Ok(ExitCode::SUCCESS)
}
