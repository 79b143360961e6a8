//! PreviewImpact: a candidate rule set against the current state, without writing.
//!
//! The preview computes, over one consistent snapshot (a read-only REPEATABLE READ
//! transaction), exactly what the services do when a version comes into force: flow resolves
//! every mesh object again from its stored links (`mesh_engine::resolve_from_sources`), and
//! projection projects the result against what each target holds (`mesh_engine::project`).
//! So the counts are the commands applying the candidate issues, if nothing else changes in
//! between: creates and enables enter a scope, disables and deletes are deprovisions (and
//! leave it), updates carry only what changed. Commands the current state would issue under
//! the current rules too (a projection still catching up) are counted as well: they are what
//! applying issues. Each target's deprovisions are compared with its mass-deletion guard
//! (its own `massDeletionGuard` or the projection defaults).

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use mesh_engine::{ProjectInput, RuleSet, StoredSource, Trace, project, resolve_from_sources};
use mesh_model::{AttributeChange, ConnectorId, EventId, ExportOperation, MeshObjectId, Value};
use mesh_proto::v1;
use mesh_store::{pipeline, projection};
use tonic::Status;

use crate::{Query, status};

/// Mesh objects read per query.
const PAGE: i64 = 500;

#[derive(Default)]
struct Target {
    entering: u64,
    leaving: u64,
    updated: u64,
    deprovisions: u64,
    samples: Vec<v1::ImpactSample>,
    per_kind: BTreeMap<i32, usize>,
}

impl Target {
    fn sample(&mut self, limit: usize, sample: v1::ImpactSample) {
        let n = self.per_kind.entry(sample.kind).or_default();
        if *n < limit {
            *n += 1;
            self.samples.push(sample);
        }
    }
}

fn changes_to_pb(changes: &[AttributeChange]) -> Vec<v1::AttributeChange> {
    changes.iter().cloned().map(Into::into).collect()
}

