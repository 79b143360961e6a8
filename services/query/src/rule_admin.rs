//! The RuleAdmin gRPC service: validate, apply, list, get, diff, roll back, preview.
//!
//! An apply or rollback writes the new version and its audit entry in one transaction, then
//! announces the version on `mesh.rules.changed`. The announcement is a hint: the services
//! also poll, so a lost one delays the switch by at most `mesh_stage::rules::POLL_INTERVAL`.

use std::collections::BTreeMap;

use chrono::Utc;
use mesh_engine::{RuleSet, SourceFile, Validation, validate};
use mesh_expr::Severity;
use mesh_proto::v1;
use mesh_proto::v1::rule_admin_server::RuleAdmin;
use mesh_store::audit::{self, AuditEntry};
use mesh_store::rules::{self as stored, ApplyError, NewRuleVersion, RuleFile};
use tonic::{Request, Response, Status};

use crate::{AUDIT_WRITER, Query, diff, page, preview, status};

/// RuleAdmin over the stored rule versions.
#[derive(Debug, Clone)]
pub struct RuleAdminService {
    query: Query,
}

impl RuleAdminService {
    /// Serves from `query`'s pool and bus.
    pub fn new(query: Query) -> Self {
        Self { query }
    }

    /// Writes a version and its audit entry, then announces it.
    async fn store(
        &self,
        files: &[RuleFile],
        rules: &RuleSet,
        actor: &str,
        reason: &str,
        restored_from: Option<u64>,
        expected_current: Option<u64>,
    ) -> Result<stored::RuleVersion, Status> {
        let mut tx = self.query.pool.begin().await.map_err(status::sql)?;
        let summary = rules.summary();
        let version = stored::insert(
            &mut tx,
            NewRuleVersion {
                files,
                actor,
                reason,
                summary: &summary,
                restored_from,
                expected_current,
            },
        )
        .await
        .map_err(|e| match e {
            ApplyError::Conflict { .. } => Status::aborted(e.to_string()),
            ApplyError::Store(e) => status::store(&e),
        })?;
        let kind = if restored_from.is_some() {
            "rules.rolled_back"
        } else {
            "rules.applied"
        };
        let entry = AuditEntry {
            at: Utc::now(),
            kind,
            event_id: None,
            mesh_object: None,
            connector_object: None,
            rule: None,
            detail: serde_json::json!({
                "actor": actor,
                "reason": reason,
                "version": version.version,
                "digest": version.digest,
                "restored_from": restored_from,
                "summary": summary,
            }),
        };
        audit::append(&mut tx, AUDIT_WRITER, &[entry])
            .await
            .map_err(|e| status::store(&e))?;
        tx.commit().await.map_err(status::sql)?;
        if let Err(error) = self.query.bus.announce_rule_version(version.version).await {
            tracing::warn!(version = version.version, error = %mesh_runtime::error_chain(&error), "cannot announce the new rule version; services switch at their next poll");
        }
        tracing::info!(
            version = version.version,
            actor,
            reason,
            kind,
            "rule version stored"
        );
        Ok(version)
    }
}

