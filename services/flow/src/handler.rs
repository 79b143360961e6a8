//! The `flow` consumer's batch handler.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing};
use mesh_engine::resolve::changed_event_id;
use mesh_engine::{
    Contribution, Link, MeshObjectState, Override, RuleSet, Trace, TransformError, UpdateInput,
    flow, join_key, update_mesh_object,
};
use mesh_model::{
    AttributeName, Attributes, ConnectorObjectRef, CorrelatedChange, EventId, JoinState,
    MeshObjectChanged, MeshObjectId,
};
use mesh_stage::{RulesHandle, Stage, store_error};
use mesh_store::audit::AuditEntry;
use mesh_store::json::value_to_json;
use mesh_store::pipeline::{self, AttributeIndexChange, StoredLink};
use serde_json::json;
use sqlx::{PgConnection, Postgres, Transaction};

/// Mesh objects per transaction of a rule-change sweep.
const SWEEP_PAGE: i64 = 200;

/// Handles batches of correlated changes.
#[derive(Debug)]
pub struct FlowHandler {
    rules: RulesHandle,
    stage: Stage,
}

/// What [`FlowHandler::resolve_again`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAgain {
    /// How many mesh objects changed.
    pub changed: usize,
    /// Each mesh object's version afterwards.
    pub versions: HashMap<MeshObjectId, u64>,
    /// The sequence of the last audit entry written (0: none).
    pub audit_sequence: u64,
}

/// One mesh object while a batch works on it.
struct Working {
    state: MeshObjectState,
    links: BTreeMap<ConnectorObjectRef, StoredLink>,
    contributions: BTreeMap<ConnectorObjectRef, Vec<Contribution>>,
    overrides: BTreeMap<AttributeName, Override>,
    dirty_links: BTreeSet<ConnectorObjectRef>,
    /// Join-target attributes whose value changed: folded name -> join key now.
    index: BTreeMap<String, Option<String>>,
    touched: bool,
}

impl FlowHandler {
    /// A handler applying `rules` as `stage`.
    pub fn new(rules: RulesHandle, stage: Stage) -> Self {
        Self { rules, stage }
    }

