//! Resolution gives the same mesh object however it is run: from scratch
//! ([`update_mesh_object`]), in place, and in place revisiting only the attributes whose
//! contributions changed and reusing composer results whose inputs kept their values.
//!
//! The reference is the original algorithm, kept here as written before resolution learnt to
//! work in place: build every attribute and lineage entry afresh, then diff against the state
//! before. Random histories of connector object changes and overrides run through all three,
//! and after every step the states (spellings included), the changes, the composer
//! contributions and the transform errors must agree.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use mesh_engine::flow::is_no_value;
use mesh_engine::resolve::{changed_event_id, diff};
use mesh_engine::{
    Contribution, Lineage, Link, MeshObjectState, MeshObjectUpdate, Override, RuleSet, Source,
    SourceFile, Trace, TransformError, UpdateInput, UpdateSources, flow, lifecycle, load,
    update_mesh_object, update_mesh_object_in_place,
};
use mesh_expr::EvalContext;
use mesh_model::{
    AttributeName, Attributes, Confidence, ConnectorId, ConnectorObjectRef, EventId, ExternalId,
    MeshObjectChanged, MeshObjectId, ObjectType, Value,
};
use proptest::prelude::*;

/// Ties at equal confidence (hr and saas both give FirstName at 95, under two spellings), a
/// scripted flow rule, composers reading flow values and one another, a composer reading
/// `Now()`, one that fails at run time, and an authoritative connector.
const RULES: &str = r#"
kind: Connector
metadata: { name: hr }
spec: { type: hr-csv, objectTypes: [User], externalIdAttribute: employeeId,
        authoritative: true, inactiveWhen: 'status == "Terminated"' }
---
kind: Connector
metadata: { name: ad }
spec: { type: ldap, objectTypes: [User], externalIdAttribute: objectGUID }
---
kind: Connector
metadata: { name: saas }
spec: { type: scim-inbound, objectTypes: [User], externalIdAttribute: id }
---
kind: FlowRule
metadata: { name: hr-first-name }
spec: { connector: hr, direction: inbound, sourceAttribute: givenName,
        targetAttribute: FirstName, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-last-name }
spec: { connector: hr, direction: inbound, sourceAttribute: surname,
        targetAttribute: LastName, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-display-name }
spec: { connector: hr, direction: inbound, sourceAttribute: displayName,
        targetAttribute: DisplayName, confidence: 95 }
---
kind: FlowRule
metadata: { name: hr-status }
spec: { connector: hr, direction: inbound, sourceAttribute: status,
        targetAttribute: Status, confidence: 95 }
---
kind: FlowRule
metadata: { name: ad-first-name }
spec: { connector: ad, direction: inbound, sourceAttribute: givenName,
        targetAttribute: firstname, confidence: 80 }
---
kind: FlowRule
metadata: { name: ad-last-name }
spec: { connector: ad, direction: inbound, sourceAttribute: sn,
        targetAttribute: LastName, confidence: 80 }
---
kind: FlowRule
metadata: { name: ad-display-name }
spec: { connector: ad, direction: inbound, sourceAttribute: displayName,
        targetAttribute: DisplayName, confidence: 80,
        transformScript: 'Concat(Left(givenName, 1), ". ", sn)' }
---
kind: FlowRule
metadata: { name: ad-sam }
spec: { connector: ad, direction: inbound, sourceAttribute: sAMAccountName,
        targetAttribute: SamAccountName, confidence: 95 }
---
kind: FlowRule
metadata: { name: saas-first-name }
spec: { connector: saas, direction: inbound, sourceAttribute: givenName,
        targetAttribute: FIRSTNAME, confidence: 95 }
---
kind: FlowRule
metadata: { name: saas-status }
spec: { connector: saas, direction: inbound, sourceAttribute: status,
        targetAttribute: Status, confidence: 95 }
---
kind: MeshComposerRule
metadata: { name: compose-sam }
spec: { objectType: User, targetAttribute: SamAccountName, confidence: 90,
        transformScript: 'ToLower(Concat(Left(FirstName, 1), LastName))' }
---
kind: MeshComposerRule
metadata: { name: generated-display-name }
spec: { objectType: User, targetAttribute: DisplayName, confidence: 60,
        transformScript: 'Concat(FirstName, " ", LastName)' }
---
kind: MeshComposerRule
metadata: { name: login }
spec: { objectType: User, targetAttribute: Login, confidence: 50,
        transformScript: 'Concat(SamAccountName, "@corp")' }
