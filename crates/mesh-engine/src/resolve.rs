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

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mesh_expr::EvalContext;
use mesh_model::{
    AttributeChange, AttributeName, Attributes, Confidence, EventId, LifecycleState,
    MeshObjectChanged, MeshObjectId, ObjectType, Value,
};
use serde::{Deserialize, Serialize};

use crate::flow::{Contribution, Source, TransformError, is_no_value};
use crate::lifecycle::{Link, lifecycle};
use crate::rules::RuleSet;
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
    pub lineage: BTreeMap<AttributeName, Lineage>,
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
            lineage: BTreeMap::new(),
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

/// The order of contributions: the smallest key wins.
fn rank(c: &Contribution) -> (Reverse<Confidence>, &Source) {
    (Reverse(c.confidence), &c.source)
}

fn lineage_of(c: &Contribution) -> Lineage {
    Lineage {
        source: c.source.clone(),
        confidence: c.confidence,
        event: c.event,
    }
}

/// Resolves, composes and decides the lifecycle of one mesh object (see the module docs).
pub fn update_mesh_object(
    rules: &RuleSet,
    input: &UpdateInput<'_>,
    now: DateTime<Utc>,
    mut trace: Trace,
) -> MeshObjectUpdate {
    let before = input.before;
    let context = EvalContext::new(now);
    let mut transform_errors = Vec::new();

    // Resolution over flow contributions: the best per attribute.
    let mut best: BTreeMap<&AttributeName, &Contribution> = BTreeMap::new();
    for &c in input.contributions {
        match best.get(&c.attribute) {
            Some(current) if rank(current) <= rank(c) => {}
            _ => {
                best.insert(&c.attribute, c);
            }
        }
    }
    let mut attributes = Attributes::new();
    let mut lineage = BTreeMap::new();
    for (name, winner) in &best {
        if trace.is_enabled() {
            let losers: Vec<String> = input
                .contributions
                .iter()
                .filter(|c| c.attribute == **name && !std::ptr::eq(**c, *winner))
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
        attributes.insert((*name).clone(), winner.value.clone());
        lineage.insert((*name).clone(), lineage_of(winner));
    }
    apply_overrides(input, &mut attributes, &mut lineage, &mut trace);

    // Composition, in dependency order, over what is resolved so far.
    let mut composed = Vec::new();
    for rule in rules.composer_rules(&before.object_type) {
        let value = match rule.transform.program.eval(&attributes, &context) {
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
                    subject: format!("mesh object {}", before.id),
                    attribute: Some(rule.target_attribute.clone()),
                    code: error.code().to_owned(),
                    message: error.to_string(),
                    event: input.cause,
                });
                continue;
            }
        };
        if is_no_value(&value) {
            continue;
        }
        let contribution = Contribution {
            mesh_object: before.id,
            attribute: rule.target_attribute.clone(),
            value,
            confidence: rule.confidence,
            source: Source::Composer {
                rule: rule.name.clone(),
            },
            event: input.cause,
        };
        let pinned = input.overrides.contains_key(&rule.target_attribute);
        let current = lineage.get(&rule.target_attribute);
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
            attributes.insert(rule.target_attribute.clone(), contribution.value.clone());
            lineage.insert(rule.target_attribute.clone(), lineage_of(&contribution));
        }
        composed.push(contribution);
    }

    let decision = lifecycle(
        rules,
        input.links,
        before.authority_seen,
        input.cause,
        &context,
        &mut trace,
    );
    transform_errors.extend(decision.transform_errors);

    let changes = diff(&before.attributes, &attributes);
    let lifecycle_changed = decision.state != before.lifecycle;
    let is_new = before.version == 0;
    let version = if changes.is_empty() && !lifecycle_changed && !is_new {
        before.version
    } else {
        before.version + 1
    };
    let after = MeshObjectState {
        id: before.id,
        object_type: before.object_type.clone(),
        anchor: before.anchor.clone(),
        version,
        lifecycle: decision.state,
        authority_seen: decision.authority_seen,
        attributes,
        lineage,
    };
    let changed = (version != before.version).then(|| MeshObjectChanged {
        event_id: changed_event_id(input.cause, before.id),
        cause: input.cause,
        mesh_object: before.id,
        object_type: before.object_type.clone(),
        version,
        lifecycle: decision.state,
        previous_lifecycle: (!is_new && lifecycle_changed).then_some(before.lifecycle),
        changes,
        occurred_at: now,
        rule_version: rules.version(),
    });
    if changed.is_none() {
        trace.note(|| format!("mesh object {} unchanged", before.id));
    }
    MeshObjectUpdate {
        after,
        changed,
        composed,
        transform_errors,
        trace,
    }
}

fn apply_overrides(
    input: &UpdateInput<'_>,
    attributes: &mut Attributes,
    lineage: &mut BTreeMap<AttributeName, Lineage>,
    trace: &mut Trace,
) {
    for (name, pin) in input.overrides {
        trace.note(|| {
            format!(
                "{name} = {} pinned by an override ({}), above every rule",
                show(&pin.value),
                pin.reason
            )
        });
        lineage.remove(name);
        if pin.value.is_null() {
            attributes.remove(name);
        } else {
            attributes.insert(name.clone(), pin.value.clone());
            lineage.insert(
                name.clone(),
                Lineage {
                    source: Source::Override,
                    confidence: Confidence::MAX,
                    event: input.cause,
                },
            );
        }
    }
}

/// The id of the MeshObjectChanged a cause produced for a mesh object: deterministic, and
/// distinct per mesh object because one event can change several (a disconnector retry).
pub fn changed_event_id(cause: EventId, mesh_object: MeshObjectId) -> EventId {
    let mut name = Vec::with_capacity(32);
    name.extend_from_slice(cause.as_uuid().as_bytes());
    name.extend_from_slice(mesh_object.as_uuid().as_bytes());
    EventId::derive("flow", &name)
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
