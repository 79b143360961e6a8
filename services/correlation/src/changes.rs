//! The `correlation` consumer: change events -> correlated changes.

use std::collections::{BTreeSet, HashMap};

use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing};
use mesh_engine::{CorrelateInput, RuleSet, Trace, correlate, join_queries};
use mesh_model::{
    Attributes, ChangeEvent, ChangeOperation, ConnectorObjectRef, CorrelatedChange, JoinState,
};
use mesh_stage::{RulesHandle, Stage, store_error};
use mesh_store::pipeline::{self, ConnectorObjectWrite, StoredConnectorObject};

use crate::{STAGE, audit_outcome, join_values, joined_subject};

/// Handles batches of change events.
#[derive(Debug)]
pub struct ChangeHandler {
    rules: RulesHandle,
    stage: Stage,
}

impl ChangeHandler {
    /// A handler applying `rules` as `stage`.
    pub fn new(rules: RulesHandle, stage: Stage) -> Self {
        Self { rules, stage }
    }

    /// Refuses an event the rules cannot place: it would fail on every delivery.
    fn check(rules: &RuleSet, event: &ChangeEvent) -> Result<(), HandlerError> {
        let object = &event.object;
        let Some(connector) = rules
            .connector(&object.connector)
            .filter(|c| c.kind.imports())
        else {
            return Err(HandlerError::poison(format!(
                "connector `{}` is not defined as an importing connector in rule version {}",
                object.connector,
                rules.version()
            )));
        };
        if !connector.carries(&object.object_type) {
            return Err(HandlerError::poison(format!(
                "connector `{}` does not carry object type `{}`",
                object.connector, object.object_type
            )));
        }
        Ok(())
    }
}

impl BatchHandler for ChangeHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        // One version per batch: every outcome of the batch names it.
        let rules = self.rules.current();
        let mut events = Vec::with_capacity(batch.len());
        for delivery in batch {
            let event: ChangeEvent = delivery.decode_event()?;
            Self::check(&rules, &event)?;
            events.push((delivery, event));
        }

        let (mut tx, fresh) = self.stage.begin(batch).await?;
        events.retain(|(delivery, _)| fresh.contains(delivery.msg_id().as_ref()));

        let objects: BTreeSet<ConnectorObjectRef> =
            events.iter().map(|(_, e)| e.object.clone()).collect();
        let mut current = pipeline::lock_connector_objects(&mut tx, &objects)
            .await
            .map_err(store_error)?;
        let queries: Vec<_> = events
            .iter()
            .filter(|(_, e)| {
                e.operation == ChangeOperation::Upsert
                    && !matches!(
                        current.get(&e.object).map(|c| &c.join),
                        Some(JoinState::Joined { .. })
                    )
            })
            .flat_map(|(_, e)| join_queries(&rules, &e.object, &e.attributes))
            .collect();
        let mut lookups = pipeline::join_lookups(&mut tx, &queries)
            .await
            .map_err(store_error)?;
        let unjoined_before = unjoined(&current);

        let mut touched: BTreeSet<ConnectorObjectRef> = BTreeSet::new();
        let mut new_mesh_objects = Vec::new();
        let mut entries = Vec::new();
        let mut outgoing = Vec::new();
        for (delivery, event) in events {
            let sequence = delivery.stream_sequence();
            let before = current.get(&event.object);
            if before.is_some_and(|c| sequence <= c.last_sequence) {
                // Overtaken by a newer change of the same object (a late redelivery).
                self.stage.metrics().events("stale", 1);
                continue;
            }
            let before_join = before.map(|c| c.join.clone());
            let correlation = correlate(
                &rules,
                &CorrelateInput {
                    object: &event.object,
                    operation: event.operation,
                    attributes: &event.attributes,
                    current: before_join.as_ref(),
                },
                &lookups,
                Trace::disabled(),
            );
            note_outcome(
                &self.stage,
                &correlation,
                &mut lookups,
                &mut new_mesh_objects,
            );
            entries.extend(audit_outcome(
                &event.object,
                before_join.as_ref(),
                &correlation,
                event.event_id,
                event.source_time,
                false,
            ));
            let flows = matches!(correlation.outcome, JoinState::Joined { .. })
                || correlation.previous_mesh_object.is_some();
            let attributes = if correlation.outcome == JoinState::Deleted {
                Attributes::new()
            } else {
                event.attributes.clone()
            };
            current.insert(
                event.object.clone(),
                StoredConnectorObject {
                    attributes,
                    join: correlation.outcome.clone(),
                    last_event: event.event_id,
                    last_event_time: event.source_time,
                    last_sequence: sequence,
                },
            );
            touched.insert(event.object.clone());
            if flows {
                let subject = joined_subject(&event.object.connector);
                let correlated = CorrelatedChange {
                    event_id: event.event_id.derive_for_stage(STAGE),
                    change: event,
                    join: correlation.outcome,
                    previous_mesh_object: correlation.previous_mesh_object,
                    rule_version: rules.version(),
                    source_sequence: sequence,
                };
                let msg_id = correlated.event_id.to_string();
                outgoing.push(
                    delivery
                        .span()
                        .in_scope(|| Outgoing::event(subject, msg_id, correlated)),
                );
            }
        }

        save(&mut tx, &rules, &current, &touched, &unjoined_before).await?;
        pipeline::insert_mesh_objects(&mut tx, &new_mesh_objects)
            .await
            .map_err(store_error)?;
        mesh_stage::stamp_rule_version(&mut entries, rules.version());
        self.stage.commit(tx, &entries, outgoing).await
    }
}