---
kind: MeshComposerRule
metadata: { name: stamp }
spec: { objectType: User, targetAttribute: Stamp, confidence: 50,
        transformScript: 'Concat(Format(Now(), "%S"), Status)' }
---
kind: MeshComposerRule
metadata: { name: fragile }
spec: { objectType: User, targetAttribute: Fragile, confidence: 50,
        transformScript: 'Left(Status, Length)' }
"#;

fn rules() -> RuleSet {
    load(&[SourceFile::new("rules.yaml", RULES)]).unwrap()
}

fn name(s: &str) -> AttributeName {
    AttributeName::parse(s).unwrap()
}

fn object(connector: &str) -> ConnectorObjectRef {
    ConnectorObjectRef {
        connector: ConnectorId::parse(connector).unwrap(),
        object_type: ObjectType::parse("User").unwrap(),
        external_id: ExternalId::parse(&format!("{connector}-1")).unwrap(),
    }
}

// ---------------------------------------------------------------------------------------
// The reference: resolution as first written.

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

fn reference_update(
    rules: &RuleSet,
    input: &UpdateInput<'_>,
    now: DateTime<Utc>,
) -> MeshObjectUpdate {
    let before = input.before;
    let context = EvalContext::new(now);
    let mut trace = Trace::disabled();
    let mut transform_errors = Vec::new();
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
        attributes.insert((*name).clone(), winner.value.clone());
        lineage.insert((*name).clone(), lineage_of(winner));
    }
    for (name, pin) in input.overrides {
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
    let mut composed = Vec::new();
    for rule in rules.composer_rules(&before.object_type) {
        let value = match rule.transform.program.eval(&attributes, &context) {
            Ok(value) => value,
            Err(error) => {
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
        // The original algorithm keeps a B-tree map; the state holds the same entries.
        lineage: lineage.into(),
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
    MeshObjectUpdate {
        after,
        changed,
        composed,
        transform_errors,
        trace,
    }
}

// ---------------------------------------------------------------------------------------
// Random histories.

/// One step of a history.
#[derive(Debug, Clone)]
enum Step {
    /// Connector object `connector` now has these raw attributes (or is gone, for `None`).
    Change {
        connector: &'static str,
        raw: Option<Vec<(&'static str, &'static str)>>,
    },
    /// Pin (or unpin, for `None`) an attribute.
    Override {
        attribute: &'static str,
        value: Option<&'static str>,
    },
}

fn raw_attributes(
    connector: &'static str,
) -> impl Strategy<Value = Vec<(&'static str, &'static str)>> {
    let fields: &'static [(&'static str, &'static [&'static str])] = match connector {
        "hr" => &[
            ("givenName", &["Ada", "Alan", "", "ada"]),
            ("surname", &["Lovelace", "Turing"]),
            ("displayName", &["Ada Lovelace", "  ", "A. L."]),
            ("status", &["Active", "Terminated"]),
        ],
        "ad" => &[
            ("givenName", &["Ada", "Augusta"]),
            ("sn", &["Lovelace", "King"]),
            ("sAMAccountName", &["alovelace", "aking"]),
        ],
        _ => &[
            ("givenName", &["Ada", "Alan"]),
            ("status", &["Active", "Terminated"]),
            ("Length", &["x"]),
        ],
    };
    fields
        .iter()
        .map(|(field, values)| {
            prop::option::weighted(0.7, prop::sample::select(*values))
                .prop_map(move |v| v.map(|v| (*field, v)))
        })
        .collect::<Vec<_>>()
        .prop_map(|fields| fields.into_iter().flatten().collect())
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => prop::sample::select(vec!["hr", "ad", "saas"]).prop_flat_map(|connector| {
            prop::option::weighted(0.85, raw_attributes(connector))
                .prop_map(move |raw| Step::Change { connector, raw })
        }),
        1 => (
            prop::sample::select(vec!["DisplayName", "samaccountname", "Login", "Nickname"]),
            prop::option::of(prop::sample::select(vec!["Pinned", ""])),
        )
            .prop_map(|(attribute, value)| Step::Override { attribute, value }),
    ]
}

/// A state with the spelling of every name, to compare.
type Spelled = (String, Vec<(String, Value)>, Vec<(String, Lineage)>);

/// A change with the spelling of every name, to compare.
type SpelledChanges = Option<(u64, Vec<(String, Value, Value)>)>;

/// Compares two states including the spelling of every name.
fn spelled(state: &MeshObjectState) -> Spelled {
    (
        format!(
            "{:?} v{} {} {}",
            state.lifecycle, state.version, state.authority_seen, state.id
        ),
        state
            .attributes
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
            .collect(),
        state
            .lineage
            .iter()
            .map(|(n, l)| (n.as_str().to_owned(), l.clone()))
            .collect(),
    )
}