    /// The stage it commits through.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    fn transform_errors(
        &self,
        errors: Vec<TransformError>,
        mesh_object: MeshObjectId,
        at: DateTime<Utc>,
        entries: &mut Vec<AuditEntry>,
    ) {
        for error in errors {
            self.stage.metrics().transform_error(&error.rule);
            entries.push(AuditEntry {
                at,
                kind: "transform-error",
                event_id: Some(error.event.as_uuid()),
                mesh_object: Some(mesh_object.as_uuid()),
                connector_object: None,
                rule: Some(error.rule.clone()),
                detail: json!({
                    "subject": error.subject,
                    "attribute": error.attribute.as_ref().map(AttributeName::as_str),
                    "code": error.code,
                    "message": error.message,
                }),
            });
        }
    }

    /// Loads and locks mesh objects `affected` with their links and overrides, and computes
    /// each linked connector object's contributions under `rules`.
    async fn load_working(
        &self,
        tx: &mut PgConnection,
        rules: &RuleSet,
        affected: &BTreeSet<MeshObjectId>,
    ) -> Result<HashMap<MeshObjectId, Working>, HandlerError> {
        let mut states = pipeline::lock_mesh_objects(&mut *tx, affected)
            .await
            .map_err(store_error)?;
        let mut links = pipeline::links(&mut *tx, affected)
            .await
            .map_err(store_error)?;
        let mut overrides = pipeline::overrides(&mut *tx, affected)
            .await
            .map_err(store_error)?;
        let mut working: HashMap<MeshObjectId, Working> = HashMap::with_capacity(states.len());
        for id in affected {
            let Some(state) = states.remove(id) else {
                return Err(HandlerError::failed(format!(
                    "mesh object {id} is not in the store (correlation creates it before it \
                     publishes a join)"
                )));
            };
            let links = links.remove(id).unwrap_or_default();
            let contributions = links
                .iter()
                .filter(|(_, link)| link.linked)
                .map(|(object, link)| {
                    let outcome = flow(
                        rules,
                        object,
                        &link.attributes,
                        *id,
                        link.event,
                        link.event_time,
                        Trace::disabled(),
                    );
                    (object.clone(), outcome.contributions)
                })
                .collect();
            working.insert(
                *id,
                Working {
                    state,
                    links,
                    contributions,
                    overrides: overrides.remove(id).unwrap_or_default(),
                    dirty_links: BTreeSet::new(),
                    index: BTreeMap::new(),
                    touched: false,
                },
            );
        }

        Ok(working)
    }

    /// Writes what the batch changed (states, join-target index, links), audits and commits.
    async fn save_working(
        &self,
        mut tx: Transaction<'static, Postgres>,
        rules: &RuleSet,
        working: &HashMap<MeshObjectId, Working>,
        mut entries: Vec<AuditEntry>,
        outgoing: Vec<Outgoing>,
    ) -> Result<u64, HandlerError> {
        let touched: Vec<&Working> = working.values().filter(|w| w.touched).collect();
        let states: Vec<&MeshObjectState> = touched.iter().map(|w| &w.state).collect();
        pipeline::save_mesh_objects(&mut tx, &states, rules.version())
            .await
            .map_err(store_error)?;
        let index: Vec<AttributeIndexChange> = touched
            .iter()
            .flat_map(|w| {
                w.index.iter().map(|(name, key)| AttributeIndexChange {
                    mesh_object: w.state.id,
                    object_type: w.state.object_type.clone(),
                    name: name.clone(),
                    key: key.clone(),
                })
            })
            .collect();
        pipeline::index_mesh_attributes(&mut tx, &index)
            .await
            .map_err(store_error)?;
        let saved_links: Vec<(MeshObjectId, &ConnectorObjectRef, &StoredLink)> = touched
            .iter()
            .flat_map(|w| {
                w.dirty_links
                    .iter()
                    .filter_map(|o| w.links.get(o).map(|l| (w.state.id, o, l)))
            })
            .collect();
        pipeline::save_links(&mut tx, &saved_links)
            .await
            .map_err(store_error)?;
        mesh_stage::stamp_rule_version(&mut entries, rules.version());
        self.stage.commit_audited(tx, &entries, outgoing).await
    }

    /// Resolves every mesh object again under `rules`, a rule version that just came into
    /// force, a page at a time; returns how many changed. Each change is published as flow
    /// publishes any other, with an id derived from the version and the object, so two
    /// replicas sweeping at once publish each change once (and the second finds nothing left
    /// to change under the row locks).
    pub async fn sweep(&self, rules: &RuleSet) -> Result<usize, HandlerError> {
        let cause = EventId::derive("rules", &rules.version().to_be_bytes());
        let mut after = None;
        let mut changed = 0;
        loop {
            let ids = pipeline::mesh_object_ids_after(self.stage.pool(), after, SWEEP_PAGE)
                .await
                .map_err(store_error)?;
            let Some(last) = ids.last() else {
                return Ok(changed);
            };
            after = Some(*last);
            let tx = self.stage.begin_without_inbox().await?;
            let ids: BTreeSet<MeshObjectId> = ids.into_iter().collect();
            changed += self
                .resolve_again(tx, rules, &ids, cause, Vec::new())
                .await?
                .changed;
        }
    }

    /// Resolves mesh objects `ids` again under `rules` inside `tx`, as `tx` sees their links
    /// and overrides (an operator's override written in it, say), then audits (`entries`
    /// first), commits and publishes the changes as caused by `cause`.
    pub async fn resolve_again(
        &self,
        mut tx: Transaction<'static, Postgres>,
        rules: &RuleSet,
        ids: &BTreeSet<MeshObjectId>,
        cause: EventId,
        mut entries: Vec<AuditEntry>,
    ) -> Result<ResolvedAgain, HandlerError> {
        let mut working = self.load_working(&mut tx, rules, ids).await?;
        let now = Utc::now();
        let mut outgoing = Vec::new();
        for w in working.values_mut() {
            if let Some(change) = self.recompute(rules, w, cause, cause, now, &mut entries) {
                let subject = format!("mesh.object.{}", change.object_type);
                let msg_id = change.event_id.to_string();
                outgoing.push(Outgoing::event(subject, msg_id, change));
            }
        }
        let changed = outgoing.len();
        let versions = working
            .iter()
            .map(|(id, w)| (*id, w.state.version))
            .collect();
        let audit_sequence = self
            .save_working(tx, rules, &working, entries, outgoing)
            .await?;
        Ok(ResolvedAgain {
            changed,
            versions,
            audit_sequence,
        })
    }

    /// Resolves `working` again after its links changed; returns the change to publish.
    fn recompute(
        &self,
        rules: &RuleSet,
        working: &mut Working,
        cause: EventId,
        message: EventId,
        now: DateTime<Utc>,
        entries: &mut Vec<AuditEntry>,
    ) -> Option<MeshObjectChanged> {
        let contributions: Vec<&Contribution> = working.contributions.values().flatten().collect();
        let links: Vec<Link<'_>> = working
            .links
            .iter()
            .filter(|(_, link)| link.linked)
            .map(|(object, link)| Link {
                object,
                attributes: &link.attributes,
            })
            .collect();
        let update = update_mesh_object(
            rules,
            &UpdateInput {
                before: &working.state,
                contributions: &contributions,
                overrides: &working.overrides,
                links: &links,
                cause,
            },
            now,
            Trace::disabled(),
        );
        let id = working.state.id;
        self.transform_errors(update.transform_errors, id, now, entries);
        working.state = update.after;
        working.touched = true;
        let Some(mut changed) = update.changed else {
            self.stage.metrics().outcome("unchanged");
            return None;
        };
        self.stage.metrics().outcome("changed");
        // One message per correlated change and mesh object: a retried disconnector shares its
        // cause with the change that let it join.
        changed.event_id = changed_event_id(message, id);
        let mut values = Vec::with_capacity(changed.changes.len());
        for change in &changed.changes {
            let folded = change.name.key();
            if rules.is_join_target(&changed.object_type, folded) {
                working
                    .index
                    .insert(folded.to_owned(), join_key(&change.new));
            }
            let winner = working.state.lineage.get(&change.name);
            values.push(json!({
                "attribute": change.name.as_str(),
                "old": value_to_json(&change.old),
                "new": value_to_json(&change.new),
                "connectorObject": winner
                    .and_then(|l| l.source.connector_object())
                    .map(ToString::to_string),
                "rule": winner.and_then(|l| l.source.rule()).map(ToString::to_string),
                "confidence": winner.map(|l| l.confidence),
            }));
        }
        // One row per change of the mesh object, listing every winning-value change with its
        // source, rule and confidence.
        entries.push(AuditEntry {
            at: now,
            kind: "values",
            event_id: Some(cause.as_uuid()),
            mesh_object: Some(id.as_uuid()),
            connector_object: None,
            rule: None,
            detail: json!({ "version": changed.version, "changes": values }),
        });
        if let Some(previous) = changed.previous_lifecycle {
            entries.push(AuditEntry {
                at: now,
                kind: "lifecycle",
                event_id: Some(cause.as_uuid()),
                mesh_object: Some(id.as_uuid()),
                connector_object: None,
                rule: None,
                detail: json!({
                    "from": previous.as_str(),
                    "to": changed.lifecycle.as_str(),
                    "version": changed.version,
                }),
            });
        }
        Some(changed)
    }
}

