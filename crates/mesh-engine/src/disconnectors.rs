//! Which disconnectors to try again after a mesh object changed.
//!
//! A disconnector (or an ambiguous connector object) can only join once some mesh object
//! acquires the value one of its join rules searches for. So after a mesh object changes, the
//! candidates are exactly the unjoined connector objects whose join rule targets a changed
//! attribute and whose raw source attribute holds the new value, plus those whose rules could
//! now find the mesh object by its anchor when it was just projected. [`retry_queries`] lists
//! those searches; a [`crate::port::DisconnectorDirectory`] answers them, and each connector
//! object found is correlated again with its stored raw attributes.

use std::collections::BTreeSet;

use mesh_model::{AttributeChange, AttributeName, ConnectorId, ObjectType, RuleName};

use crate::port::join_key;
use crate::rules::RuleSet;

/// One search for disconnectors worth correlating again.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RetryQuery {
    /// The join rule that may now match.
    pub rule: RuleName,
    /// Its connector.
    pub connector: ConnectorId,
    /// The object type.
    pub object_type: ObjectType,
    /// The raw attribute the rule reads.
    pub source_attribute: AttributeName,
    /// The join key it must hold.
    pub key: String,
}

/// Returns the searches for disconnectors that the change of a mesh object of `object_type`
/// could let join: `changes` are its attribute changes; `new_anchor` is its anchor when it was
/// just projected. In rule order, without duplicates.
pub fn retry_queries(
    rules: &RuleSet,
    object_type: &ObjectType,
    changes: &[AttributeChange],
    new_anchor: Option<&str>,
) -> Vec<RetryQuery> {
    let mut queries = BTreeSet::new();
    for rule in rules.all_join_rules() {
        if !rule.applies_to(object_type) {
            continue;
        }
        let carries = rules
            .connector(&rule.connector)
            .is_some_and(|c| c.carries(object_type));
        if !carries {
            continue;
        }
        let mut keys: Vec<String> = changes
            .iter()
            .filter(|c| c.name == rule.target_attribute)
            .filter_map(|c| join_key(&c.new))
            .collect();
        if let Some(anchor) = new_anchor {
            keys.push(anchor.to_owned());
        }
        for key in keys {
            queries.insert(RetryQuery {
                rule: rule.name.clone(),
                connector: rule.connector.clone(),
                object_type: object_type.clone(),
                source_attribute: rule.source_attribute.clone(),
                key,
            });
        }
    }
    queries.into_iter().collect()
}
