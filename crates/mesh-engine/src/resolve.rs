//! Composition and resolution: from every contribution to one value per mesh attribute.
//!
//! **Resolution.** Per attribute, the contribution with the highest confidence wins. Ties are
//! broken deterministically, never by arrival order (so the same records in any order give the
//! same mesh): a flow contribution beats a composed one (an observed value beats a generated
//! one), then the lower connector id, object type, external id and rule name win, in that
//! order. When a source withdraws (null value, deleted or disconnected object), its
//! contribution is simply gone and the next-best one wins. A per-object override pins an
//! attribute above every rule until it is removed.
//!
//! **Composition.** MeshComposer rules run after inbound flow, in dependency order (validated
//! acyclic at load), each over the attributes resolved so far, and contribute at their own
//! confidence: a composed value at 60 only shows when nothing higher exists.
//!
//! [`update_mesh_object`] is the whole flow stage for one mesh object: resolve, compose,
//! lifecycle, diff against the previous state, bump the version and describe the change as a
//! [`MeshObjectChanged`] with exactly the attributes that changed.
//!
//! **In place.** [`update_mesh_object_in_place`] does the same to a state it owns, and is what
//! [`update_mesh_object`] runs on a copy. It writes only the values and lineage entries that
//! change, recording each value it replaces the first time (its journal), so that the change
//! is computed from those alone. A caller that knows which attributes' contributions changed
//! (the simulator does) lets it revisit only those and the override and composer targets; a
//! caller that kept the last composer contributions lets a composer whose inputs kept their
//! values offer its previous value without being evaluated. Both shortcuts give exactly the
//! outcome of resolving from scratch: `tests/resolution.rs` runs random histories through the
//! three ways and the original algorithm.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mesh_expr::EvalContext;
use mesh_model::{
    AttributeChange, AttributeName, Attributes, Confidence, EventId, IdNamespace, LifecycleState,
    MeshObjectChanged, MeshObjectId, ObjectType, Value,
};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::flow::{Contribution, Source, TransformError, is_no_value};
use crate::lifecycle::{Link, lifecycle};
use crate::lineage::LineageMap;
use crate::rules::{ComposerRule, RuleSet};
use crate::trace::{Trace, show};

/// An operator's pin of one attribute of one mesh object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Override {
    /// The pinned value; null pins the attribute to "no value".
    pub value: Value,
    /// Why, for the audit log.
    pub reason: String,
}

/// Where a resolved value came from: the winning contribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lineage {
    /// The winner's source.
    pub source: Source,
    /// The winner's confidence (100 for an override).
    pub confidence: Confidence,
    /// The event that produced the winning value.
    pub event: EventId,
}

/// A mesh object as the flow stage persists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshObjectState {
    /// Its id.
    pub id: MeshObjectId,
    /// Its type.
    pub object_type: ObjectType,
    /// The join key of its anchor, when an anchor rule projected it.
    pub anchor: Option<String>,
    /// 0 before the first resolution; +1 per change.
    pub version: u64,
    /// Its lifecycle state.
    pub lifecycle: LifecycleState,
    /// Whether an authoritative connector object was ever joined ([`crate::lifecycle`]).
    pub authority_seen: bool,
    /// The resolved attributes.
    pub attributes: Attributes,
    /// The winner of each resolved attribute.
    pub lineage: LineageMap,
}

impl MeshObjectState {
    /// Returns the state of a mesh object that correlation just projected, before any flow.
    pub fn new(id: MeshObjectId, object_type: ObjectType, anchor: Option<String>) -> Self {
        Self {
            id,
            object_type,
            anchor,
            version: 0,
            lifecycle: LifecycleState::Active,
            authority_seen: false,
            attributes: Attributes::new(),
            lineage: LineageMap::new(),
        }
    }
}