impl BatchHandler for FlowHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        // One version per batch: every outcome of the batch names it.
        let rules = self.rules.current();
        let mut items = Vec::with_capacity(batch.len());
        for delivery in batch {
            let change: CorrelatedChange = delivery.decode_event()?;
            items.push((delivery, change));
        }

        let (mut tx, fresh) = self.stage.begin(batch).await?;
        items.retain(|(delivery, _)| fresh.contains(delivery.msg_id().as_ref()));

        let affected: BTreeSet<MeshObjectId> = items
            .iter()
            .flat_map(|(_, c)| {
                let joined = match &c.join {
                    JoinState::Joined { mesh_object, .. } => Some(*mesh_object),
                    _ => None,
                };
                joined.into_iter().chain(c.previous_mesh_object)
            })
            .collect();
        let mut working = self.load_working(&mut tx, &rules, &affected).await?;

        let mut entries = Vec::new();
        let mut outgoing = Vec::new();
        for (delivery, correlated) in items {
            let change = &correlated.change;
            let object = &change.object;
            let sequence = correlated.source_sequence;
            let mut recompute = Vec::with_capacity(2);
            if let Some(previous) = correlated.previous_mesh_object
                && let Some(w) = working.get_mut(&previous)
                && !is_stale(w, object, sequence)
            {
                w.links.insert(
                    object.clone(),
                    StoredLink {
                        linked: false,
                        attributes: Attributes::new(),
                        event: change.event_id,
                        event_time: change.source_time,
                        source_sequence: sequence,
                    },
                );
                w.contributions.remove(object);
                w.dirty_links.insert(object.clone());
                recompute.push(previous);
            }
            if let JoinState::Joined { mesh_object, .. } = &correlated.join
                && let Some(w) = working.get_mut(mesh_object)
            {
                if is_stale(w, object, sequence) {
                    self.stage.metrics().events("stale", 1);
                } else {
                    let outcome = flow(
                        &rules,
                        object,
                        &change.attributes,
                        *mesh_object,
                        change.event_id,
                        change.source_time,
                        Trace::disabled(),
                    );
                    self.transform_errors(
                        outcome.transform_errors,
                        *mesh_object,
                        change.source_time,
                        &mut entries,
                    );
                    w.links.insert(
                        object.clone(),
                        StoredLink {
                            linked: true,
                            attributes: change.attributes.clone(),
                            event: change.event_id,
                            event_time: change.source_time,
                            source_sequence: sequence,
                        },
                    );
                    w.contributions
                        .insert(object.clone(), outcome.contributions);
                    w.dirty_links.insert(object.clone());
                    recompute.push(*mesh_object);
                }
            }
            for id in recompute {
                let Some(w) = working.get_mut(&id) else {
                    continue;
                };
                if let Some(changed) = self.recompute(
                    &rules,
                    w,
                    change.event_id,
                    correlated.event_id,
                    change.source_time,
                    &mut entries,
                ) {
                    let subject = format!("mesh.object.{}", changed.object_type);
                    let msg_id = changed.event_id.to_string();
                    outgoing.push(
                        delivery
                            .span()
                            .in_scope(|| Outgoing::event(subject, msg_id, changed)),
                    );
                }
            }
        }

        self.save_working(tx, &rules, &working, entries, outgoing)
            .await
            .map(|_| ())
    }
}

/// A change older than the one the link holds was overtaken (a late redelivery).
fn is_stale(working: &Working, object: &ConnectorObjectRef, sequence: u64) -> bool {
    working
        .links
        .get(object)
        .is_some_and(|link| sequence < link.source_sequence)
}
