//! The `correlation-rejoin` consumer: mesh object changes -> retried disconnectors.
//!
//! A disconnector waits for a mesh attribute its join rules target to take its value; an
//! ambiguous object waits for its candidates to change. When a MeshObjectChanged names such an
//! attribute (or is the first version of an anchored mesh object), the waiting objects are
//! correlated again with their stored raw attributes. One that joins now is published as a
//! correlated change whose cause is the mesh object change's cause, at that change's time, so
//! lineage reads as the simulator's.

use std::collections::{BTreeSet, HashMap};

use mesh_bus::{BatchHandler, Delivery, HandlerError, Outgoing};
use mesh_engine::{CorrelateInput, Trace, correlate, join_queries, retry_queries};
use mesh_model::{
    ChangeEvent, ChangeOperation, ConnectorObjectRef, CorrelatedChange, EventId, JoinState,
    MeshObjectChanged, MeshObjectId,
};
use mesh_stage::{RulesHandle, Stage, store_error};
use mesh_store::pipeline;

use crate::REJOIN_STAGE;
use crate::changes::{note_outcome, save, unjoined};
use crate::{audit_outcome, joined_subject};

/// Handles batches of mesh object changes.
#[derive(Debug)]
pub struct RejoinHandler {
    rules: RulesHandle,
    stage: Stage,
}

impl RejoinHandler {
    /// A handler applying `rules` as `stage`.
    pub fn new(rules: RulesHandle, stage: Stage) -> Self {
        Self { rules, stage }
    }
}

impl BatchHandler for RejoinHandler {
    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        // One version per batch: every outcome of the batch names it.
        let rules = self.rules.current();
        let mut changes = Vec::with_capacity(batch.len());
        for delivery in batch {
            let change: MeshObjectChanged = delivery.decode_event()?;
            changes.push((delivery, change));
        }

        // No inbox here: a retry is idempotent by itself. A repeated delivery finds the objects
        // it joined joined, and correlates the others to the outcome they already have, which
        // writes nothing. So the common batch, which finds no waiting object, is two reads.
        self.stage.metrics().events("in", changes.len());
        let mut conn = self
            .stage
            .pool()
            .acquire()
            .await
            .map_err(HandlerError::transient)?;

        // A first version may make its anchor joinable.
        let new: Vec<MeshObjectId> = changes
            .iter()
            .filter(|(_, c)| c.version == 1)
            .map(|(_, c)| c.mesh_object)
            .collect();
        let anchors = if new.is_empty() {
            HashMap::new()
        } else {
            pipeline::anchors(&mut conn, &new)
                .await
                .map_err(store_error)?
        };
        let mut queries = Vec::new();
        let mut query_cause = Vec::new();
        for (index, (_, change)) in changes.iter().enumerate() {
            let anchor = (change.version == 1)
                .then(|| anchors.get(&change.mesh_object))
                .flatten();
            for query in retry_queries(
                &rules,
                &change.object_type,
                &change.changes,
                anchor.map(String::as_str),
            ) {
                queries.push(query);
                query_cause.push(index);
            }
        }
        let found = pipeline::find_unjoined(&mut conn, &queries)
            .await
            .map_err(store_error)?;
        drop(conn);
        if found.is_empty() {
            return Ok(());
        }

        // The objects are locked and their state read again: only those still waiting retry.
        let mut tx = self.stage.begin_without_inbox().await?;
        let objects: BTreeSet<ConnectorObjectRef> = found.iter().map(|(o, _)| o.clone()).collect();
        let mut current = pipeline::lock_connector_objects(&mut tx, &objects)
            .await
            .map_err(store_error)?;
        let searches: Vec<_> = objects
            .iter()
            .filter_map(|o| current.get(o).map(|c| (o, c)))
            .flat_map(|(o, c)| join_queries(&rules, o, &c.attributes))
            .collect();
        let mut lookups = pipeline::join_lookups(&mut tx, &searches)
            .await
            .map_err(store_error)?;
        let unjoined_before = unjoined(&current);

        let mut touched = BTreeSet::new();
        let mut new_mesh_objects = Vec::new();
        let mut entries = Vec::new();
        let mut outgoing = Vec::new();
        for (object, query) in found {
            let Some(stored) = current.get(&object) else {
                continue;
            };
            if !matches!(
                stored.join,
                JoinState::Disconnector | JoinState::Ambiguous { .. }
            ) {
                continue;
            }
            let Some((delivery, trigger)) =
                query_cause.get(query).and_then(|index| changes.get(*index))
            else {
                continue;
            };
            let correlation = correlate(
                &rules,
                &CorrelateInput {
                    object: &object,
                    operation: ChangeOperation::Upsert,
                    attributes: &stored.attributes,
                    current: Some(&stored.join),
                },
                &lookups,
                Trace::disabled(),
            );
            if correlation.outcome == stored.join {
                continue;
            }
            self.stage.metrics().outcome("rejoined");
            note_outcome(
                &self.stage,
                &correlation,
                &mut lookups,
                &mut new_mesh_objects,
            );
            entries.extend(audit_outcome(
                &object,
                Some(&stored.join),
                &correlation,
                trigger.cause,
                trigger.occurred_at,
                true,
            ));
            let mut updated = stored.clone();
            updated.join = correlation.outcome.clone();
            if let JoinState::Joined { .. } = &correlation.outcome {
                let subject = joined_subject(&object.connector);
                let correlated = CorrelatedChange {
                    event_id: rejoin_event_id(trigger.event_id, &object),
                    change: ChangeEvent {
                        event_id: trigger.cause,
                        object: object.clone(),
                        operation: ChangeOperation::Upsert,
                        attributes: stored.attributes.clone(),
                        source_time: trigger.occurred_at,
                    },
                    join: correlation.outcome.clone(),
                    previous_mesh_object: None,
                    rule_version: rules.version(),
                    source_sequence: stored.last_sequence,
                };
                let msg_id = correlated.event_id.to_string();
                outgoing.push(
                    delivery
                        .span()
                        .in_scope(|| Outgoing::event(subject, msg_id, correlated)),
                );
            }
            current.insert(object.clone(), updated);
            touched.insert(object);
        }

        save(&mut tx, &rules, &current, &touched, &unjoined_before).await?;
        pipeline::insert_mesh_objects(&mut tx, &new_mesh_objects)
            .await
            .map_err(store_error)?;
        self.stage.commit(tx, &entries, outgoing).await
    }
}

/// The id of the correlated change a mesh object change's retry produced for `object`.
fn rejoin_event_id(trigger: EventId, object: &ConnectorObjectRef) -> EventId {
    let mut name = trigger.as_uuid().as_bytes().to_vec();
    name.extend_from_slice(object.to_string().as_bytes());
    EventId::derive(REJOIN_STAGE, &name)
}