/// What the flow stage needs about one mesh object.
#[derive(Debug, Clone, Copy)]
pub struct UpdateInput<'a> {
    /// The state before the change.
    pub before: &'a MeshObjectState,
    /// Every flow contribution of the connector objects joined after the change (borrowed:
    /// the caller keeps them per connector object, and copying them per resolution is waste).
    pub contributions: &'a [&'a Contribution],
    /// The per-object overrides.
    pub overrides: &'a BTreeMap<AttributeName, Override>,
    /// The connector objects joined after the change, with their raw attributes.
    pub links: &'a [Link<'a>],
    /// The event that caused the update.
    pub cause: EventId,
}

/// What the flow stage needs about one mesh object besides its state: an [`UpdateInput`]
/// without `before`, for [`update_mesh_object_in_place`].
#[derive(Debug, Clone, Copy)]
pub struct UpdateSources<'a> {
    /// Every flow contribution of the connector objects joined after the change.
    pub contributions: &'a [&'a Contribution],
    /// The per-object overrides.
    pub overrides: &'a BTreeMap<AttributeName, Override>,
    /// The connector objects joined after the change, with their raw attributes.
    pub links: &'a [Link<'a>],
    /// The event that caused the update.
    pub cause: EventId,
    /// The mesh attributes whose contributions changed since `state` was last resolved (those
    /// of the contributions withdrawn and of those added, in any order, repeats allowed), when
    /// the caller knows, with the rules and the overrides unchanged. Resolution then revisits
    /// only these and the override and composer targets; the outcome is the same as
    /// revisiting all. `None` revisits all. Ignored while the
    /// trace records, whose explanation names every attribute, and for a new mesh object.
    pub changed_attributes: Option<&'a [AttributeName]>,
    /// The composer contributions of the resolution that gave `state`, when the caller kept
    /// them: a composer rule whose inputs kept their values, and that does not read `Now()`,
    /// offers its previous value again instead of being evaluated. `None` evaluates all.
    pub previous_composed: Option<&'a [Contribution]>,
}

/// The flow stage's outcome for one mesh object.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshObjectUpdate {
    /// The state after the change (persist it).
    pub after: MeshObjectState,
    /// The change to publish on MESH_OBJECTS; `None` when nothing visible changed.
    pub changed: Option<MeshObjectChanged>,
    /// The composer contributions (persist them for lineage; they are recomputed each time).
    pub composed: Vec<Contribution>,
    /// Scripts that failed.
    pub transform_errors: Vec<TransformError>,
    /// Why.
    pub trace: Trace,
}

/// The flow stage's outcome for a mesh object updated in place: a [`MeshObjectUpdate`]
/// whose `after` is the state that was passed in.
#[derive(Debug, Clone, PartialEq)]
pub struct InPlaceUpdate {
    /// The change to publish on MESH_OBJECTS; `None` when nothing visible changed.
    pub changed: Option<MeshObjectChanged>,
    /// The composer contributions (persist them for lineage; they are recomputed each time).
    pub composed: Vec<Contribution>,
    /// Scripts that failed.
    pub transform_errors: Vec<TransformError>,
    /// Why.
    pub trace: Trace,
}

/// A short list for the length of one resolution: on the stack unless it grows long.
type Scratch<T> = SmallVec<[T; 16]>;

/// The order of contributions: the smallest key wins.
fn rank(c: &Contribution) -> (Reverse<Confidence>, &Source) {
    (Reverse(c.confidence), &c.source)
}

/// Sorts `contributions` in resolution order: the winner first (highest confidence; ties
/// broken by source, as resolution breaks them).
pub fn sort_in_resolution_order(contributions: &mut [&Contribution]) {
    contributions.sort_by(|a, b| rank(a).cmp(&rank(b)));
}

