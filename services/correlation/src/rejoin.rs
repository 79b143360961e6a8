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
use mesh_engine::{CorrelateInput, RuleSet, Trace, correlate, join_queries, retry_queries};
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

        let found: Vec<(ConnectorObjectRef, Trigger)> = found
            .into_iter()
            .filter_map(|(object, query)| {
                let (delivery, change) = query_cause.get(query).and_then(|i| changes.get(*i))?;
                Some((
                    object,
                    Trigger {
                        cause: change.cause,
                        at: change.occurred_at,
                        message: change.event_id,
                        span: Some(delivery.span().clone()),
                    },
                ))
            })
            .collect();
        self.retry(&rules, found).await.map(|_| ())
    }
}

/// Why waiting objects are tried again: a mesh object change, or a new rule version.
struct Trigger {
    /// The cause the joins name (the change's cause; a rule version's own event).
    cause: EventId,
    /// Its time.
    at: chrono::DateTime<chrono::Utc>,
    /// The message the retry's ids derive from.
    message: EventId,
    /// The consume span to publish in, for a delivery.
    span: Option<tracing::Span>,
}

impl RejoinHandler {
    /// Correlates the `found` objects again (those still waiting, locked and read afresh);
    /// commits and publishes the joins. Returns how many changed.
    async fn retry(
        &self,
        rules: &RuleSet,
        found: Vec<(ConnectorObjectRef, Trigger)>,
    ) -> Result<usize, HandlerError> {
        // The objects are locked and their state read again: only those still waiting retry.
        let mut tx = self.stage.begin_without_inbox().await?;
        let objects: BTreeSet<ConnectorObjectRef> = found.iter().map(|(o, _)| o.clone()).collect();
        let mut current = pipeline::lock_connector_objects(&mut tx, &objects)
            .await
            .map_err(store_error)?;
        let searches: Vec<_> = objects
            .iter()
            .filter_map(|o| current.get(o).map(|c| (o, c)))
            .flat_map(|(o, c)| join_queries(rules, o, &c.attributes))
            .collect();
        let mut lookups = pipeline::join_lookups(&mut tx, &searches)
            .await
            .map_err(store_error)?;
        let unjoined_before = unjoined(&current);

        let mut touched = BTreeSet::new();
        let mut new_mesh_objects = Vec::new();
        let mut entries = Vec::new();
        let mut outgoing = Vec::new();
        for (object, trigger) in found {
            let Some(stored) = current.get(&object) else {
                continue;
            };
            if !matches!(
                stored.join,
                JoinState::Disconnector | JoinState::Ambiguous { .. }
            ) {
                continue;
            }
            let correlation = correlate(
                rules,
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
                trigger.at,
                true,
            ));
            let mut updated = stored.clone();
            updated.join = correlation.outcome.clone();
            if let JoinState::Joined { .. } = &correlation.outcome {
                let subject = joined_subject(&object.connector);
                let correlated = CorrelatedChange {
                    event_id: rejoin_event_id(trigger.message, &object),
                    change: ChangeEvent {
                        event_id: trigger.cause,
                        object: object.clone(),
                        operation: ChangeOperation::Upsert,
                        attributes: stored.attributes.clone(),
                        source_time: trigger.at,
                    },
                    join: correlation.outcome.clone(),
                    previous_mesh_object: None,
                    rule_version: rules.version(),
                    source_sequence: stored.last_sequence,
                };
                let msg_id = correlated.event_id.to_string();
                let message = || Outgoing::event(subject, msg_id, correlated);
                outgoing.push(match &trigger.span {
                    Some(span) => span.in_scope(message),
                    None => message(),
                });
            }
            current.insert(object.clone(), updated);
            touched.insert(object);
        }

        let changed = touched.len();
        save(&mut tx, rules, &current, &touched, &unjoined_before).await?;
        pipeline::insert_mesh_objects(&mut tx, &new_mesh_objects)
            .await
            .map_err(store_error)?;
        mesh_stage::stamp_rule_version(&mut entries, rules.version());
        self.stage.commit(tx, &entries, outgoing).await?;
        Ok(changed)
    }

    /// Correlates every waiting object (disconnectors and ambiguous matches) again under
    /// `rules`, a rule version that just came into force, a page at a time; returns how many
    /// changed. The joins name the version's own event as their cause.
    pub async fn sweep(&self, rules: &RuleSet) -> Result<usize, HandlerError> {
        let cause = EventId::derive("rules", &rules.version().to_be_bytes());
        let mut after = None;
        let mut changed = 0;
        loop {
            let page = pipeline::unjoined_after(self.stage.pool(), after.as_ref(), SWEEP_PAGE)
                .await
                .map_err(store_error)?;
            let Some(last) = page.last() else {
                return Ok(changed);
            };
            after = Some(last.clone());
            let now = chrono::Utc::now();
            let found = page
                .into_iter()
                .map(|object| {
                    let trigger = Trigger {
                        cause,
                        at: now,
                        message: cause,
                        span: None,
                    };
                    (object, trigger)
                })
                .collect();
            changed += self.retry(rules, found).await?;
        }
    }
}

/// Waiting objects per transaction of a rule-change sweep.
const SWEEP_PAGE: i64 = 200;

/// The id of the correlated change a mesh object change's retry produced for `object`.
fn rejoin_event_id(trigger: EventId, object: &ConnectorObjectRef) -> EventId {
    let mut name = trigger.as_uuid().as_bytes().to_vec();
    name.extend_from_slice(object.to_string().as_bytes());
    EventId::derive(REJOIN_STAGE, &name)
}