/// Computes the candidate's impact (see the module docs).
pub async fn preview(
    query: &Query,
    candidate: &RuleSet,
    sample_limit: usize,
) -> Result<v1::PreviewImpactResponse, Status> {
    let base_version = query.rules.current().version();
    let guards = ::projection::ProjectionSettings::new(&query.mesh.projection, candidate)
        .map_err(|e| Status::invalid_argument(mesh_runtime::error_chain(&e)))?;
    let mut tx = query.pool.begin().await.map_err(status::sql)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(status::sql)?;

    let cause = EventId::derive("preview", &base_version.to_be_bytes());
    let now = Utc::now();
    let mut response = v1::PreviewImpactResponse {
        base_version,
        ..Default::default()
    };
    let mut targets: BTreeMap<ConnectorId, Target> = candidate
        .projection_rules()
        .iter()
        .map(|r| (r.target.clone(), Target::default()))
        .collect();
    let mut after = None;
    loop {
        let ids = pipeline::mesh_object_ids_after(&mut *tx, after, PAGE)
            .await
            .map_err(|e| status::store(&e))?;
        let Some(last) = ids.last() else {
            break;
        };
        after = Some(*last);
        let ids: BTreeSet<MeshObjectId> = ids.into_iter().collect();
        let mut states = pipeline::read_mesh_objects(&mut tx, &ids)
            .await
            .map_err(|e| status::store(&e))?;
        let mut links = pipeline::links(&mut tx, &ids)
            .await
            .map_err(|e| status::store(&e))?;
        let mut overrides = pipeline::overrides(&mut tx, &ids)
            .await
            .map_err(|e| status::store(&e))?;
        let mut held = projection::targets(&mut tx, &ids)
            .await
            .map_err(|e| status::store(&e))?;
        for id in &ids {
            let Some(state) = states.remove(id) else {
                continue;
            };
            response.objects_evaluated += 1;
            let links = links.remove(id).unwrap_or_default();
            let sources: Vec<StoredSource<'_>> = links
                .iter()
                .filter(|(_, l)| l.linked)
                .map(|(object, l)| StoredSource {
                    object,
                    attributes: &l.attributes,
                    event: l.event,
                    event_time: l.event_time,
                })
                .collect();
            let overrides = overrides.remove(id).unwrap_or_default();
            let resolved =
                resolve_from_sources(candidate, &state, &sources, &overrides, cause, now);
            let after_state = resolved.update.after;
            if let Some(changed) = &resolved.update.changed
                && !changed.changes.is_empty()
            {
                response.objects_changed += 1;
                for change in &changed.changes {
                    response.attributes_changed += 1;
                    *response
                        .attributes_changed_by_name
                        .entry(change.name.as_str().to_owned())
                        .or_default() += 1;
                }
                if response.samples.len() < sample_limit {
                    response.samples.push(v1::ImpactSample {
                        kind: v1::ImpactKind::AttributesChanged as i32,
                        mesh_object_id: id.to_string(),
                        object_type: state.object_type.to_string(),
                        changes: changes_to_pb(&changed.changes),
                        ..Default::default()
                    });
                }
            }
            let held = held.remove(id).unwrap_or_default();
            let projected = project(
                candidate,
                &ProjectInput {
                    mesh_object: *id,
                    object_type: &after_state.object_type,
                    version: after_state.version,
                    lifecycle: after_state.lifecycle,
                    attributes: &after_state.attributes,
                    targets: &held,
                    cause,
                },
                now,
                Trace::disabled(),
            );
            let mut left: BTreeSet<&ConnectorId> = BTreeSet::new();
            for command in &projected.commands {
                let target = targets.entry(command.target.clone()).or_default();
                let kind = match command.operation {
                    ExportOperation::Create | ExportOperation::Enable => {
                        target.entering += 1;
                        v1::ImpactKind::EntersScope
                    }
                    ExportOperation::Update => {
                        target.updated += 1;
                        v1::ImpactKind::Updated
                    }
                    ExportOperation::Disable | ExportOperation::Delete => {
                        target.deprovisions += 1;
                        if left.insert(&command.target) {
                            target.leaving += 1;
                        }
                        v1::ImpactKind::LeavesScope
                    }
                };
                let changes = if command.operation == ExportOperation::Update {
                    let before = held.get(&command.target).map(exported_attributes);
                    command
                        .attributes
                        .iter()
                        .map(|(name, new)| AttributeChange {
                            name: name.clone(),
                            old: before
                                .and_then(|b| b.get(name).cloned())
                                .unwrap_or(Value::Null),
                            new: new.clone(),
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                target.sample(
                    sample_limit,
                    v1::ImpactSample {
                        kind: kind as i32,
                        mesh_object_id: id.to_string(),
                        object_type: after_state.object_type.to_string(),
                        target_connector: command.target.to_string(),
                        operation: v1::ExportOperation::from(command.operation) as i32,
                        changes: changes_to_pb(&changes),
                        rule: command.rule.to_string(),
                    },
                );
            }
        }
    }
    tx.rollback().await.map_err(status::sql)?;

    for (name, target) in targets {
        let guard = guards.guard(&name);
        let threshold = u64::from(guard.threshold);
        let exceeded = target.deprovisions > threshold;
        response.mass_deletion_threshold_exceeded |= exceeded;
        response.targets.push(v1::TargetImpact {
            target_connector: name.to_string(),
            entering_scope: target.entering,
            leaving_scope: target.leaving,
            updated: target.updated,
            deprovisions: target.deprovisions,
            mass_deletion_threshold: threshold,
            threshold_exceeded: exceeded,
            samples: target.samples,
        });
    }
    Ok(response)
}

fn exported_attributes(state: &mesh_engine::TargetState) -> &mesh_model::Attributes {
    match state {
        mesh_engine::TargetState::Provisioned { attributes, .. }
        | mesh_engine::TargetState::Disabled { attributes, .. } => attributes,
    }
}