/// The request's files as engine sources, refusing empty or duplicate paths.
fn sources(files: &[v1::RuleFile]) -> Result<(Vec<RuleFile>, Vec<SourceFile>), Status> {
    if files.is_empty() {
        return Err(Status::invalid_argument(
            "files is empty; send every file of the rule set (`meshctl rules apply -f DIR`)",
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    for file in files {
        if file.path.trim().is_empty() {
            return Err(Status::invalid_argument("a file has an empty path"));
        }
        if !seen.insert(file.path.as_str()) {
            return Err(Status::invalid_argument(format!(
                "the path {:?} is given twice",
                file.path
            )));
        }
    }
    let stored: Vec<RuleFile> = files
        .iter()
        .map(|f| RuleFile {
            path: f.path.clone(),
            content: f.content.clone(),
        })
        .collect();
    let sources = stored.iter().map(RuleFile::to_source).collect();
    Ok((stored, sources))
}

/// Every problem of a validation as wire diagnostics.
pub fn diagnostics(validation: &Validation) -> Vec<v1::Diagnostic> {
    validation
        .problems
        .iter()
        .map(|p| v1::Diagnostic {
            file: p.file.clone(),
            line: p.position.line,
            column: p.position.column,
            code: p.code.clone(),
            severity: match p.severity {
                Severity::Error => v1::Severity::Error,
                Severity::Warning => v1::Severity::Warning,
            } as i32,
            message: p.message.clone(),
            rule: String::new(),
        })
        .collect()
}

fn summary(counts: BTreeMap<String, u32>) -> v1::RuleSetSummary {
    v1::RuleSetSummary {
        rules_by_kind: counts.into_iter().collect(),
    }
}

fn version_message(version: stored::RuleVersion) -> v1::RuleVersion {
    v1::RuleVersion {
        version: version.version,
        actor: version.actor,
        reason: version.reason,
        applied_at: Some(status::timestamp(version.applied_at)),
        digest: version.digest,
        summary: Some(summary(version.summary)),
        restored_from: version.restored_from,
    }
}

fn wire_files(files: Vec<RuleFile>) -> Vec<v1::RuleFile> {
    files
        .into_iter()
        .map(|f| v1::RuleFile {
            path: f.path,
            content: f.content,
        })
        .collect()
}

async fn get_version(
    query: &Query,
    version: u64,
) -> Result<(stored::RuleVersion, Vec<RuleFile>), Status> {
    stored::get(&query.pool, version)
        .await
        .map_err(|e| status::store(&e))?
        .ok_or_else(|| {
            if version == 0 {
                Status::not_found(
                    "no rule version is stored yet; start a pipeline service or apply one",
                )
            } else {
                Status::not_found(format!("rule version {version} does not exist"))
            }
        })
}

#[tonic::async_trait]
impl RuleAdmin for RuleAdminService {
    async fn validate_rules(
        &self,
        request: Request<v1::ValidateRulesRequest>,
    ) -> Result<Response<v1::ValidateRulesResponse>, Status> {
        let request = request.into_inner();
        let (_, sources) = sources(&request.files)?;
        let validation = validate(&sources);
        Ok(Response::new(v1::ValidateRulesResponse {
            valid: validation.rule_set.is_some(),
            diagnostics: diagnostics(&validation),
            summary: validation.rule_set.as_ref().map(|r| summary(r.summary())),
        }))
    }

    async fn apply_rules(
        &self,
        request: Request<v1::ApplyRulesRequest>,
    ) -> Result<Response<v1::ApplyRulesResponse>, Status> {
        let request = request.into_inner();
        let actor = status::required(&request.actor, "actor")?;
        let (files, sources) = sources(&request.files)?;
        let validation = validate(&sources);
        let diagnostics = diagnostics(&validation);
        let Some(rules) = validation.rule_set else {
            return Ok(Response::new(v1::ApplyRulesResponse {
                applied: false,
                diagnostics,
                version: None,
            }));
        };
        let version = self
            .store(
                &files,
                &rules,
                actor,
                request.reason.trim(),
                None,
                request.expected_current_version,
            )
            .await?;
        Ok(Response::new(v1::ApplyRulesResponse {
            applied: true,
            diagnostics,
            version: Some(version_message(version)),
        }))
    }

    async fn list_rule_versions(
        &self,
        request: Request<v1::ListRuleVersionsRequest>,
    ) -> Result<Response<v1::ListRuleVersionsResponse>, Status> {
        let request = request.into_inner();
        let size = self.query.page_size(request.page_size);
        let before = match page::parse(&request.page_token, "versions", 1)? {
            Some(key) => Some(page::number::<u64>(key[0])?),
            None => None,
        };
        let versions = stored::list(&self.query.pool, before, size.saturating_add(1))
            .await
            .map_err(|e| status::store(&e))?;
        let (versions, next_page_token) =
            page::finish(versions, size, "versions", |v| v.version.to_string());
        let current_version = stored::current_version(&self.query.pool)
            .await
            .map_err(|e| status::store(&e))?
            .unwrap_or(0);
        Ok(Response::new(v1::ListRuleVersionsResponse {
            versions: versions.into_iter().map(version_message).collect(),
            current_version,
            next_page_token,
        }))
    }

    async fn get_rule_version(
        &self,
        request: Request<v1::GetRuleVersionRequest>,
    ) -> Result<Response<v1::GetRuleVersionResponse>, Status> {
        let (version, files) = get_version(&self.query, request.into_inner().version).await?;
        Ok(Response::new(v1::GetRuleVersionResponse {
            version: Some(version_message(version)),
            files: wire_files(files),
        }))
    }

    async fn diff_rule_versions(
        &self,
        request: Request<v1::DiffRuleVersionsRequest>,
    ) -> Result<Response<v1::DiffRuleVersionsResponse>, Status> {
        let request = request.into_inner();
        if request.from_version == 0 {
            return Err(Status::invalid_argument("from_version is required"));
        }
        let (from, before) = get_version(&self.query, request.from_version).await?;
        let (to, after) = get_version(&self.query, request.to_version).await?;
        let (from_label, to_label) = (
            format!("version {}", from.version),
            format!("version {}", to.version),
        );
        let changes = diff::changes(&before, &after)
            .into_iter()
            .map(|c| {
                let change = match (c.before.is_empty(), c.after.is_empty()) {
                    (true, _) => v1::RuleChangeKind::Added,
                    (_, true) => v1::RuleChangeKind::Removed,
                    _ => v1::RuleChangeKind::Modified,
                };
                v1::RuleChange {
                    unified_diff: c.unified(&from_label, &to_label),
                    kind: c.kind,
                    name: c.name,
                    change: change as i32,
                    before: c.before,
                    after: c.after,
                }
            })
            .collect();
        Ok(Response::new(v1::DiffRuleVersionsResponse {
            from_version: from.version,
            to_version: to.version,
            changes,
        }))
    }

    async fn rollback_rules(
        &self,
        request: Request<v1::RollbackRulesRequest>,
    ) -> Result<Response<v1::RollbackRulesResponse>, Status> {
        let request = request.into_inner();
        let actor = status::required(&request.actor, "actor")?;
        if request.to_version == 0 {
            return Err(Status::invalid_argument("to_version is required"));
        }
        let (_, files) = get_version(&self.query, request.to_version).await?;
        let sources: Vec<SourceFile> = files.iter().map(RuleFile::to_source).collect();
        let validation = validate(&sources);
        let Some(rules) = validation.rule_set else {
            let problems: Vec<String> = validation
                .problems
                .iter()
                .map(ToString::to_string)
                .collect();
            return Err(Status::failed_precondition(format!(
                "rule version {} no longer validates with this release:\n{}",
                request.to_version,
                problems.join("\n")
            )));
        };
        let version = self
            .store(
                &files,
                &rules,
                actor,
                request.reason.trim(),
                Some(request.to_version),
                None,
            )
            .await?;
        Ok(Response::new(v1::RollbackRulesResponse {
            version: Some(version_message(version)),
        }))
    }

    async fn preview_impact(
        &self,
        request: Request<v1::PreviewImpactRequest>,
    ) -> Result<Response<v1::PreviewImpactResponse>, Status> {
        let request = request.into_inner();
        let (_, sources) = sources(&request.files)?;
        let validation = validate(&sources);
        let diagnostics = diagnostics(&validation);
        let Some(candidate) = validation.rule_set else {
            return Ok(Response::new(v1::PreviewImpactResponse {
                valid: false,
                diagnostics,
                ..Default::default()
            }));
        };
        let limit = match request.sample_limit {
            0 => 10,
            n => n.min(1000),
        } as usize;
        let mut response = preview::preview(&self.query, &candidate, limit).await?;
        response.valid = true;
        response.diagnostics = diagnostics;
        Ok(Response::new(response))
    }
}
