//! Lineage: why each attribute of a mesh object holds its value.
//!
//! The **winner** is the stored lineage (`mesh_objects.lineage`): the contribution whose value
//! the object actually holds. The **candidates** are not stored: they are recomputed from the
//! object's stored links (each joined connector object's raw attributes and the change event
//! they came from) and its overrides, under the rule version in force, by the engine's own
//! resolution (`mesh_engine::resolve_from_sources`), and listed in resolution order (best
//! first, ties broken as resolution breaks them). After a rule change that flow has not yet
//! applied to this object, the first candidate can therefore differ from the winner: the
//! candidates show what the rules in force would choose, the winner what the object holds.
//!
//! Composer contributions have no change event of their own: they are attributed to the
//! newest change event of the object's links (the one a resolution now would run for), and
//! scripts reading `Now()` see that event's time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use mesh_engine::flow::{Contribution, Source};
use mesh_engine::{Lineage, Override, RuleSet, StoredSource, resolve_from_sources};
use mesh_model::{AttributeName, ConnectorObjectRef, EventId, Value};
use mesh_proto::v1;
use mesh_store::pipeline::StoredLink;
use mesh_store::query::{StoredMeshObject, StoredOverride};

use crate::status;

/// What [`explain`] needs about one mesh object.
#[derive(Debug, Clone, Copy)]
pub(super) struct Explain<'a> {
    /// The rule set in force.
    pub rules: &'a RuleSet,
    /// The object as stored.
    pub object: &'a StoredMeshObject,
    /// Its links, withdrawal tombstones included.
    pub links: &'a BTreeMap<ConnectorObjectRef, StoredLink>,
    /// Its overrides.
    pub overrides: &'a [StoredOverride],
    /// The rule version of its stored state (stamped on the winner).
    pub rule_version: u64,
    /// Only these attributes; empty means all.
    pub only: &'a BTreeSet<AttributeName>,
}

/// The lineage of every attribute of the object (or of `only`), in name order.
pub(super) fn explain(input: &Explain<'_>) -> Vec<v1::AttributeLineage> {
    let state = &input.object.state;
    let times: HashMap<EventId, DateTime<Utc>> = input
        .links
        .values()
        .map(|link| (link.event, link.event_time))
        .collect();
    let candidates = recompute(input);
    let overrides: BTreeMap<&AttributeName, &StoredOverride> =
        input.overrides.iter().map(|o| (&o.name, o)).collect();
    let names: BTreeSet<&AttributeName> = state
        .attributes
        .iter()
        .map(|(name, _)| name)
        .chain(state.lineage.keys())
        .chain(candidates.keys())
        .chain(overrides.keys().copied())
        .filter(|name| input.only.is_empty() || input.only.contains(*name))
        .collect();
    let current = input.rules.version();
    names
        .into_iter()
        .map(|name| {
            let value = state.attributes.get(name).cloned().unwrap_or(Value::Null);
            let winner = state
                .lineage
                .get(name)
                .and_then(|l| winner_pb(l, &value, &times, input.rule_version));
            v1::AttributeLineage {
                name: name.as_str().to_owned(),
                value: Some(value.into()),
                winner,
                candidates: candidates
                    .get(name)
                    .map(|list| {
                        list.iter()
                            .map(|c| candidate_pb(c, input.links, &times, current))
                            .collect()
                    })
                    .unwrap_or_default(),
                r#override: overrides.get(name).map(|o| override_pb(o)),
            }
        })
        .collect()
}

