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
    Contribution, CorrelateInput, DisconnectorDirectory, Found, Link, MeshDirectory,
    MeshObjectState, Override, ProjectInput, RuleSet, TargetState, Trace, TransformError,
    UpdateSources, correlate, correlate::mesh_object_id, flow, join_key, join_key_ref,
    join_key_text, project, retry_queries, update_mesh_object_in_place,
};
use mesh_model::{
    AttributeName, Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef,
    EventId, ExportCommand, IdNamespace, JoinState, MeshObjectId, ObjectType, Text, Value,
};
use smallvec::SmallVec;

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
    /// The connector objects joined to it, in order, each with its raw attributes and its flow
    /// contributions.
    ///
    /// A mesh object has a few links, and a sorted vector holds them in a tenth of the memory
    /// of a B-tree node.
    pub links: Vec<JoinedObject>,
    /// The composer contributions of the last resolution.
    pub composed: Vec<Contribution>,
    /// Per-object overrides.
    pub overrides: BTreeMap<AttributeName, Override>,
    /// What each target holds, sorted by target (see [`mesh_engine::HeldTargets`]).
    pub targets: Vec<(ConnectorId, TargetState)>,
}

/// A connector object joined to a mesh object, as the mesh object keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinedObject {
    /// The connector object.
    pub object: ConnectorObjectRef,
    /// Its raw attributes: a shared copy of the management space's, kept here so that
    /// resolving the mesh object (lifecycle reads them) needs no search of the management
    /// space.
    pub attributes: Attributes,
    /// Its flow contributions.
    pub contributions: Vec<Contribution>,
}

/// The hash maps of the world: keyed by connector object references and mesh object ids, with
/// a fast hasher seeded by a constant. Nothing iterates them unsorted, so the hasher cannot
/// change an outcome; SipHash's resistance to chosen keys buys nothing in a simulator and was
/// several percent of the instructions of a load.
pub type WorldMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// The simulated world.
#[derive(Debug, Clone)]
pub struct World {
    rules: RuleSet,
    tracing: bool,
    now: DateTime<Utc>,
    events: u64,
    objects: WorldMap<ConnectorObjectRef, ConnectorObjectRecord>,
    mesh: WorldMap<MeshObjectId, MeshRecord>,
    /// Resolved values of join-target attributes: type → folded name → key → mesh objects.
    /// A few (type, attribute) pairs, so a list; the keys of each in a hash map. A key that
    /// is text shares the resolved value's allocation.
    ///
    /// There is no index of anchors: a mesh object's id is derived from its type and anchor
    /// ([`mesh_object_id`]), and mesh objects are never removed, so the mesh map is one.
    attribute_index: Vec<(ObjectType, AttributeName, WorldMap<Text, Matches>)>,
    /// Unjoined connector objects by (connector, type, folded source attribute) → key.
    unjoined_index:
        BTreeMap<(ConnectorId, ObjectType, String), BTreeMap<String, BTreeSet<ConnectorObjectRef>>>,
    exports: Vec<ExportCommand>,
    /// Whether `exports` keeps every command, or only `export_count` counts them.
    keep_exports: bool,
    export_count: u64,
    transform_errors: Vec<TransformError>,
    trace: Vec<String>,
}

/// The mesh objects whose join-target attribute has one key: almost always one, which then
/// needs no allocation of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Matches {
    One(MeshObjectId),
    /// Two or more, in id order.
    Many(Vec<MeshObjectId>),
}

impl Matches {
    fn insert(&mut self, id: MeshObjectId) {
        match self {
            Self::One(one) if *one == id => {}
            Self::One(one) => {
                let mut ids = vec![*one, id];
                ids.sort();
                *self = Self::Many(ids);
            }
            Self::Many(ids) => {
                if let Err(at) = ids.binary_search(&id) {
                    ids.insert(at, id);
                }
            }
        }
    }