/// A connector object joined to a mesh object as flow stores it: its raw attributes and the
/// change event they came from.
#[derive(Debug, Clone, Copy)]
pub struct StoredSource<'a> {
    /// The connector object.
    pub object: &'a mesh_model::ConnectorObjectRef,
    /// Its raw attributes.
    pub attributes: &'a Attributes,
    /// The change event they came from.
    pub event: EventId,
    /// That event's source time.
    pub event_time: DateTime<Utc>,
}

/// A mesh object resolved again from its stored sources.
#[derive(Debug, Clone, PartialEq)]
pub struct Reresolved {
    /// The resolution: the new state, the change, the composer contributions.
    pub update: MeshObjectUpdate,
    /// Every inbound flow contribution, per source in input order.
    pub contributions: Vec<Contribution>,
}

/// Runs inbound flow over every joined connector object of `before` and resolves it again
/// under `rules`: what the flow service does to every mesh object when a new rule version
/// comes into force, what a preview of a candidate rule set computes, and where lineage's
/// candidates come from. Flow's transform errors are reported with resolution's.
pub fn resolve_from_sources(
    rules: &RuleSet,
    before: &MeshObjectState,
    sources: &[StoredSource<'_>],
    overrides: &BTreeMap<AttributeName, Override>,
    cause: EventId,
    now: DateTime<Utc>,
) -> Reresolved {
    let mut contributions = Vec::new();
    let mut transform_errors = Vec::new();
    for source in sources {
        let outcome = crate::flow(
            rules,
            source.object,
            source.attributes,
            before.id,
            source.event,
            source.event_time,
            Trace::disabled(),
        );
        contributions.extend(outcome.contributions);
        transform_errors.extend(outcome.transform_errors);
    }
    let borrowed: Vec<&Contribution> = contributions.iter().collect();
    let links: Vec<crate::Link<'_>> = sources
        .iter()
        .map(|s| crate::Link {
            object: s.object,
            attributes: s.attributes,
        })
        .collect();
    let mut update = update_mesh_object(
        rules,
        &UpdateInput {
            before,
            contributions: &borrowed,
            overrides,
            links: &links,
            cause,
        },
        now,
        Trace::disabled(),
    );
    transform_errors.append(&mut update.transform_errors);
    update.transform_errors = transform_errors;
    Reresolved {
        update,
        contributions,
    }
}

fn lineage_of(c: &Contribution) -> Lineage {
    Lineage {
        source: c.source.clone(),
        confidence: c.confidence,
        event: c.event,
    }
}

/// True when `lineage` already names `c` as the winner.
fn is_lineage_of(lineage: &Lineage, c: &Contribution) -> bool {
    lineage.confidence == c.confidence && lineage.event == c.event && lineage.source == c.source
}

/// Resolves, composes and decides the lifecycle of one mesh object (see the module docs).
///
/// This is [`update_mesh_object_in_place`] on a copy of `input.before`.
pub fn update_mesh_object(
    rules: &RuleSet,
    input: &UpdateInput<'_>,
    now: DateTime<Utc>,
    trace: Trace,
) -> MeshObjectUpdate {
    let mut after = input.before.clone();
    let update = update_mesh_object_in_place(
        rules,
        &mut after,
        &UpdateSources {
            contributions: input.contributions,
            overrides: input.overrides,
            links: input.links,
            cause: input.cause,
            changed_attributes: None,
            previous_composed: None,
        },
        now,
        trace,
    );
    MeshObjectUpdate {
        after,
        changed: update.changed,
        composed: update.composed,
        transform_errors: update.transform_errors,
        trace: update.trace,
    }
}

/// Resolves, composes and decides the lifecycle of the mesh object `state` (see the module
/// docs), updating it in place: the outcome of [`update_mesh_object`], without copying the
/// values and the lineage that did not change. Resolution starts afresh from the
/// contributions every time; only the writing of its result is incremental.
pub fn update_mesh_object_in_place(
    rules: &RuleSet,
    state: &mut MeshObjectState,
    sources: &UpdateSources<'_>,
    now: DateTime<Utc>,
    mut trace: Trace,
) -> InPlaceUpdate {
    let context = EvalContext::new(now);
    let mut transform_errors = Vec::new();
    // Everything a mesh object without attributes ends up with is a change.
    let started_empty = state.attributes.is_empty();
    let mut journal = Journal::new(started_empty);

    let composers = rules.composer_rules(&state.object_type);
    // A new mesh object has nothing to keep: resolving all of it is the shorter way.
    let incremental = sources
        .changed_attributes
        .filter(|_| !trace.is_enabled() && state.version > 0);
    match incremental {
        None => resolve_all(state, sources, composers.len(), &mut journal, &mut trace),
        Some(changed) => resolve_changed(state, sources, changed, composers, &mut journal),
    }
    apply_overrides(sources, state, &mut journal, &mut trace);

    // Composition, in dependency order, over what is resolved so far. A rule comes after every
    // rule whose target it reads, so the values it reads are final when it runs: when they are
    // the ones it read last time, so is its result.
    let mut composed = Vec::with_capacity(composers.len());
    for rule in composers {
        let program = &rule.transform.program;
        let previous = sources
            .previous_composed
            .and_then(|previous| {
                previous
                    .iter()
                    .find(|c| matches!(&c.source, Source::Composer { rule: r } if *r == rule.name))
            })
            .filter(|_| {
                !program.reads_now()
                    && program
                        .attributes()
                        .all(|read| journal.unchanged(&state.attributes, read))
            });
        let evaluated = match previous {
            Some(previous) => Ok(previous.value.clone()),
            None => program.eval(&state.attributes, &context),
        };
        let value = match evaluated {
            Ok(value) => value,
            Err(error) => {
                trace.note(|| {
                    format!(
                        "composer rule {} failed: {} {error}; contribution skipped",
                        rule.name,
                        error.code()
                    )
                });
                transform_errors.push(TransformError {
                    rule: rule.name.to_string(),
                    subject: format!("mesh object {}", state.id),
                    attribute: Some(rule.target_attribute.clone()),
                    code: error.code().to_owned(),
                    message: error.to_string(),
                    event: sources.cause,
                });
                continue;
            }
        };
        if is_no_value(&value) {
            continue;
        }
        let contribution = Contribution {
            mesh_object: state.id,
            attribute: rule.target_attribute.clone(),
            value,
            confidence: rule.confidence,
            source: Source::Composer {
                rule: rule.name.clone(),
            },
            event: sources.cause,
        };
        let pinned = sources.overrides.contains_key(&rule.target_attribute);
        let current = state.lineage.get(&rule.target_attribute);
        let wins = !pinned
            && current.is_none_or(|l: &Lineage| {
                (Reverse(contribution.confidence), &contribution.source)
                    < (Reverse(l.confidence), &l.source)
            });
        trace.note(|| match (wins, current) {
            (true, None) => format!(
                "{} = {} from composer rule {} at confidence {}",
                rule.target_attribute,
                show(&contribution.value),
                rule.name,
                rule.confidence
            ),
            (true, Some(l)) => format!(
                "{} = {} from composer rule {} at confidence {}; beats {} at {}",
                rule.target_attribute,
                show(&contribution.value),
                rule.name,
                rule.confidence,
                l.source,
                l.confidence
            ),
            (false, _) => format!(
                "composer rule {} offers {} = {} at confidence {}; not used, a higher source wins",
                rule.name,
                rule.target_attribute,
                show(&contribution.value),
                rule.confidence
            ),
        });
        if wins {
            // Setting an attribute to the value it has changes nothing, not even its spelling.
            if state.attributes.get(&rule.target_attribute) != Some(&contribution.value) {
                journal.set(
                    &mut state.attributes,
                    &rule.target_attribute,
                    contribution.value.clone(),
                );
            }
            match state.lineage.get_mut(&rule.target_attribute) {
                Some(slot) => {
                    if !is_lineage_of(slot, &contribution) {
                        *slot = lineage_of(&contribution);
                    }
                }
                None => {
                    state
                        .lineage
                        .insert(rule.target_attribute.clone(), lineage_of(&contribution));
                }
            }
        }
        composed.push(contribution);
    }

    let decision = lifecycle(
        rules,
        sources.links,
        state.authority_seen,
        sources.cause,
        &context,
        &mut trace,
    );
    transform_errors.extend(decision.transform_errors);

    let changes = if started_empty {
        let mut changes = Vec::with_capacity(state.attributes.len());
        for (name, value) in &state.attributes {
            changes.push(AttributeChange {
                name: name.clone(),
                old: Value::Null,
                new: value.clone(),
            });
        }
        changes
    } else {
        journal.changes(&state.attributes)
    };
    let lifecycle_changed = decision.state != state.lifecycle;
    let is_new = state.version == 0;
    let previous_lifecycle = state.lifecycle;
    let changed = !changes.is_empty() || lifecycle_changed || is_new;
    state.lifecycle = decision.state;
    state.authority_seen = decision.authority_seen;
    let changed = changed.then(|| {
        state.version += 1;
        MeshObjectChanged {
            event_id: changed_event_id(sources.cause, state.id),
            cause: sources.cause,
            mesh_object: state.id,
            object_type: state.object_type.clone(),
            version: state.version,
            lifecycle: decision.state,
            previous_lifecycle: (!is_new && lifecycle_changed).then_some(previous_lifecycle),
            changes,
            occurred_at: now,
            rule_version: rules.version(),
        }
    });
    if changed.is_none() {
        trace.note(|| format!("mesh object {} unchanged", state.id));
    }
    InPlaceUpdate {
        changed,
        composed,
        transform_errors,
        trace,
    }
}

/// The value each attribute had before the update, recorded the first time the update
/// touches it. Attributes it never touches keep their value, so the change of the mesh object
/// is computed from these alone, without comparing or copying the rest.
///
/// Room for sixteen on the stack. A mesh object that had no attributes records nothing: every
/// value it ends up with is new, and its change lists them all.
struct Journal {
    entries: SmallVec<[(AttributeName, Option<Value>); 16]>,
    /// True when the state had no attributes before the update.
    all_new: bool,
}

impl Journal {
    fn new(all_new: bool) -> Self {
        Self {
            entries: SmallVec::new(),
            all_new,
        }
    }

    fn touched(&self, name: &AttributeName) -> bool {
        self.entries.iter().any(|(n, _)| n == name)
    }

    /// True when `name` has in `attributes` the value it had before the update.
    fn unchanged(&self, attributes: &Attributes, name: &AttributeName) -> bool {
        if self.all_new {
            return attributes.get(name).is_none();
        }
        match self.entries.iter().find(|(n, _)| n == name) {
            None => true,
            Some((_, before)) => before.as_ref() == attributes.get(name),
        }
    }

    /// Sets `name` to `value` as [`Attributes::insert`] does, recording what it replaces.
    fn set(&mut self, attributes: &mut Attributes, name: &AttributeName, value: Value) {
        if self.all_new || self.touched(name) {
            attributes.insert(name.clone(), value);
            return;
        }
        let spelled = attributes
            .get_key_value(name)
            .map_or_else(|| name.clone(), |(n, _)| n.clone());
        let previous = attributes.insert(name.clone(), value);
        self.entries.push((spelled, previous));
    }

    /// Removes `name`, recording its value.
    fn remove(&mut self, attributes: &mut Attributes, name: &AttributeName) {
        if self.all_new {
            attributes.remove(name);
            return;
        }
        let spelled = attributes.get_key_value(name).map(|(n, _)| n.clone());
        let previous = attributes.remove(name);
        if !self.touched(name)
            && let Some(spelled) = spelled
        {
            self.entries.push((spelled, previous));
        }
    }

    /// Exactly the attributes whose value differs between before and `after`, in name order,
    /// as [`diff`] would find them. Not for a journal of a state that had no attributes.
    fn changes(&mut self, after: &Attributes) -> Vec<AttributeChange> {
        self.entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut changes = Vec::with_capacity(self.entries.len());
        for (name, old) in self.entries.drain(..) {
            match (old, after.get_key_value(&name)) {
                (Some(old), Some((name, new))) => {
                    if old != *new {
                        changes.push(AttributeChange {
                            name: name.clone(),
                            old,
                            new: new.clone(),
                        });
                    }
                }
                (None, Some((name, new))) => changes.push(AttributeChange {
                    name: name.clone(),
                    old: Value::Null,
                    new: new.clone(),
                }),
                (Some(old), None) => changes.push(AttributeChange {
                    name,
                    old,
                    new: Value::Null,
                }),
                (None, None) => {}
            }
        }
        changes
    }
}

/// Resolves every attribute from the flow contributions: the best per attribute.
fn resolve_all(
    state: &mut MeshObjectState,
    sources: &UpdateSources<'_>,
    composers: usize,
    journal: &mut Journal,
    trace: &mut Trace,
) {
    // Grouping by attribute with a stable sort keeps each group in input order, so that an
    // attribute keeps the spelling of its first contribution and, of two equally ranked
    // contributions, the first wins. The groups come out in name order.
    let mut by_attribute: Scratch<&Contribution> = sources.contributions.iter().copied().collect();
    by_attribute.sort_by(|a, b| a.attribute.cmp(&b.attribute));
    let mut winners: Scratch<(&AttributeName, &Contribution)> = Scratch::new();
    for group in by_attribute.chunk_by(|a, b| a.attribute == b.attribute) {
        let Some((&first, rest)) = group.split_first() else {
            continue;
        };
        let winner = rest.iter().fold(
            first,
            |best, &c| if rank(c) < rank(best) { c } else { best },
        );
        let name = &first.attribute;
        if trace.is_enabled() {
            let losers: Vec<String> = sources
                .contributions
                .iter()
                .filter(|c| c.attribute == *name && !std::ptr::eq(**c, winner))
                .map(|c| format!("{} at {}", c.source, c.confidence))
                .collect();
            trace.note(|| {
                let mut line = format!(
                    "{name} = {} from {} at confidence {}",
                    show(&winner.value),
                    winner.source,
                    winner.confidence
                );
                if !losers.is_empty() {
                    line.push_str(&format!("; beats {}", losers.join(", ")));
                }
                line
            });
        }
        winners.push((name, winner));
    }
    write_flow_winners(
        &mut state.attributes,
        &winners,
        composers + sources.overrides.len(),
        journal,
    );
    write_flow_lineage(
        &mut state.lineage,
        &winners,
        composers + sources.overrides.len(),
    );
}

/// Resolves again only what `changed` can have changed (see
/// [`UpdateSources::changed_attributes`]): every other attribute has the same contributions
/// as when `state` was resolved, and holds its flow winner, so it would resolve to what it
/// holds.
fn resolve_changed(
    state: &mut MeshObjectState,
    sources: &UpdateSources<'_>,
    changed: &[AttributeName],
    composers: &[ComposerRule],
    journal: &mut Journal,
) {
    // An attribute not won by a flow rule is an override or a composer target: with the
    // overrides unchanged, these cover every attribute whose value is not its flow winner.
    // A handful, repeats among them: a scan drops the repeats for less than a sort. The
    // attributes are independent of one another, so the order they are visited in is free.
    let mut revisit: Scratch<&AttributeName> = Scratch::new();
    for name in changed
        .iter()
        .chain(composers.iter().map(|r| &r.target_attribute))
        .chain(sources.overrides.keys())
    {
        if !revisit.contains(&name) {
            revisit.push(name);
        }
    }
    for name in revisit {
        // The first contribution in input order gives the spelling; ties keep the first.
        let mut matching = sources
            .contributions
            .iter()
            .copied()
            .filter(|c| c.attribute == *name);
        let winner = matching.next().map(|first| {
            let best = matching.fold(first, |best, c| if rank(c) < rank(best) { c } else { best });
            (&first.attribute, best)
        });
        write_flow_winner(state, name, winner, journal);
    }
}

/// Makes attribute `name` of `state` hold its flow winner (under the spelling given with
/// it), or nothing when it has none, as [`write_flow_winners`] and [`write_flow_lineage`]
/// would.
fn write_flow_winner(
    state: &mut MeshObjectState,
    name: &AttributeName,
    winner: Option<(&AttributeName, &Contribution)>,
    journal: &mut Journal,
) {
    let Some((spelled, winner)) = winner else {
        journal.remove(&mut state.attributes, name);
        state.lineage.remove(name);
        return;
    };
    match state.attributes.get_key_value(name) {
        Some((held, value)) if held.as_str() == spelled.as_str() => {
            if *value != winner.value {
                journal.set(&mut state.attributes, spelled, winner.value.clone());
            }
        }
        Some(_) => {
            // A new spelling: a set keeps a name's first spelling, so replace the entry.
            journal.remove(&mut state.attributes, name);
            journal.set(&mut state.attributes, spelled, winner.value.clone());
        }
        None => journal.set(&mut state.attributes, spelled, winner.value.clone()),
    }
    match state.lineage.get_key_value(name) {
        Some((held, current)) if held.as_str() == spelled.as_str() => {
            if !is_lineage_of(current, winner)
                && let Some(slot) = state.lineage.get_mut(name)
            {
                *slot = lineage_of(winner);
            }
        }
        Some(_) => {
            state.lineage.remove(name);
            state.lineage.insert(spelled.clone(), lineage_of(winner));
        }
        None => {
            state.lineage.insert(spelled.clone(), lineage_of(winner));
        }
    }
}

/// Makes `attributes` hold exactly the flow winners (in name order), keeping the values that
/// did not change rather than copying them again, and journaling the ones it replaces.
fn write_flow_winners(
    attributes: &mut Attributes,
    winners: &[(&AttributeName, &Contribution)],
    room: usize,
    journal: &mut Journal,
) {
    if journal.all_new {
        // The state had no attributes (the journal was made for it just before): nothing to
        // keep and nothing to journal; every winner, in name order, appended.
        let mut after = Attributes::with_capacity(winners.len() + room);
        after.extend(
            winners
                .iter()
                .map(|&(name, winner)| (name.clone(), winner.value.clone())),
        );
        *attributes = after;
        return;
    }
    journal
        .entries
        .reserve(winners.len().max(attributes.len()) + room);
    let mut before = std::mem::take(attributes).into_iter().peekable();
    let mut after = Attributes::with_capacity(winners.len() + room);
    for &(name, winner) in winners {
        // Attributes before this one no longer have a flow winner.
        while let Some((gone, value)) = before.next_if(|(n, _)| n < name) {
            journal.entries.push((gone, Some(value)));
        }
        match before.next_if(|(n, _)| n == name) {
            Some((_, value)) if value == winner.value => {
                after.insert(name.clone(), value);
            }
            Some((spelled, value)) => {
                journal.entries.push((spelled, Some(value)));
                after.insert(name.clone(), winner.value.clone());
            }
            None => {
                journal.entries.push((name.clone(), None));
                after.insert(name.clone(), winner.value.clone());
            }
        }
    }
    for (gone, value) in before {
        journal.entries.push((gone, Some(value)));
    }
    *attributes = after;
}

/// Makes `lineage` name exactly the flow winners, under their spelling, touching only the
/// entries whose winner changed.
fn write_flow_lineage(
    lineage: &mut LineageMap,
    winners: &[(&AttributeName, &Contribution)],
    room: usize,
) {
    if lineage.is_empty() {
        // A new mesh object: every winner, in name order, appended.
        lineage.reserve(winners.len() + room);
        for &(name, winner) in winners {
            lineage.insert(name.clone(), lineage_of(winner));
        }
        return;
    }
    // Both in name order: one pass drops the attributes that lost their last contribution.
    let mut next = winners.iter().peekable();
    lineage.retain(|name, _| {
        while next.next_if(|(w, _)| *w < name).is_some() {}
        next.peek().is_some_and(|(w, _)| *w == name)
    });
    for &(name, winner) in winners {
        match lineage.get_key_value(name) {
            Some((spelled, current)) if spelled.as_str() == name.as_str() => {
                if !is_lineage_of(current, winner)
                    && let Some(slot) = lineage.get_mut(name)
                {
                    *slot = lineage_of(winner);
                }
            }
            Some(_) => {
                // A new spelling: the map keeps a key's first spelling, so replace the entry.
                lineage.remove(name);
                lineage.insert(name.clone(), lineage_of(winner));
            }
            None => {
                lineage.insert(name.clone(), lineage_of(winner));
            }
        }
    }
}

fn apply_overrides(
    sources: &UpdateSources<'_>,
    state: &mut MeshObjectState,
    journal: &mut Journal,
    trace: &mut Trace,
) {
    for (name, pin) in sources.overrides {
        trace.note(|| {
            format!(
                "{name} = {} pinned by an override ({}), above every rule",
                show(&pin.value),
                pin.reason
            )
        });
        state.lineage.remove(name);
        if pin.value.is_null() {
            journal.remove(&mut state.attributes, name);
        } else {
            journal.set(&mut state.attributes, name, pin.value.clone());
            state.lineage.insert(
                name.clone(),
                Lineage {
                    source: Source::Override,
                    confidence: Confidence::MAX,
                    event: sources.cause,
                },
            );
        }
    }
}

/// The id of the MeshObjectChanged a cause produced for a mesh object: deterministic, and
/// distinct per mesh object because one event can change several (a disconnector retry).
pub fn changed_event_id(cause: EventId, mesh_object: MeshObjectId) -> EventId {
    let mut name = [0u8; 32];
    let (first, second) = name.split_at_mut(16);
    first.copy_from_slice(cause.as_uuid().as_bytes());
    second.copy_from_slice(mesh_object.as_uuid().as_bytes());
    const FLOW: IdNamespace = IdNamespace::new("flow");
    EventId::derive_in(FLOW, &name)
}

/// Returns exactly the attributes whose value differs, in name order.
pub fn diff(old: &Attributes, new: &Attributes) -> Vec<AttributeChange> {
    let mut changes = Vec::new();
    let mut old_iter = old.iter().peekable();
    let mut new_iter = new.iter().peekable();
    loop {
        let order = match (old_iter.peek(), new_iter.peek()) {
            (None, None) => break,
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some((a, _)), Some((b, _))) => a.cmp(b),
        };
        match order {
            std::cmp::Ordering::Less => {
                if let Some((name, value)) = old_iter.next() {
                    changes.push(AttributeChange {
                        name: name.clone(),
                        old: value.clone(),
                        new: Value::Null,
                    });
                }
            }
            std::cmp::Ordering::Greater => {
                if let Some((name, value)) = new_iter.next() {
                    changes.push(AttributeChange {
                        name: name.clone(),
                        old: Value::Null,
                        new: value.clone(),
                    });
                }
            }
            std::cmp::Ordering::Equal => {
                if let (Some((_, a)), Some((name, b))) = (old_iter.next(), new_iter.next())
                    && a != b
                {
                    changes.push(AttributeChange {
                        name: name.clone(),
                        old: a.clone(),
                        new: b.clone(),
                    });
                }
            }
        }
    }
    changes
}
