//! The in-memory world: connector objects, mesh objects and targets, and the pipeline that
//! runs change events through the pure stages in the order the services do.
//!
//! Per change event: correlate (correlation service) → flow, compose, resolve and lifecycle
//! for each affected mesh object (flow service) → project (projection service) → retry the
//! disconnectors the change may let join (correlation service, on MeshObjectChanged). Work
//! that one event causes is queued and drained before the next event, so the world after an
//! event is what the services reach once their streams are quiet.
//!
//! Invariants: deterministic (event ids derived from a counter; time only from the events;
//! wherever order is visible it comes from ordered collections or an explicit sort — the two
//! big maps, connector objects and mesh objects, are hash maps because at a million entries a
//! B-tree of string keys costs a cache miss per level, and nothing iterates them unsorted); applying the same change twice changes nothing the second time (the stages
//! are idempotent and versions only move on a visible change).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::data::TimedEvent;
use chrono::{DateTime, Utc};
use mesh_engine::{
    Contribution, CorrelateInput, DisconnectorDirectory, Link, MeshDirectory, MeshObjectState,
    Override, ProjectInput, RuleSet, TargetState, Trace, TransformError, UpdateInput, correlate,
    flow, join_key, project, retry_queries, update_mesh_object,
};
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    EventId, ExportCommand, JoinState, MeshObjectId, ObjectType, Value,
};

/// A connector object in the management space.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectorObjectRecord {
    /// Its raw attributes, as last imported.
    pub attributes: Attributes,
    /// Joined, disconnector or ambiguous.
    pub state: JoinState,
}

/// A mesh object with everything the services keep about it.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshRecord {
    /// The resolved state.
    pub state: MeshObjectState,
    /// The connector objects joined to it.
    pub links: BTreeSet<ConnectorObjectRef>,
    /// The flow contributions, per connector object.
    pub contributions: BTreeMap<ConnectorObjectRef, Vec<Contribution>>,
    /// The composer contributions of the last resolution.
    pub composed: Vec<Contribution>,
    /// Per-object overrides.
    pub overrides: BTreeMap<AttributeName, Override>,
    /// What each target holds.
    pub targets: BTreeMap<ConnectorId, TargetState>,
}

/// The simulated world.
#[derive(Debug, Clone)]
pub struct World {
    rules: RuleSet,
    tracing: bool,
    now: DateTime<Utc>,
    events: u64,
    objects: HashMap<ConnectorObjectRef, ConnectorObjectRecord>,
    mesh: HashMap<MeshObjectId, MeshRecord>,
    /// Resolved values of join-target attributes: type → folded name → key → mesh objects.
    attribute_index: HashMap<ObjectType, HashMap<String, HashMap<String, BTreeSet<MeshObjectId>>>>,
    anchors: HashMap<ObjectType, HashMap<String, MeshObjectId>>,
    /// Unjoined connector objects by (connector, type, folded source attribute) → key.
    unjoined_index:
        BTreeMap<(ConnectorId, ObjectType, String), BTreeMap<String, BTreeSet<ConnectorObjectRef>>>,
    exports: Vec<ExportCommand>,
    transform_errors: Vec<TransformError>,
    trace: Vec<String>,
}

/// Why the world refused an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// The event names a connector the rules do not define or that does not import.
    #[error("connector `{0}` is not defined as an importing connector")]
    UnknownConnector(String),
    /// The record has no external id.
    #[error(
        "a record of connector `{connector}` has no value for its external id attribute `{attribute}`"
    )]
    MissingExternalId {
        /// The connector.
        connector: String,
        /// The attribute that should hold the external id.
        attribute: String,
    },
    /// The record's object type is not one the connector carries.
    #[error("connector `{connector}` does not carry object type `{object_type}`")]
    UnknownObjectType {
        /// The connector.
        connector: String,
        /// The object type named.
        object_type: String,
    },
    /// A malformed id or name.
    #[error("{0}")]
    Invalid(String),
    /// An override names no mesh object.
    #[error("no mesh object of type `{object_type}` is anchored on `{anchor}`")]
    NoSuchMeshObject {
        /// The type.
        object_type: String,
        /// The anchor.
        anchor: String,
    },
}

