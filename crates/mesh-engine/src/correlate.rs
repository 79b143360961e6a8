//! Correlation: which mesh object a connector object belongs to (DESIGN.md §3 "Join").
//!
//! For an imported object, the join rules of its connector that apply to its object type are
//! tried in priority order. Each reads its `sourceAttribute` from the RAW connector attributes
//! (case-insensitive name lookup; flowed values are never used), searches mesh objects whose
//! `targetAttribute` has that value and, when none has, a mesh object anchored on it. The
//! first rule that finds exactly one mesh object joins. A rule that finds several is an
//! ambiguous match: nothing is joined, lower rules are not tried (they could only pick one of
//! the candidates on weaker evidence), and the object goes to the review queue. When no rule
//! matches and an anchor rule has a value, a new mesh object is projected, anchored on that
//! value, with an id derived from its object type and anchor so that two connectors importing
//! the same person at the same moment derive the same mesh object. Otherwise the object is a
//! disconnector, tried again when a mesh attribute one of its rules targets changes.
//!
//! A connector object that is already joined stays joined (method `existing`): a join is only
//! undone by deleting the object or by an operator, never by an attribute change, so a typo
//! fixed in HR does not split an identity.

use mesh_model::{
    AttributeName, Attributes, ChangeOperation, ConnectorObjectRef, IdNamespace, JoinMethod,
    JoinState, MeshObjectId, ObjectType, RuleName,
};
use serde::Serialize;
use smallvec::SmallVec;

use crate::port::{Found, MeshDirectory, join_key, join_key_ref};
use crate::rules::RuleSet;
use crate::trace::Trace;

/// What correlation needs to know about one connector object.
#[derive(Debug, Clone, Copy)]
pub struct CorrelateInput<'a> {
    /// The connector object.
    pub object: &'a ConnectorObjectRef,
    /// Upsert or delete.
    pub operation: ChangeOperation,
    /// Its raw attributes after the change (empty for a delete).
    pub attributes: &'a Attributes,
    /// Its state before the change; `None` for an object never seen.
    pub current: Option<&'a JoinState>,
}

/// A mesh object that correlation projected from an anchor rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMeshObject {
    /// Derived from the object type and the anchor ([`mesh_object_id`]).
    pub id: MeshObjectId,
    /// The connector object's type.
    pub object_type: ObjectType,
    /// The anchor value's join key.
    pub anchor: String,
    /// The mesh attribute the anchor rule targets.
    pub anchor_attribute: AttributeName,
}

/// The outcome of correlating one connector object.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// Where the connector object stands now.
    pub outcome: JoinState,
    /// The mesh object it was joined to before, when the change ends that link (a delete):
    /// that mesh object's contributions from this connector object must be withdrawn.
    pub previous_mesh_object: Option<MeshObjectId>,
    /// The mesh object to create, when an anchor rule projected one.
    pub new_mesh_object: Option<NewMeshObject>,
    /// Why.
    pub trace: Trace,
}

/// One search a correlation may run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct JoinQuery {
    /// The rule that asks.
    pub rule: RuleName,
    /// The mesh object type searched.
    pub object_type: ObjectType,
    /// The mesh attribute searched.
    pub target_attribute: AttributeName,
    /// The value's join key; also searched as an anchor.
    pub key: String,
}

/// Derives the id of the mesh object of `object_type` anchored on `anchor`. Deterministic, so
/// concurrent projections of the same anchor agree, and the store's unique anchor index turns
/// the race into a join.
pub fn mesh_object_id(object_type: &ObjectType, anchor: &str) -> MeshObjectId {
    let mut name: SmallVec<[u8; 96]> = SmallVec::new();
    name.extend_from_slice(object_type.as_str().as_bytes());
    name.push(0);
    name.extend_from_slice(anchor.as_bytes());
    const MESH_OBJECTS: IdNamespace = IdNamespace::new("identitymesh.io/mesh-object");
    MeshObjectId::derive_in(MESH_OBJECTS, &name)
}