    /// Removes `id`; returns true when no mesh object is left.
    fn remove(&mut self, id: MeshObjectId) -> bool {
        match self {
            Self::One(one) => *one == id,
            Self::Many(ids) => {
                ids.retain(|other| *other != id);
                match ids.as_slice() {
                    [] => true,
                    [one] => {
                        *self = Self::One(*one);
                        false
                    }
                    _ => false,
                }
            }
        }
    }
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
            objects: WorldMap::default(),
            mesh: WorldMap::default(),
            attribute_index: Vec::new(),
            unjoined_index: BTreeMap::new(),
            exports: Vec::new(),
            keep_exports: true,
            export_count: 0,
            transform_errors: Vec::new(),
            trace: Vec::new(),
        }
    }

    /// Turns the explanations off (for benchmarks) or on. Without them, resolution revisits
    /// only the attributes whose contributions changed (an explanation names every attribute);
    /// the outcome is the same.
    #[must_use]
    pub fn with_tracing(mut self, tracing: bool) -> Self {
        self.tracing = tracing;
        self
    }

    /// Keeps every export command (the default, for reports and tests), or only counts them:
    /// a long load then does not hold every command it issued in memory. Projection runs the
    /// same either way.
    #[must_use]
    pub fn with_export_log(mut self, keep: bool) -> Self {
        self.keep_exports = keep;
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
    pub fn connector_objects(&self) -> &WorldMap<ConnectorObjectRef, ConnectorObjectRecord> {
        &self.objects
    }

    /// Returns the mesh objects, in no particular order (sort them for display).
    pub fn mesh_objects(&self) -> &WorldMap<MeshObjectId, MeshRecord> {
        &self.mesh
    }

    /// Returns the world as the engine's search ports see it (what correlation and disconnector
    /// retries search), for contract tests against other implementations.
    pub fn directory(&self) -> impl MeshDirectory + DisconnectorDirectory + '_ {
        Directory(self)
    }

    /// Returns every export command issued, in order (none when the export log is off; see
    /// [`World::with_export_log`]).
    pub fn exports(&self) -> &[ExportCommand] {
        &self.exports
    }

    /// Returns how many export commands were issued, whether or not they were kept.
    pub fn export_count(&self) -> u64 {
        self.export_count
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
                let id = Directory(self)
                    .find_by_anchor(object_type, anchor)
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
                // An override is not a change of contributions: resolve everything again.
                self.recompute(id, event_id, None, &mut queue);
                self.drain(queue, event_id);
            }
            SimEvent::Tick => {
                let now = self.now;
                self.note(|| format!("-- {event_id}: clock at {now}"));
                let due: BTreeSet<MeshObjectId> = self
                    .mesh
                    .iter()
                    .filter(|(_, r)| {
                        r.targets.iter().any(|(_, t)| {
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
        const EVENTS: IdNamespace = IdNamespace::new("identitymesh.io/mesh-sim");
        EventId::derive_in(EVENTS, &n.to_be_bytes())
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
                Some(name) => match definition.object_types.iter().find(|t| t.as_str() == name) {
                    Some(known) => known.clone(),
                    None => {
                        ObjectType::parse(name).map_err(|e| WorldError::Invalid(e.to_string()))?
                    }
                },
                None => definition
                    .object_types
                    .first()
                    .cloned()
                    .ok_or_else(|| WorldError::UnknownConnector(connector.to_string()))?,
            },
        };
        // The rule set's copy of the type: comparisons with it then need not read the text.
        let object_type = match definition.object_types.iter().find(|t| **t == object_type) {
            Some(known) => known.clone(),
            None => {
                return Err(WorldError::UnknownObjectType {
                    connector: connector.to_string(),
                    object_type: object_type.to_string(),
                });
            }
        };
        let id_attribute = definition.external_id_attribute.as_ref().ok_or_else(|| {
            WorldError::MissingExternalId {
                connector: connector.to_string(),
                attribute: "(none defined)".to_owned(),
            }
        })?;
        let external_id = attributes
            .get(id_attribute)
            .and_then(join_key_text)
            .ok_or_else(|| WorldError::MissingExternalId {
                connector: connector.to_string(),
                attribute: id_attribute.to_string(),
            })?;
        Ok(ConnectorObjectRef {
            // The rule set's copy, as for the type.
            connector: definition.name.clone(),
            object_type,
            // Shares the attribute's text.
            external_id: mesh_model::ExternalId::from_text(&external_id)
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
        // The flow stage's work for a joined object, done while its attributes are at hand
        // (before they move into the management space); its outcome is used below, in order,
        // with a shared copy of the attributes for the mesh object's link.
        let flowed = match &correlation.outcome {
            JoinState::Joined { mesh_object, .. } => Some((
                flow(
                    &self.rules,
                    &object,
                    &attributes,
                    *mesh_object,
                    event,
                    self.now,
                    self.new_trace(),
                ),
                attributes.clone(),
            )),
            _ => None,
        };

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

        if let Some(new) = correlation.new_mesh_object {
            self.mesh.entry(new.id).or_insert_with(|| MeshRecord {
                state: MeshObjectState::new(new.id, new.object_type, Some(new.anchor)),
                links: Vec::new(),
                composed: Vec::new(),
                overrides: BTreeMap::new(),
                targets: Vec::new(),
            });
        }
        if let Some(previous) = correlation.previous_mesh_object
            && let Some(record) = self.mesh.get_mut(&previous)
        {
            let withdrawn = match record.links.binary_search_by(|l| l.object.cmp(&object)) {
                Ok(at) => record.links.remove(at).contributions,
                Err(_) => Vec::new(),
            };
            let changed = attributes_of(&withdrawn, &[]);
            self.recompute(previous, event, Some(changed), queue);
        }
        if let JoinState::Joined { mesh_object, .. } = correlation.outcome
            && let Some((outcome, linked_attributes)) = flowed
        {
            self.trace.extend(outcome.trace.into_lines());
            self.transform_errors.extend(outcome.transform_errors);
            let mut changed = ChangedAttributes::new();
            if let Some(record) = self.mesh.get_mut(&mesh_object) {
                let added = outcome.contributions;
                match record.links.binary_search_by(|l| l.object.cmp(&object)) {
                    Ok(at) => {
                        if let Some(link) = record.links.get_mut(at) {
                            changed = attributes_of(&link.contributions, &added);
                            link.contributions = added;
                            link.attributes = linked_attributes;
                        }
                    }
                    Err(at) => {
                        changed = attributes_of(&[], &added);
                        record.links.insert(
                            at,
                            JoinedObject {
                                object,
                                attributes: linked_attributes,
                                contributions: added,
                            },
                        );
                    }
                }
            }
            self.recompute(mesh_object, event, Some(changed), queue);
        }
    }

    /// The flow service's work for one mesh object, then projection and disconnector retries.
    ///
    /// `changed` names the attributes whose contributions changed, when only contributions did
    /// (see [`UpdateSources::changed_attributes`]).
    fn recompute(
        &mut self,
        id: MeshObjectId,
        event: EventId,
        changed: Option<ChangedAttributes>,
        queue: &mut VecDeque<ConnectorObjectRef>,
    ) {
        let trace = self.new_trace();
        let Some(record) = self.mesh.get_mut(&id) else {
            return;
        };
        let mut contributions: SmallVec<[&Contribution; 16]> = SmallVec::new();
        let mut links: SmallVec<[Link<'_>; 4]> = SmallVec::new();
        for link in &record.links {
            // A loop, not a flattened iterator: a flattened one has no exact length, so its
            // elements are pushed one by one, each checking for room.
            contributions.extend(link.contributions.iter());
            links.push(Link {
                object: &link.object,
                attributes: &link.attributes,
            });
        }
        let was_new = record.state.version == 0;
        let update = update_mesh_object_in_place(
            &self.rules,
            &mut record.state,
            &UpdateSources {
                contributions: &contributions,
                overrides: &record.overrides,
                links: &links,
                cause: event,
                changed_attributes: changed.as_deref(),
                previous_composed: Some(&record.composed),
            },
            self.now,
            trace,
        );
        // The borrowed lists end here, before the record is written.
        drop((contributions, links));
        record.composed = update.composed;
        let object_type = record.state.object_type.clone();
        self.trace.extend(update.trace.into_lines());
        self.transform_errors.extend(update.transform_errors);
        let Some(changed) = update.changed else {
            return;
        };
        self.reindex(id, &object_type, &changed.changes);
        self.project(id, event);
        if self.unjoined_index.is_empty() {
            // Nothing waits to be joined: skip the searches (the common case of a full load).
            return;
        }
        // The anchor never changes; only a new mesh object's can let a disconnector join.
        let anchor = was_new
            .then(|| self.mesh.get(&id).and_then(|r| r.state.anchor.clone()))
            .flatten();
        let queries = retry_queries(
            &self.rules,
            &object_type,
            &changed.changes,
            anchor.as_deref(),
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
        self.export_count += projection.commands.len() as u64;
        if self.keep_exports {
            self.exports.extend(projection.commands);
        }
        if let Some(record) = self.mesh.get_mut(&id) {
            for (target, state) in projection.targets {
                let at = record.targets.binary_search_by(|(t, _)| t.cmp(&target));
                match (state, at) {
                    (Some(state), Ok(at)) => {
                        if let Some((_, slot)) = record.targets.get_mut(at) {
                            *slot = state;
                        }
                    }
                    (Some(state), Err(at)) => record.targets.insert(at, (target, state)),
                    (None, Ok(at)) => {
                        record.targets.remove(at);
                    }
                    (None, Err(_)) => {}
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
        // The targets of the type's join rules, looked up once for all the changes.
        let rules = &self.rules;
        let targets = rules.join_target_names(object_type);
        let is_target = |name: &AttributeName| match targets {
            Some(names) => names.contains(name),
            None => rules.is_join_target(object_type, name.key()),
        };
        for change in changes {
            if !is_target(&change.name) {
                continue;
            }
            let slot = self
                .attribute_index
                .iter()
                .position(|(t, name, _)| t == object_type && *name == change.name);
            let slot = slot.unwrap_or_else(|| {
                self.attribute_index.push((
                    object_type.clone(),
                    change.name.clone(),
                    WorldMap::default(),
                ));
                self.attribute_index.len() - 1
            });
            let Some((_, _, by_name)) = self.attribute_index.get_mut(slot) else {
                continue;
            };
            if let Some(old) = join_key_ref(&change.old)
                && let Some(matches) = by_name.get_mut(old.as_ref())
                && matches.remove(id)
            {
                by_name.remove(old.as_ref());
            }
            if let Some(new) = join_key_text(&change.new) {
                // One search: the key is a shared copy, as cheap to give as to lend.
                match by_name.entry(new) {
                    std::collections::hash_map::Entry::Occupied(mut slot) => {
                        slot.get_mut().insert(id)
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(Matches::One(id));
                    }
                }
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

/// The attributes whose contributions changed (see [`UpdateSources::changed_attributes`]).
type ChangedAttributes = SmallVec<[AttributeName; 8]>;

/// The attributes that two sets of contributions of one connector object set (repeats
/// allowed: resolution sorts them out).
fn attributes_of(old: &[Contribution], new: &[Contribution]) -> ChangedAttributes {
    old.iter().chain(new).map(|c| c.attribute.clone()).collect()
}

/// The world as the ports see it.
struct Directory<'a>(&'a World);

impl MeshDirectory for Directory<'_> {
    fn find_by_attribute(
        &self,
        object_type: &ObjectType,
        attribute: &AttributeName,
        key: &str,
    ) -> Found {
        match self
            .0
            .attribute_index
            .iter()
            .find(|(t, name, _)| t == object_type && name == attribute)
            .and_then(|(_, _, by_key)| by_key.get(key))
        {
            None => Found::None,
            Some(Matches::One(id)) => Found::One(*id),
            Some(Matches::Many(ids)) => Found::Several(ids.iter().copied().collect()),
        }
    }

    fn find_by_anchor(&self, object_type: &ObjectType, key: &str) -> Option<MeshObjectId> {
        // The id a mesh object anchored on `key` has; its anchor is compared as well, so the
        // answer does not rest on the derivation being free of collisions.
        let id = mesh_object_id(object_type, key);
        let record = self.0.mesh.get(&id)?;
        (record.state.object_type == *object_type && record.state.anchor.as_deref() == Some(key))
            .then_some(id)
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