fn spelled_changes(changed: &Option<MeshObjectChanged>) -> SpelledChanges {
    changed.as_ref().map(|c| {
        (
            c.version,
            c.changes
                .iter()
                .map(|ch| (ch.name.as_str().to_owned(), ch.old.clone(), ch.new.clone()))
                .collect(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn resolution_in_place_and_incremental_match_the_reference(
        steps in prop::collection::vec(step(), 1..24),
    ) {
        let rules = rules();
        let id = MeshObjectId::derive("test", b"mesh object");
        let user = ObjectType::parse("User").unwrap();
        let start = DateTime::<Utc>::from_timestamp(1_767_225_600, 0).unwrap();
        let mut raw: BTreeMap<&str, Attributes> = BTreeMap::new();
        let mut contributions: BTreeMap<ConnectorObjectRef, Vec<Contribution>> = BTreeMap::new();
        let mut overrides: BTreeMap<AttributeName, Override> = BTreeMap::new();
        let mut reference = MeshObjectState::new(id, user.clone(), Some("1".to_owned()));
        let mut incremental = reference.clone();
        let mut composed: Vec<Contribution> = Vec::new();

        for (i, step) in steps.iter().enumerate() {
            let cause = EventId::derive("test", &i.to_be_bytes());
            let now = start + Duration::seconds(i64::try_from(i).unwrap() * 7);
            let changed: Option<Vec<AttributeName>> = match step {
                Step::Change { connector, raw: attributes } => {
                    let object = object(connector);
                    let old = contributions.remove(&object).unwrap_or_default();
                    let new = match attributes {
                        Some(pairs) => {
                            let attributes: Attributes =
                                pairs.iter().map(|(n, v)| (name(n), Value::from(*v))).collect();
                            let outcome = flow(&rules, &object, &attributes, id, cause, now, Trace::disabled());
                            raw.insert(connector, attributes);
                            contributions.insert(object.clone(), outcome.contributions.clone());
                            outcome.contributions
                        }
                        None => {
                            raw.remove(connector);
                            Vec::new()
                        }
                    };
                    let mut names: Vec<AttributeName> =
                        old.iter().chain(&new).map(|c| c.attribute.clone()).collect();
                    names.sort();
                    names.dedup();
                    Some(names)
                }
                Step::Override { attribute, value } => {
                    match value {
                        Some(v) => {
                            let value = if v.is_empty() { Value::Null } else { Value::from(*v) };
                            overrides.insert(name(attribute), Override { value, reason: "test".to_owned() });
                        }
                        None => {
                            overrides.remove(&name(attribute));
                        }
                    }
                    None
                }
            };
            let all: Vec<&Contribution> = contributions.values().flatten().collect();
            let objects: Vec<(ConnectorObjectRef, &Attributes)> =
                raw.iter().map(|(c, a)| (object(c), a)).collect();
            let links: Vec<Link<'_>> = objects
                .iter()
                .map(|(object, attributes)| Link { object, attributes })
                .collect();

            let expected = reference_update(
                &rules,
                &UpdateInput { before: &reference, contributions: &all, overrides: &overrides, links: &links, cause },
                now,
            );
            let copied = update_mesh_object(
                &rules,
                &UpdateInput { before: &reference, contributions: &all, overrides: &overrides, links: &links, cause },
                now,
                Trace::disabled(),
            );
            let in_place = update_mesh_object_in_place(
                &rules,
                &mut incremental,
                &UpdateSources {
                    contributions: &all,
                    overrides: &overrides,
                    links: &links,
                    cause,
                    changed_attributes: changed.as_deref(),
                    previous_composed: Some(&composed),
                },
                now,
                Trace::disabled(),
            );

            prop_assert_eq!(spelled(&copied.after), spelled(&expected.after), "step {}", i);
            prop_assert_eq!(spelled(&incremental), spelled(&expected.after), "step {}", i);
            prop_assert_eq!(&copied.changed, &expected.changed);
            prop_assert_eq!(&in_place.changed, &expected.changed);
            prop_assert_eq!(spelled_changes(&in_place.changed), spelled_changes(&expected.changed));
            prop_assert_eq!(&copied.composed, &expected.composed);
            prop_assert_eq!(&in_place.composed, &expected.composed);
            prop_assert_eq!(&copied.transform_errors, &expected.transform_errors);
            prop_assert_eq!(&in_place.transform_errors, &expected.transform_errors);
            reference = expected.after;
            composed = in_place.composed;
        }
    }
}