/// Writes the final state of the `touched` connector objects and their re-join index rows;
/// `unjoined_before` are the objects that may have such rows from before.
pub(crate) async fn save(
    tx: &mut sqlx::PgConnection,
    rules: &RuleSet,
    current: &HashMap<ConnectorObjectRef, StoredConnectorObject>,
    touched: &BTreeSet<ConnectorObjectRef>,
    unjoined_before: &BTreeSet<ConnectorObjectRef>,
) -> Result<(), HandlerError> {
    let writes: Vec<ConnectorObjectWrite<'_>> = touched
        .iter()
        .filter_map(|object| {
            current.get(object).map(|stored| ConnectorObjectWrite {
                object,
                stored,
                rule_version: rules.version(),
            })
        })
        .collect();
    pipeline::save_connector_objects(tx, &writes)
        .await
        .map_err(store_error)?;
    let values: Vec<_> = writes
        .iter()
        .filter(|w| {
            matches!(
                w.stored.join,
                JoinState::Disconnector | JoinState::Ambiguous { .. }
            )
        })
        .flat_map(|w| join_values(rules, w.object, &w.stored.attributes))
        .collect();
    let cleared: BTreeSet<ConnectorObjectRef> =
        unjoined_before.intersection(touched).cloned().collect();
    pipeline::replace_join_values(tx, &cleared, &values)
        .await
        .map_err(store_error)
}

/// The connector objects of `current` that are disconnectors or ambiguous.
pub(crate) fn unjoined(
    current: &HashMap<ConnectorObjectRef, StoredConnectorObject>,
) -> BTreeSet<ConnectorObjectRef> {
    current
        .iter()
        .filter(|(_, c)| {
            matches!(
                c.join,
                JoinState::Disconnector | JoinState::Ambiguous { .. }
            )
        })
        .map(|(o, _)| o.clone())
        .collect()
}

/// Counts an outcome and, when it projected a mesh object, remembers it: later objects of the
/// batch join it by its anchor, and the batch inserts it.
pub(crate) fn note_outcome(
    stage: &Stage,
    correlation: &mesh_engine::Correlation,
    lookups: &mut mesh_engine::JoinLookups,
    new_mesh_objects: &mut Vec<mesh_engine::NewMeshObject>,
) {
    stage.metrics().outcome(outcome_name(&correlation.outcome));
    if let Some(new) = &correlation.new_mesh_object {
        lookups.insert_anchor(new.object_type.clone(), new.anchor.clone(), new.id);
        new_mesh_objects.push(new.clone());
    }
}

/// The metric label of a join outcome.
pub(crate) fn outcome_name(outcome: &JoinState) -> &'static str {
    match outcome {
        JoinState::Joined { method, .. } => match method {
            mesh_model::JoinMethod::Matched => "matched",
            mesh_model::JoinMethod::Projected => "projected",
            mesh_model::JoinMethod::Existing => "existing",
            mesh_model::JoinMethod::Manual => "manual",
        },
        JoinState::Disconnector => "disconnector",
        JoinState::Ambiguous { .. } => "ambiguous",
        JoinState::Deleted => "deleted",
    }
}