/// One input to the world.
#[derive(Debug, Clone, PartialEq)]
pub enum SimEvent {
    /// A connector object exists with exactly these raw attributes.
    Upsert {
        /// The source connector.
        connector: ConnectorId,
        /// Its type; the connector's `objectTypeAttribute` or first type when absent.
        object_type: Option<ObjectType>,
        /// The raw attributes, the external id among them.
        attributes: Attributes,
    },
    /// A connector object is gone; `attributes` need only hold the external id.
    Delete {
        /// The source connector.
        connector: ConnectorId,
        /// Its type, as for an upsert.
        object_type: Option<ObjectType>,
        /// At least the external id attribute.
        attributes: Attributes,
    },
    /// Pins one attribute of the mesh object anchored on `anchor`.
    Override {
        /// The mesh object's type.
        object_type: ObjectType,
        /// Its anchor.
        anchor: String,
        /// The attribute.
        attribute: AttributeName,
        /// The value, or `None` to remove the override.
        value: Option<Value>,
        /// Why, for the audit log.
        reason: String,
    },
    /// Nothing but the passing of time: due grace-period deletions run.
    Tick,
}

impl World {
    /// The time the world starts at unless told otherwise: 2026-01-01T00:00:00Z.
    pub fn epoch() -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap_or_default()
    }

    /// Returns an empty world governed by `rules`, recording explanations.
    pub fn new(rules: RuleSet) -> Self {
        Self {
            rules,
            tracing: true,
            now: Self::epoch(),
            events: 0,
            objects: HashMap::new(),
            mesh: HashMap::new(),
            attribute_index: HashMap::new(),
            anchors: HashMap::new(),
            unjoined_index: BTreeMap::new(),
            exports: Vec::new(),
            transform_errors: Vec::new(),
            trace: Vec::new(),
        }
    }

    /// Turns the explanations off (for benchmarks) or on.
    #[must_use]
    pub fn with_tracing(mut self, tracing: bool) -> Self {
        self.tracing = tracing;
        self
    }

    /// Returns the rules.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Returns the world's clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Returns the connector objects, in no particular order (sort them for display).
    pub fn connector_objects(&self) -> &HashMap<ConnectorObjectRef, ConnectorObjectRecord> {
        &self.objects
    }

    /// Returns the mesh objects, in no particular order (sort them for display).
    pub fn mesh_objects(&self) -> &HashMap<MeshObjectId, MeshRecord> {
        &self.mesh
    }

    /// Returns the world as the engine's search ports see it (what correlation and disconnector
    /// retries search), for contract tests against other implementations.
    pub fn directory(&self) -> impl MeshDirectory + DisconnectorDirectory + '_ {
        Directory(self)
    }

    /// Returns every export command issued, in order.
    pub fn exports(&self) -> &[ExportCommand] {
        &self.exports
    }

    /// Returns every transform error, in order.
    pub fn transform_errors(&self) -> &[TransformError] {
        &self.transform_errors
    }

    /// Returns the explanations, in order.
    pub fn trace(&self) -> &[String] {
        &self.trace
    }

    /// Applies one event at `at` (or one second after the previous event).
    pub fn apply(&mut self, event: &SimEvent, at: Option<DateTime<Utc>>) -> Result<(), WorldError> {
        self.now = at.unwrap_or_else(|| self.now + chrono::Duration::seconds(1));
        self.events += 1;
        let event_id = Self::event_id(self.events);
        match event {
            SimEvent::Upsert {
                connector,
                object_type,
                attributes,
            } => {
                let object = self.object_ref(connector, object_type.as_ref(), attributes)?;
                self.note(|| format!("-- {event_id}: upsert {object}"));
                self.change(
                    object,
                    ChangeOperation::Upsert,
                    attributes.clone(),
                    event_id,
                );
            }
            SimEvent::Delete {
                connector,
                object_type,
                attributes,
            } => {
                let object = self.object_ref(connector, object_type.as_ref(), attributes)?;
                self.note(|| format!("-- {event_id}: delete {object}"));
                self.change(object, ChangeOperation::Delete, Attributes::new(), event_id);
            }
            SimEvent::Override {
                object_type,
                anchor,
                attribute,
                value,
                reason,
            } => {
                let id = self
                    .anchors
                    .get(object_type)
                    .and_then(|a| a.get(anchor))
                    .copied()
                    .ok_or_else(|| WorldError::NoSuchMeshObject {
                        object_type: object_type.to_string(),
                        anchor: anchor.clone(),
                    })?;
                self.note(|| match value {
                    Some(v) => format!("-- {event_id}: override {attribute} = {v} on mesh object {id} ({reason})"),
                    None => format!("-- {event_id}: remove the override of {attribute} on mesh object {id} ({reason})"),
                });
                if let Some(record) = self.mesh.get_mut(&id) {
                    match value {
                        Some(value) => {
                            record.overrides.insert(
                                attribute.clone(),
                                Override {
                                    value: value.clone(),
                                    reason: reason.clone(),
                                },
                            );
                        }
                        None => {
                            record.overrides.remove(attribute);
                        }
                    }
                }
                let mut queue = VecDeque::new();
                self.recompute(id, event_id, &mut queue);
                self.drain(queue, event_id);
            }
            SimEvent::Tick => {
                let now = self.now;
                self.note(|| format!("-- {event_id}: clock at {now}"));
                let due: BTreeSet<MeshObjectId> = self
                    .mesh
                    .iter()
                    .filter(|(_, r)| {
                        r.targets.values().any(|t| {
                            matches!(t, TargetState::Disabled { delete_after: Some(d), .. } if *d <= self.now)
                        })
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in due {
                    self.project(id, event_id);
                }
            }
        }
        Ok(())
    }

    /// The id the world gives its `n`-th event (counting from 1).
    pub fn event_id(n: u64) -> EventId {
        EventId::derive("identitymesh.io/mesh-sim", &n.to_be_bytes())
    }

    /// Returns the change events a connector agent would publish for `events`, with the ids
    /// and source times [`World::apply`] gives them when applied to this world next, so that
    /// the services' results on them can be compared with the simulator's. Overrides and ticks
    /// publish nothing but use up an id and a time, as they do in `apply`.
    pub fn change_events(
        &self,
        events: &[TimedEvent],
    ) -> Result<Vec<ChangeEvent>, (usize, WorldError)> {
        let mut now = self.now;
        let mut changes = Vec::with_capacity(events.len());
        for (i, timed) in events.iter().enumerate() {
            now = timed
                .at
                .unwrap_or_else(|| now + chrono::Duration::seconds(1));
            let event_id = Self::event_id(self.events + 1 + i as u64);
            let (connector, object_type, attributes, operation) = match &timed.event {
                SimEvent::Upsert {
                    connector,
                    object_type,
                    attributes,
                } => (connector, object_type, attributes, ChangeOperation::Upsert),
                SimEvent::Delete {
                    connector,
                    object_type,
                    attributes,
                } => (connector, object_type, attributes, ChangeOperation::Delete),
                SimEvent::Override { .. } | SimEvent::Tick => continue,
            };
            let object = self
                .object_ref(connector, object_type.as_ref(), attributes)
                .map_err(|e| (i + 1, e))?;
            changes.push(ChangeEvent {
                event_id,
                object,
                operation,
                attributes: if operation == ChangeOperation::Delete {
                    Attributes::new()
                } else {
                    attributes.clone()
                },
                source_time: now,
            });
        }
        Ok(changes)
    }

    fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            self.trace.push(line());
        }
    }

    fn new_trace(&self) -> Trace {
        if self.tracing {
            Trace::enabled()
        } else {
            Trace::disabled()
        }
    }

    fn object_ref(
        &self,
        connector: &ConnectorId,
        object_type: Option<&ObjectType>,
        attributes: &Attributes,
    ) -> Result<ConnectorObjectRef, WorldError> {
        let definition = self
            .rules
            .connector(connector)
            .filter(|c| c.kind.imports())
            .ok_or_else(|| WorldError::UnknownConnector(connector.to_string()))?;
        let object_type = match object_type {
            Some(t) => t.clone(),
            None => match definition
                .object_type_attribute
                .as_ref()
                .and_then(|a| attributes.get(a))
                .and_then(Value::as_str)
            {
                Some(name) => {
                    ObjectType::parse(name).map_err(|e| WorldError::Invalid(e.to_string()))?
                }
                None => definition
                    .object_types
                    .first()
                    .cloned()
                    .ok_or_else(|| WorldError::UnknownConnector(connector.to_string()))?,
            },
        };
        if !definition.carries(&object_type) {
            return Err(WorldError::UnknownObjectType {
                connector: connector.to_string(),
                object_type: object_type.to_string(),
            });
        }
        let id_attribute = definition.external_id_attribute.as_ref().ok_or_else(|| {
            WorldError::MissingExternalId {
                connector: connector.to_string(),
                attribute: "(none defined)".to_owned(),
            }
        })?;
        let external_id = attributes
            .get(id_attribute)
            .and_then(join_key)
            .ok_or_else(|| WorldError::MissingExternalId {
                connector: connector.to_string(),
                attribute: id_attribute.to_string(),
            })?;
        Ok(ConnectorObjectRef {
            connector: connector.clone(),
            object_type,
            external_id: mesh_model::ExternalId::parse(&external_id)
                .map_err(|e| WorldError::Invalid(e.to_string()))?,
        })
    }

    /// Runs one connector object change and everything it causes.
    fn change(
        &mut self,
        object: ConnectorObjectRef,
        operation: ChangeOperation,
        attributes: Attributes,
        event: EventId,
    ) {
        let mut queue = VecDeque::new();
        self.correlate_one(object, operation, attributes, event, &mut queue);
        self.drain(queue, event);
    }

    fn drain(&mut self, mut queue: VecDeque<ConnectorObjectRef>, event: EventId) {
        // Disconnector retries, in the order they were found; each may queue more.
        while let Some(object) = queue.pop_front() {
            let Some(record) = self.objects.get(&object) else {
                continue;
            };
            if matches!(record.state, JoinState::Joined { .. }) {
                continue;
            }
            let attributes = record.attributes.clone();
            self.note(|| format!("retry disconnector {object}"));
            self.correlate_one(
                object,
                ChangeOperation::Upsert,
                attributes,
                event,
                &mut queue,
            );
        }
    }

    fn correlate_one(
        &mut self,
        object: ConnectorObjectRef,
        operation: ChangeOperation,
        attributes: Attributes,
        event: EventId,
        queue: &mut VecDeque<ConnectorObjectRef>,
    ) {
        let current = self.objects.get(&object).map(|r| r.state.clone());
        let correlation = correlate(
            &self.rules,
            &CorrelateInput {
                object: &object,
                operation,
                attributes: &attributes,
                current: current.as_ref(),
            },
            &Directory(self),
            self.new_trace(),
        );
        self.trace.extend(correlation.trace.into_lines());

        // The management space.
        if let Some(JoinState::Disconnector | JoinState::Ambiguous { .. }) = &current
            && let Some(old) = self.objects.get(&object).map(|r| r.attributes.clone())
        {
            self.unindex_unjoined(&object, &old);
        }
        match &correlation.outcome {
            JoinState::Deleted => {
                self.objects.remove(&object);
            }
            state => {
                if matches!(state, JoinState::Disconnector | JoinState::Ambiguous { .. }) {
                    self.index_unjoined(&object, &attributes);
                }
                self.objects.insert(
                    object.clone(),
                    ConnectorObjectRecord {
                        attributes,
                        state: state.clone(),
                    },
                );
            }
        }

        if let Some(new) = &correlation.new_mesh_object {
            self.anchors
                .entry(new.object_type.clone())
                .or_default()
                .insert(new.anchor.clone(), new.id);
            self.mesh.entry(new.id).or_insert_with(|| MeshRecord {
                state: MeshObjectState::new(
                    new.id,
                    new.object_type.clone(),
                    Some(new.anchor.clone()),
                ),
                links: BTreeSet::new(),
                contributions: BTreeMap::new(),
                composed: Vec::new(),
                overrides: BTreeMap::new(),
                targets: BTreeMap::new(),
            });
        }
        if let Some(previous) = correlation.previous_mesh_object
            && let Some(record) = self.mesh.get_mut(&previous)
        {
            record.links.remove(&object);
            record.contributions.remove(&object);
            self.recompute(previous, event, queue);
        }
        if let JoinState::Joined { mesh_object, .. } = correlation.outcome {
            let Some(record) = self.objects.get(&object) else {
                return;
            };
            let outcome = flow(
                &self.rules,
                &object,
                &record.attributes,
                mesh_object,
                event,
                self.now,
                self.new_trace(),
            );
            self.trace.extend(outcome.trace.into_lines());
            self.transform_errors.extend(outcome.transform_errors);
            if let Some(record) = self.mesh.get_mut(&mesh_object) {
                record.links.insert(object.clone());
                record.contributions.insert(object, outcome.contributions);
            }
            self.recompute(mesh_object, event, queue);
        }
    }

    /// The flow service's work for one mesh object, then projection and disconnector retries.
    fn recompute(
        &mut self,
        id: MeshObjectId,
        event: EventId,
        queue: &mut VecDeque<ConnectorObjectRef>,
    ) {
        let Some(record) = self.mesh.get(&id) else {
            return;
        };
        let contributions: Vec<&Contribution> = record.contributions.values().flatten().collect();
        let links: Vec<Link<'_>> = record
            .links
            .iter()
            .filter_map(|object| {
                self.objects.get(object).map(|o| Link {
                    object,
                    attributes: &o.attributes,
                })
            })
            .collect();
        let update = update_mesh_object(
            &self.rules,
            &UpdateInput {
                before: &record.state,
                contributions: &contributions,
                overrides: &record.overrides,
                links: &links,
                cause: event,
            },
            self.now,
            self.new_trace(),
        );
        let was_new = record.state.version == 0;
        self.trace.extend(update.trace.into_lines());
        self.transform_errors.extend(update.transform_errors);
        let object_type = update.after.object_type.clone();
        let anchor = update.after.anchor.clone();
        if let Some(record) = self.mesh.get_mut(&id) {
            record.state = update.after;
            record.composed = update.composed;
        }
        let Some(changed) = update.changed else {
            return;
        };
        self.reindex(id, &object_type, &changed.changes);
        self.project(id, event);
        if self.unjoined_index.is_empty() {
            // Nothing waits to be joined: skip the searches (the common case of a full load).
            return;
        }
        let queries = retry_queries(
            &self.rules,
            &object_type,
            &changed.changes,
            if was_new { anchor.as_deref() } else { None },
        );
        for query in queries {
            let found = Directory(self).find_unjoined(
                &query.connector,
                &query.object_type,
                &query.source_attribute,
                &query.key,
            );
            for object in found {
                if !queue.contains(&object) {
                    queue.push_back(object);
                }
            }
        }
    }

    fn project(&mut self, id: MeshObjectId, event: EventId) {
        let Some(record) = self.mesh.get(&id) else {
            return;
        };
        let projection = project(
            &self.rules,
            &ProjectInput {
                mesh_object: id,
                object_type: &record.state.object_type,
                version: record.state.version,
                lifecycle: record.state.lifecycle,
                attributes: &record.state.attributes,
                targets: &record.targets,
                cause: event,
            },
            self.now,
            self.new_trace(),
        );
        self.trace.extend(projection.trace.into_lines());
        self.transform_errors.extend(projection.transform_errors);
        self.exports.extend(projection.commands);
        if let Some(record) = self.mesh.get_mut(&id) {
            for (target, state) in projection.targets {
                match state {
                    Some(state) => {
                        record.targets.insert(target, state);
                    }
                    None => {
                        record.targets.remove(&target);
                    }
                }
            }
        }
    }

    fn reindex(
        &mut self,
        id: MeshObjectId,
        object_type: &ObjectType,
        changes: &[mesh_model::AttributeChange],
    ) {
        for change in changes {
            let folded = change.name.key();
            if !self.rules.is_join_target(object_type, folded) {
                continue;
            }
            let by_name = self
                .attribute_index
                .entry(object_type.clone())
                .or_default()
                .entry(folded.to_owned())
                .or_default();
            if let Some(old) = join_key(&change.old)
                && let Some(set) = by_name.get_mut(&old)
            {
                set.remove(&id);
                if set.is_empty() {
                    by_name.remove(&old);
                }
            }
            if let Some(new) = join_key(&change.new) {
                by_name.entry(new).or_default().insert(id);
            }
        }
    }

    fn unjoined_keys(
        &self,
        object: &ConnectorObjectRef,
        attributes: &Attributes,
    ) -> Vec<((ConnectorId, ObjectType, String), String)> {
        self.rules
            .join_rules(&object.connector)
            .iter()
            .filter(|r| r.applies_to(&object.object_type))
            .filter_map(|r| {
                let key = attributes.get(&r.source_attribute).and_then(join_key)?;
                Some((
                    (
                        object.connector.clone(),
                        object.object_type.clone(),
                        r.source_attribute.key().to_owned(),
                    ),
                    key,
                ))
            })
            .collect()
    }

    fn index_unjoined(&mut self, object: &ConnectorObjectRef, attributes: &Attributes) {
        for (slot, key) in self.unjoined_keys(object, attributes) {
            self.unjoined_index
                .entry(slot)
                .or_default()
                .entry(key)
                .or_default()
                .insert(object.clone());
        }
    }

    fn unindex_unjoined(&mut self, object: &ConnectorObjectRef, attributes: &Attributes) {
        for (slot, key) in self.unjoined_keys(object, attributes) {
            if let Some(by_key) = self.unjoined_index.get_mut(&slot) {
                if let Some(set) = by_key.get_mut(&key) {
                    set.remove(object);
                    if set.is_empty() {
                        by_key.remove(&key);
                    }
                }
                if by_key.is_empty() {
                    self.unjoined_index.remove(&slot);
                }
            }
        }
    }
}

/// The world as the ports see it.
struct Directory<'a>(&'a World);

impl MeshDirectory for Directory<'_> {
    fn find_by_attribute(
        &self,
        object_type: &ObjectType,
        attribute: &AttributeName,
        key: &str,
    ) -> BTreeSet<MeshObjectId> {
        self.0
            .attribute_index
            .get(object_type)
            .and_then(|by_name| by_name.get(attribute.key()))
            .and_then(|by_key| by_key.get(key))
            .cloned()
            .unwrap_or_default()
    }

    fn find_by_anchor(&self, object_type: &ObjectType, key: &str) -> Option<MeshObjectId> {
        self.0.anchors.get(object_type)?.get(key).copied()
    }
}

impl DisconnectorDirectory for Directory<'_> {
    fn find_unjoined(
        &self,
        connector: &ConnectorId,
        object_type: &ObjectType,
        source_attribute: &AttributeName,
        key: &str,
    ) -> BTreeSet<ConnectorObjectRef> {
        self.0
            .unjoined_index
            .get(&(
                connector.clone(),
                object_type.clone(),
                source_attribute.key().to_owned(),
            ))
            .and_then(|by_key| by_key.get(key))
            .cloned()
            .unwrap_or_default()
    }
}