/// Every contribution the rules in force make from the object's links, per attribute, in
/// resolution order.
fn recompute(input: &Explain<'_>) -> BTreeMap<AttributeName, Vec<Contribution>> {
    let linked: Vec<(&ConnectorObjectRef, &StoredLink)> =
        input.links.iter().filter(|(_, link)| link.linked).collect();
    let sources: Vec<StoredSource<'_>> = linked
        .iter()
        .map(|(object, link)| StoredSource {
            object,
            attributes: &link.attributes,
            event: link.event,
            event_time: link.event_time,
        })
        .collect();
    // The newest change of the object's sources causes a resolution now; without any, the
    // composers run over nothing and the time of the last write stands in.
    let (cause, now) = linked
        .iter()
        .max_by_key(|(_, link)| (link.event_time, link.source_sequence))
        .map_or_else(
            || {
                let id = input.object.state.id;
                (
                    EventId::derive("lineage", id.as_uuid().as_bytes()),
                    input.object.updated_at,
                )
            },
            |(_, link)| (link.event, link.event_time),
        );
    let overrides: BTreeMap<AttributeName, Override> = input
        .overrides
        .iter()
        .map(|o| {
            (
                o.name.clone(),
                Override {
                    value: o.value.clone(),
                    reason: o.reason.clone(),
                },
            )
        })
        .collect();
    let resolved = resolve_from_sources(
        input.rules,
        &input.object.state,
        &sources,
        &overrides,
        cause,
        now,
    );
    let mut by_attribute: BTreeMap<AttributeName, Vec<&Contribution>> = BTreeMap::new();
    for contribution in resolved
        .contributions
        .iter()
        .chain(&resolved.update.composed)
    {
        by_attribute
            .entry(contribution.attribute.clone())
            .or_default()
            .push(contribution);
    }
    by_attribute
        .into_iter()
        .map(|(name, mut list)| {
            mesh_engine::sort_in_resolution_order(&mut list);
            (name, list.into_iter().cloned().collect())
        })
        .collect()
}

/// The kind, connector and connector object of a contribution's source.
fn source_fields(
    source: &Source,
) -> (v1::ContributionKind, String, Option<v1::ConnectorObjectRef>) {
    match source {
        Source::Flow {
            connector_object, ..
        } => (
            v1::ContributionKind::InboundFlow,
            connector_object.connector.to_string(),
            Some(connector_object.as_ref().clone().into()),
        ),
        Source::Composer { .. } | Source::Override => {
            (v1::ContributionKind::Composer, String::new(), None)
        }
    }
}

/// The stored winner on the wire; `None` when an override decides.
fn winner_pb(
    lineage: &Lineage,
    value: &Value,
    times: &HashMap<EventId, DateTime<Utc>>,
    rule_version: u64,
) -> Option<v1::Contribution> {
    if lineage.source == Source::Override {
        return None;
    }
    let (kind, connector, connector_object) = source_fields(&lineage.source);
    Some(v1::Contribution {
        kind: kind.into(),
        connector,
        connector_object,
        rule: lineage
            .source
            .rule()
            .map(ToString::to_string)
            .unwrap_or_default(),
        confidence: u32::from(lineage.confidence.get()),
        value: Some(value.clone().into()),
        event_id: lineage.event.to_string(),
        contributed_at: times.get(&lineage.event).copied().map(status::timestamp),
        rule_version,
    })
}

/// A recomputed candidate on the wire: a flow contribution is dated by its link's change
/// event, a composed one by the cause of the recomputation.
fn candidate_pb(
    contribution: &Contribution,
    links: &BTreeMap<ConnectorObjectRef, StoredLink>,
    times: &HashMap<EventId, DateTime<Utc>>,
    rule_version: u64,
) -> v1::Contribution {
    let (kind, connector, connector_object) = source_fields(&contribution.source);
    let at = contribution
        .source
        .connector_object()
        .and_then(|object| links.get(object))
        .map(|link| link.event_time)
        .or_else(|| times.get(&contribution.event).copied());
    v1::Contribution {
        kind: kind.into(),
        connector,
        connector_object,
        rule: contribution
            .source
            .rule()
            .map(ToString::to_string)
            .unwrap_or_default(),
        confidence: u32::from(contribution.confidence.get()),
        value: Some(contribution.value.clone().into()),
        event_id: contribution.event.to_string(),
        contributed_at: at.map(status::timestamp),
        rule_version,
    }
}

fn override_pb(pin: &StoredOverride) -> v1::AttributeOverride {
    v1::AttributeOverride {
        value: Some(pin.value.clone().into()),
        actor: pin.actor.clone().unwrap_or_default(),
        reason: pin.reason.clone(),
        set_at: Some(status::timestamp(pin.set_at)),
    }
}