/// Returns the searches correlating `object` with `attributes` may run, in the order the
/// rules are tried; a service runs them against its store and passes the answers as a
/// [`crate::port::JoinLookups`].
pub fn join_queries(
    rules: &RuleSet,
    object: &ConnectorObjectRef,
    attributes: &Attributes,
) -> Vec<JoinQuery> {
    rules
        .join_rules(&object.connector)
        .iter()
        .filter(|rule| rule.applies_to(&object.object_type))
        .filter_map(|rule| {
            let key = attributes.get(&rule.source_attribute).and_then(join_key)?;
            Some(JoinQuery {
                rule: rule.name.clone(),
                object_type: object.object_type.clone(),
                target_attribute: rule.target_attribute.clone(),
                key,
            })
        })
        .collect()
}

/// Correlates one connector object (see the module documentation for the procedure).
pub fn correlate(
    rules: &RuleSet,
    input: &CorrelateInput<'_>,
    directory: &dyn MeshDirectory,
    mut trace: Trace,
) -> Correlation {
    let object = input.object;
    let linked = match input.current {
        Some(JoinState::Joined { mesh_object, .. }) => Some(*mesh_object),
        _ => None,
    };
    if input.operation == ChangeOperation::Delete {
        trace.note(|| match linked {
            Some(id) => format!("{object} was deleted; its link to mesh object {id} ends"),
            None => format!("{object} was deleted"),
        });
        return Correlation {
            outcome: JoinState::Deleted,
            previous_mesh_object: linked,
            new_mesh_object: None,
            trace,
        };
    }
    if let Some(JoinState::Joined {
        mesh_object, rule, ..
    }) = input.current
    {
        trace.note(|| format!("{object} stays joined to mesh object {mesh_object}"));
        return Correlation {
            outcome: JoinState::Joined {
                mesh_object: *mesh_object,
                rule: rule.clone(),
                method: JoinMethod::Existing,
            },
            previous_mesh_object: None,
            new_mesh_object: None,
            trace,
        };
    }

    let mut anchor: Option<(&crate::rules::JoinRule, std::borrow::Cow<'_, str>)> = None;
    for rule in rules.join_rules(&object.connector) {
        if !rule.applies_to(&object.object_type) {
            continue;
        }
        let Some(key) = input
            .attributes
            .get(&rule.source_attribute)
            .and_then(join_key_ref)
        else {
            trace.note(|| {
                format!(
                    "join rule {} (priority {}): {} has no value for {}",
                    rule.name, rule.priority, object, rule.source_attribute
                )
            });
            continue;
        };
        let mut matches =
            directory.find_by_attribute(&object.object_type, &rule.target_attribute, &key);
        let mut how = "attribute";
        if matches.is_empty()
            && let Some(id) = directory.find_by_anchor(&object.object_type, &key)
        {
            matches = Found::One(id);
            how = "anchor";
        }
        match matches {
            Found::None => {
                trace.note(|| {
                    format!(
                        "join rule {} (priority {}): no mesh object has {} = {key:?}",
                        rule.name, rule.priority, rule.target_attribute
                    )
                });
                if rule.is_anchor && anchor.is_none() {
                    anchor = Some((rule, key));
                }
            }
            Found::One(mesh_object) => {
                trace.note(|| {
                    format!(
                        "join rule {} (priority {}): {} = {key:?} matches mesh object {mesh_object} by {how}; joined",
                        rule.name, rule.priority, rule.target_attribute
                    )
                });
                return Correlation {
                    outcome: JoinState::Joined {
                        mesh_object,
                        rule: Some(rule.name.clone()),
                        method: JoinMethod::Matched,
                    },
                    previous_mesh_object: None,
                    new_mesh_object: None,
                    trace,
                };
            }
            Found::Several(matches) => {
                let n = matches.len();
                trace.note(|| {
                    format!(
                        "join rule {} (priority {}): {} = {key:?} matches {n} mesh objects; ambiguous, sent to review",
                        rule.name, rule.priority, rule.target_attribute
                    )
                });
                return Correlation {
                    outcome: JoinState::Ambiguous {
                        rule: rule.name.clone(),
                        candidates: matches.into_iter().collect(),
                    },
                    previous_mesh_object: None,
                    new_mesh_object: None,
                    trace,
                };
            }
        }
    }

    if let Some((rule, key)) = anchor {
        let id = mesh_object_id(&object.object_type, &key);
        trace.note(|| {
            format!(
                "anchor rule {} projects new mesh object {id} anchored on {} = {key:?}",
                rule.name, rule.target_attribute
            )
        });
        return Correlation {
            outcome: JoinState::Joined {
                mesh_object: id,
                rule: Some(rule.name.clone()),
                method: JoinMethod::Projected,
            },
            previous_mesh_object: None,
            new_mesh_object: Some(NewMeshObject {
                id,
                object_type: object.object_type.clone(),
                anchor: key.into_owned(),
                anchor_attribute: rule.target_attribute.clone(),
            }),
            trace,
        };
    }
    trace.note(|| format!("{object} matched nothing and no anchor rule applies; disconnector"));
    Correlation {
        outcome: JoinState::Disconnector,
        previous_mesh_object: None,
        new_mesh_object: None,
        trace,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use mesh_model::{ConnectorId, ExternalId, Value};

    use super::*;
    use crate::port::JoinLookups;
    use crate::{SourceFile, load};

    const RULES: &str = r#"
kind: Connector
metadata: { name: ad }
spec: { type: ldap, objectTypes: [User], externalIdAttribute: objectGUID }
---
kind: JoinRule
metadata: { name: by-employee-id }
spec: { connector: ad, sourceAttribute: employeeID, targetAttribute: EmployeeId, isAnchor: true, priority: 1 }
---
kind: JoinRule
metadata: { name: by-sam }
spec: { connector: ad, sourceAttribute: sAMAccountName, targetAttribute: SamAccountName, priority: 2 }
"#;

    fn object() -> ConnectorObjectRef {
        ConnectorObjectRef {
            connector: ConnectorId::parse("ad").unwrap(),
            object_type: ObjectType::parse("User").unwrap(),
            external_id: ExternalId::parse("g-1").unwrap(),
        }
    }

    fn attributes(pairs: &[(&str, &str)]) -> Attributes {
        pairs
            .iter()
            .map(|(n, v)| (AttributeName::parse(n).unwrap(), Value::from(*v)))
            .collect()
    }

    /// The path an asynchronous store takes: list the searches, answer them, correlate.
    #[test]
    fn an_async_store_answers_join_queries_up_front() {
        let rules = load(&[SourceFile::new("rules.yaml", RULES)]).unwrap();
        let object = object();
        let raw = attributes(&[("EMPLOYEEID", "1001"), ("samaccountname", "alovelace")]);
        let queries = join_queries(&rules, &object, &raw);
        let keys: Vec<(&str, &str)> = queries
            .iter()
            .map(|q| (q.rule.as_str(), q.key.as_str()))
            .collect();
        assert_eq!(keys, [("by-employee-id", "1001"), ("by-sam", "alovelace")]);

        // Nothing found by either rule: the anchor rule projects.
        let input = CorrelateInput {
            object: &object,
            operation: ChangeOperation::Upsert,
            attributes: &raw,
            current: None,
        };
        let empty = JoinLookups::new();
        let projected = correlate(&rules, &input, &empty, Trace::enabled());
        let new = projected.new_mesh_object.unwrap();
        assert_eq!(new.id, mesh_object_id(&object.object_type, "1001"));

        // Rule 2 finds two candidates and rule 1 none: ambiguous.
        let mut lookups = JoinLookups::new();
        let a = mesh_object_id(&object.object_type, "a");
        let b = mesh_object_id(&object.object_type, "b");
        lookups.insert_attribute_matches(
            object.object_type.clone(),
            &AttributeName::parse("SamAccountName").unwrap(),
            "alovelace".to_owned(),
            BTreeSet::from([a, b]),
        );
        let ambiguous = correlate(&rules, &input, &lookups, Trace::enabled());
        assert!(
            matches!(ambiguous.outcome, JoinState::Ambiguous { ref candidates, .. } if candidates.len() == 2)
        );

        // Rule 1 finds the mesh object by its anchor: joined before rule 2 is tried.
        lookups.insert_anchor(object.object_type.clone(), "1001".to_owned(), a);
        let joined = correlate(&rules, &input, &lookups, Trace::enabled());
        assert_eq!(
            joined.outcome,
            JoinState::Joined {
                mesh_object: a,
                rule: Some(RuleName::parse("by-employee-id").unwrap()),
                method: JoinMethod::Matched
            }
        );
        assert!(
            joined.trace.lines()[0].contains("by anchor"),
            "{:?}",
            joined.trace
        );
    }
}
