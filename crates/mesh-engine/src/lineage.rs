//! The lineage of a mesh object: the winner of each resolved attribute, by attribute name.
//!
//! [`LineageMap`] behaves as the `BTreeMap<AttributeName, Lineage>` it replaced (the same
//! order, the same spelling rule, the same serialized form), held as one vector sorted by
//! name. A mesh object has a handful of attributes: a new one's lineage is written in name
//! order, one append after another into a single allocation, where the B-tree allocated a
//! node of eleven slots and searched it on every insert. Searches scan the short vector,
//! most steps decided on the names' heads, as [`mesh_model::Attributes`] does.

use std::fmt;

use mesh_model::AttributeName;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::resolve::Lineage;

/// The winner of each resolved attribute, in name order (see the module documentation).
///
/// As in a B-tree map, inserting a name that is already present (in any case) replaces the
/// lineage and keeps the name's first spelling.
#[derive(Clone, Default, PartialEq)]
pub struct LineageMap(Vec<(AttributeName, Lineage)>);

impl LineageMap {
    /// Returns an empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns an empty map with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    #[inline]
    fn position(&self, wanted: &AttributeName) -> Result<usize, usize> {
        AttributeName::search(&self.0, |(name, _)| name, wanted)
    }

    /// Returns the lineage of `name`.
    #[inline]
    pub fn get(&self, name: &AttributeName) -> Option<&Lineage> {
        let i = self.position(name).ok()?;
        self.0.get(i).map(|(_, lineage)| lineage)
    }

    /// Returns the name as spelled in the map, and the lineage, of `name`.
    #[inline]
    pub fn get_key_value(&self, name: &AttributeName) -> Option<(&AttributeName, &Lineage)> {
        let i = self.position(name).ok()?;
        self.0.get(i).map(|(n, lineage)| (n, lineage))
    }

    /// Returns the lineage of `name`, to change it.
    #[inline]
    pub fn get_mut(&mut self, name: &AttributeName) -> Option<&mut Lineage> {
        let i = self.position(name).ok()?;
        self.0.get_mut(i).map(|(_, lineage)| lineage)
    }

    /// Returns true when `name` has a lineage.
    #[inline]
    pub fn contains_key(&self, name: &AttributeName) -> bool {
        self.position(name).is_ok()
    }

    /// Sets the lineage of `name`, returning the previous one; an entry already present keeps
    /// its spelling.
    pub fn insert(&mut self, name: AttributeName, lineage: Lineage) -> Option<Lineage> {
        // A new mesh object's lineage is written in name order: appending needs no search.
        if self.0.last().is_none_or(|(last, _)| *last < name) {
            self.0.push((name, lineage));
            return None;
        }
        match self.position(&name) {
            Ok(i) => self
                .0
                .get_mut(i)
                .map(|(_, slot)| std::mem::replace(slot, lineage)),
            Err(i) => {
                self.0.insert(i, (name, lineage));
                None
            }
        }
    }

    /// Removes `name`, returning its lineage.
    pub fn remove(&mut self, name: &AttributeName) -> Option<Lineage> {
        let i = self.position(name).ok()?;
        Some(self.0.remove(i).1)
    }

    /// Keeps only the entries for which `keep` returns true, visiting them in name order.
    pub fn retain(&mut self, mut keep: impl FnMut(&AttributeName, &mut Lineage) -> bool) {
        self.0.retain_mut(|(name, lineage)| keep(name, lineage));
    }

    /// Reserves room for `additional` more entries.
    pub fn reserve(&mut self, additional: usize) {
        self.0.reserve(additional);
    }

    /// Returns the number of entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns true when there are no entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the entries in name order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&AttributeName, &Lineage)> + '_ {
        self.0.iter().map(|(name, lineage)| (name, lineage))
    }

    /// Iterates over the names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &AttributeName> + '_ {
        self.0.iter().map(|(name, _)| name)
    }

    /// Iterates over the lineages in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &Lineage> + '_ {
        self.0.iter().map(|(_, lineage)| lineage)
    }
}

impl fmt::Debug for LineageMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(AttributeName, Lineage)> for LineageMap {
    /// Collects as inserting one by one would: a repeated name keeps its first spelling and
    /// its last lineage.
    fn from_iter<I: IntoIterator<Item = (AttributeName, Lineage)>>(iter: I) -> Self {
        let mut entries: Vec<(AttributeName, Lineage)> = iter.into_iter().collect();
        if entries.is_sorted_by(|(a, _), (b, _)| a < b) {
            return Self(entries);
        }
        // Stable, so that of equal names the first comes first.
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut unique: Vec<(AttributeName, Lineage)> = Vec::with_capacity(entries.len());
        for (name, lineage) in entries {
            match unique.last_mut() {
                Some((last, slot)) if *last == name => *slot = lineage,
                _ => unique.push((name, lineage)),
            }
        }
        Self(unique)
    }
}

impl From<std::collections::BTreeMap<AttributeName, Lineage>> for LineageMap {
    fn from(map: std::collections::BTreeMap<AttributeName, Lineage>) -> Self {
        // Already in order and unique.
        Self(map.into_iter().collect())
    }
}

impl IntoIterator for LineageMap {
    type Item = (AttributeName, Lineage);
    type IntoIter = std::vec::IntoIter<(AttributeName, Lineage)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Serialize for LineageMap {
    /// A map from name (as spelled) to lineage, in name order: what the B-tree map gave.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, lineage) in &self.0 {
            map.serialize_entry(name, lineage)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for LineageMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;

        impl<'de> Visitor<'de> for MapVisitor {
            type Value = LineageMap;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from attribute name to lineage")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<LineageMap, A::Error> {
                let mut entries = Vec::with_capacity(access.size_hint().unwrap_or(0).min(256));
                while let Some((name, lineage)) = access.next_entry::<AttributeName, Lineage>()? {
                    entries.push((name, lineage));
                }
                Ok(entries.into_iter().collect())
            }
        }

        deserializer.deserialize_map(MapVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use mesh_model::{Confidence, EventId, RuleName};

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
