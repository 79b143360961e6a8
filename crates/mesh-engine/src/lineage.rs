//! The lineage of a mesh object: the winner of each resolved attribute, by attribute name.
//!
//! [`LineageMap`] behaves as the `BTreeMap<AttributeName, Lineage>` it replaced (the same
//! order, the same spelling rule, the same serialized form): it is a
//! [`mesh_model::NameMap`], the sorted vector under [`mesh_model::Attributes`]. A mesh object
//! has a handful of attributes: a new one's lineage is written in name order, one append after
//! another into a single allocation, where the B-tree allocated a node of eleven slots and
//! searched it on every insert.

use mesh_model::NameMap;

use crate::resolve::Lineage;

/// The winner of each resolved attribute, in name order (see the module documentation).
pub type LineageMap = NameMap<Lineage>;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mesh_model::{AttributeName, Confidence, EventId, RuleName};

    use super::*;
    use crate::flow::Source;

    fn lineage(rule: &str, confidence: u8) -> Lineage {
        Lineage {
            source: Source::Composer {
                rule: RuleName::parse(rule).unwrap(),
            },
            confidence: Confidence::new(i64::from(confidence)).unwrap(),
            event: EventId::derive("test", rule.as_bytes()),
        }
    }

    fn name(s: &str) -> AttributeName {
        AttributeName::parse(s).unwrap()
    }

    /// The same operations on a B-tree map and on a lineage map leave the same entries, with
    /// the same spellings, in the same order, serialized alike.
    #[test]
    fn behaves_as_the_btree_map() {
        let ops: &[(&str, Option<u8>)] = &[
            ("mail", Some(80)),
            ("Department", Some(95)),
            ("EMAIL", Some(70)),
            ("department", Some(60)),
            ("zeta", Some(10)),
            ("Mail", None),
            ("alpha", Some(20)),
            ("MAIL", Some(90)),
            ("Zeta", None),
        ];
        let mut tree = BTreeMap::new();
        let mut map = LineageMap::new();
        for (i, (n, op)) in ops.iter().enumerate() {
            match op {
                Some(c) => {
                    let l = lineage(&format!("r{i}"), *c);
                    assert_eq!(tree.insert(name(n), l.clone()), map.insert(name(n), l));
                }
                None => assert_eq!(tree.remove(&name(n)), map.remove(&name(n))),
            }
            let spelled = |it: Vec<(&AttributeName, &Lineage)>| -> Vec<(String, Lineage)> {
                it.into_iter()
                    .map(|(n, l)| (n.as_str().to_owned(), l.clone()))
                    .collect()
            };
            assert_eq!(
                spelled(tree.iter().collect()),
                spelled(map.iter().collect())
            );
            assert_eq!(
                tree.get_key_value(&name("email")).map(|(n, _)| n.as_str()),
                map.get_key_value(&name("email")).map(|(n, _)| n.as_str())
            );
        }
        assert_eq!(
            serde_json::to_string(&tree).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
        let back: LineageMap = serde_json::from_str(&serde_json::to_string(&map).unwrap()).unwrap();
        assert_eq!(back, map);
        assert_eq!(LineageMap::from(tree.clone()), map);
        let collected: LineageMap = tree.into_iter().rev().collect();
        assert_eq!(collected, map);
        map.retain(|n, _| n.as_str() != "alpha");
        assert!(!map.contains_key(&name("ALPHA")));
        assert_eq!(map.len(), 3);
    }
}
