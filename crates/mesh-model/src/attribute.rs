//! Attribute names and attribute maps.
//!
//! Attribute names are case-insensitive everywhere in the mesh (`employeeID`, `EmployeeId` and
//! `EMPLOYEEID` are one attribute), as in SCIM and LDAP. An [`AttributeName`] keeps the spelling
//! it was first written with for display and compares by its Unicode lowercase fold.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::{ParseError, Value};

/// The name of an attribute, compared case-insensitively.
///
/// 1 to 512 bytes, no control characters. Names may contain spaces, dashes, dots and colons
/// (SCIM URNs such as `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`).
///
/// Cloning one shares its text: every contribution, lineage entry, change and export command
/// names attributes, and a name is parsed once (from a rule or a record) and copied many times.
#[derive(Clone)]
pub struct AttributeName {
    /// The lowercase fold, followed by the spelling as written when that differs from it.
    text: Arc<str>,
    /// The fold's first twelve bytes, zero-padded, as big-endian numbers ([`Head`], kept as
    /// two fields so that the name stays 32 bytes): most comparisons (sorting contributions,
    /// searching attribute sets) end on them without reading the text, and most names are no
    /// longer.
    head_high: u64,
    head_low: u32,
    /// Where the fold ends in `text`; equal to its length when the spelling is the fold.
    split: u32,
}

/// How many bytes of a fold [`Head`] holds.
const HEAD_LEN: usize = 12;

/// The first twelve bytes of a fold as big-endian numbers, zero-padded. Names hold no control
/// characters, so no fold contains a zero byte, and comparing two heads orders two folds
/// exactly as comparing their bytes would, as far as the heads differ; two folds of up to
/// twelve bytes with equal heads are equal.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Head(u64, u32);

impl Head {
    #[inline]
    fn of(key: &[u8]) -> Self {
        let mut bytes = [0u8; HEAD_LEN];
        for (slot, byte) in bytes.iter_mut().zip(key) {
            *slot = *byte;
        }
        let [a, b, c, d, e, f, g, h, i, j, k, l] = bytes;
        Self(
            u64::from_be_bytes([a, b, c, d, e, f, g, h]),
            u32::from_be_bytes([i, j, k, l]),
        )
    }
}

/// Orders two folds with equal heads by the bytes after them.
#[inline]
fn cmp_tail(a: &[u8], b: &[u8]) -> Ordering {
    if a.len() <= HEAD_LEN && b.len() <= HEAD_LEN {
        // Equal heads and no longer than them: the same bytes.
        a.len().cmp(&b.len())
    } else {
        a.get(HEAD_LEN..)
            .unwrap_or_default()
            .cmp(b.get(HEAD_LEN..).unwrap_or_default())
    }
}

/// Finds the entry whose name has the fold with head `head` (the rest of which `tail` orders
/// against an entry's name) in `items`, sorted by name: `Ok` with its place, or `Err` with
/// where it would go.
///
/// Records have a handful of names: a scan that decides most steps on one number of the heads
/// reads less than a binary search. The scan's steps are written out rather than comparing
/// heads as pairs, which makes an ordering of every step and branches on it again.
#[inline]
fn search_sorted<V>(
    items: &[(AttributeName, V)],
    head: Head,
    tail: impl Fn(&AttributeName) -> Ordering,
) -> Result<usize, usize> {
    let Head(high, low) = head;
    if items.len() > LINEAR_SEARCH_MAX {
        return items.binary_search_by(|(name, _)| name.head().cmp(&head).then_with(|| tail(name)));
    }
    for (i, (name, _)) in items.iter().enumerate() {
        if name.head_high != high {
            if name.head_high > high {
                return Err(i);
            }
            continue;
        }
        if name.head_low != low {
            if name.head_low > low {
                return Err(i);
            }
            continue;
        }
        match tail(name) {
            Ordering::Less => {}
            Ordering::Equal => return Ok(i),
            Ordering::Greater => return Err(i),
        }
    }
    Err(items.len())
}

impl AttributeName {
    /// The longest attribute name accepted, in bytes.
    pub const MAX_LEN: usize = 512;

    /// Parses an attribute name.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "attribute name";
        if s.is_empty() {
            return Err(ParseError::Empty { what: WHAT });
        }
        if s.len() > Self::MAX_LEN {
            return Err(ParseError::TooLong {
                what: WHAT,
                len: s.len(),
                max: Self::MAX_LEN,
            });
        }
        if let Some(c) = s.chars().find(|c| c.is_control()) {
            return Err(ParseError::InvalidCharacter {
                what: WHAT,
                input: s.to_owned(),
                found: c,
                rule: "control characters are not allowed",
            });
        }
        // Most names are ASCII; an ASCII name without capitals is its own fold.
        let already_folded = s.is_ascii() && !s.bytes().any(|b| b.is_ascii_uppercase());
        let key = if already_folded {
            None
        } else {
            Some(Self::fold(s)).filter(|key| key != s)
        };
        // At most three times the input, so it fits: lowercasing takes a character to at
        // most three bytes.
        let split = |key: &str| u32::try_from(key.len()).unwrap_or(u32::MAX);
        Ok(match key {
            None => {
                let Head(head_high, head_low) = Head::of(s.as_bytes());
                Self {
                    text: Arc::from(s),
                    head_high,
                    head_low,
                    split: split(s),
                }
            }
            Some(key) => {
                let Head(head_high, head_low) = Head::of(key.as_bytes());
                let split = split(&key);
                let mut text = key;
                text.push_str(s);
                Self {
                    text: Arc::from(text),
                    head_high,
                    head_low,
                    split,
                }
            }
        })
    }

    /// Returns the case fold that two names must share to be the same attribute.
    ///
    /// `Attributes::get_folded` takes a name already folded with this function, which lets a
    /// hot path fold once and look up many times.
    pub fn fold(s: &str) -> String {
        s.to_lowercase()
    }

    /// Returns the name as first written.
    #[inline]
    pub fn as_str(&self) -> &str {
        let split = self.split as usize;
        if split == self.text.len() {
            &self.text
        } else {
            self.text.get(split..).unwrap_or_default()
        }
    }

    /// Returns the case fold used for comparison.
    #[inline]
    pub fn key(&self) -> &str {
        self.text.get(..self.split as usize).unwrap_or_default()
    }

    #[inline]
    fn head(&self) -> Head {
        Head(self.head_high, self.head_low)
    }

    /// The bytes of the fold.
    #[inline]
    fn key_bytes(&self) -> &[u8] {
        self.text
            .as_bytes()
            .get(..self.split as usize)
            .unwrap_or_default()
    }
}

impl Serialize for AttributeName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttributeName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        Self::parse(&s).map_err(de::Error::custom)
    }
}

impl PartialEq for AttributeName {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Copies of one parsed name share their text; past equal heads only the tail of
        // the fold is left to compare.
        self.head() == other.head()
            && (Arc::ptr_eq(&self.text, &other.text)
                || (self.split == other.split
                    && cmp_tail(self.key_bytes(), other.key_bytes()).is_eq()))
    }
}

impl Eq for AttributeName {}

impl PartialOrd for AttributeName {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AttributeName {
    #[inline]
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.head().cmp(&other.head()).then_with(|| {
            if Arc::ptr_eq(&self.text, &other.text) {
                Ordering::Equal
            } else {
                cmp_tail(self.key_bytes(), other.key_bytes())
            }
        })
    }
}

impl Hash for AttributeName {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key().hash(state);
    }
}

/// Lets a map keyed by [`AttributeName`] be searched with an already-folded `&str`.
impl Borrow<str> for AttributeName {
    #[inline]
    fn borrow(&self) -> &str {
        self.key()
    }
}

impl fmt::Debug for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttributeName {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, ParseError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for AttributeName {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, ParseError> {
        Self::parse(&s)
    }
}

impl From<AttributeName> for String {
    fn from(name: AttributeName) -> String {
        name.as_str().to_owned()
    }
}

/// Up to this many entries a lookup scans rather than bisects.
const LINEAR_SEARCH_MAX: usize = 16;

/// Case-insensitive attribute names to values of `V`, in name order: the map under
/// [`Attributes`] and under a mesh object's lineage.
///
/// Inserting a name that differs only in case replaces the value and keeps the first spelling,
/// as a `BTreeMap<AttributeName, V>` does; the order, the debug form and the serialized form
/// are the B-tree map's too.
///
/// Held as one vector sorted by folded name rather than a B-tree: records carry a handful to a
/// few dozen attributes, and for those a sorted vector searches as fast and takes a tenth of
/// the memory of a B-tree node. Entries that come in name order are appended without a
/// search; building from an iterator sorts once, so a large record does not pay a shift per
/// insert.
#[derive(Clone, PartialEq)]
pub struct NameMap<V>(Vec<(AttributeName, V)>);

impl<V> Default for NameMap<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V> NameMap<V> {
    /// Returns an empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns an empty map with room for `capacity` entries.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Where the entry of `wanted` is, or would go.
    #[inline]
    fn position_of(&self, wanted: &AttributeName) -> Result<usize, usize> {
        search_sorted(&self.0, wanted.head(), |name| {
            if Arc::ptr_eq(&name.text, &wanted.text) {
                Ordering::Equal
            } else {
                cmp_tail(name.key_bytes(), wanted.key_bytes())
            }
        })
    }

    /// Where the entry whose folded name is `key` is, or would go.
    #[inline]
    fn position(&self, key: &str) -> Result<usize, usize> {
        let bytes = key.as_bytes();
        search_sorted(&self.0, Head::of(bytes), |name| {
            cmp_tail(name.key_bytes(), bytes)
        })
    }

    /// Returns the value of `name`.
    #[inline]
    pub fn get(&self, name: &AttributeName) -> Option<&V> {
        let i = self.position_of(name).ok()?;
        self.0.get(i).map(|(_, value)| value)
    }

    /// Returns the name as spelled in the map, and the value, of `name`.
    #[inline]
    pub fn get_key_value(&self, name: &AttributeName) -> Option<(&AttributeName, &V)> {
        let i = self.position_of(name).ok()?;
        self.0.get(i).map(|(n, value)| (n, value))
    }

    /// Returns the value of `name`, to change it.
    #[inline]
    pub fn get_mut(&mut self, name: &AttributeName) -> Option<&mut V> {
        let i = self.position_of(name).ok()?;
        self.0.get_mut(i).map(|(_, value)| value)
    }

    /// Returns the value whose folded name is `key` (see [`AttributeName::fold`]); no
    /// allocation.
    #[inline]
    pub fn get_folded(&self, key: &str) -> Option<&V> {
        let i = self.position(key).ok()?;
        self.0.get(i).map(|(_, value)| value)
    }

    /// Returns true when `name` has a value.
    #[inline]
    pub fn contains_key(&self, name: &AttributeName) -> bool {
        self.position_of(name).is_ok()
    }

    /// Sets `name` to `value`, returning the previous value; an entry already present keeps
    /// its spelling.
    pub fn insert(&mut self, name: AttributeName, value: V) -> Option<V> {
        // Mostly built in name order: appending needs no search.
        if self.0.last().is_none_or(|(last, _)| *last < name) {
            self.0.push((name, value));
            return None;
        }
        match self.position_of(&name) {
            Ok(i) => self
                .0
                .get_mut(i)
                .map(|(_, slot)| std::mem::replace(slot, value)),
            Err(i) => {
                self.0.insert(i, (name, value));
                None
            }
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &AttributeName) -> Option<V> {
        let i = self.position_of(name).ok()?;
        Some(self.0.remove(i).1)
    }

    /// Keeps only the entries for which `keep` returns true, visiting them in name order.
    pub fn retain(&mut self, mut keep: impl FnMut(&AttributeName, &mut V) -> bool) {
        self.0.retain_mut(|(name, value)| keep(name, value));
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
    #[inline]
    pub fn iter(&self) -> NameMapIter<'_, V> {
        NameMapIter(self.0.iter())
    }

    /// Iterates over the names in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &AttributeName> + '_ {
        self.0.iter().map(|(name, _)| name)
    }

    /// Iterates over the values in name order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + '_ {
        self.0.iter().map(|(_, value)| value)
    }
}

impl<V: fmt::Debug> fmt::Debug for NameMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> FromIterator<(AttributeName, V)> for NameMap<V> {
    fn from_iter<I: IntoIterator<Item = (AttributeName, V)>>(iter: I) -> Self {
        let mut entries: Vec<(AttributeName, V)> = iter.into_iter().collect();
        if entries.is_sorted_by(|(a, _), (b, _)| a < b) {
            return Self(entries);
        }
        // Stable, so that among names equal but for case the first keeps its spelling and
        // the last gives the value, as inserting them one by one would.
        entries.sort_by(|(a, _), (b, _)| a.cmp(b));
        let mut unique: Vec<(AttributeName, V)> = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            match unique.last_mut() {
                Some((last, slot)) if *last == name => *slot = value,
                _ => unique.push((name, value)),
            }
        }
        Self(unique)
    }
}

/// Inserts each entry as [`NameMap::insert`] does: entries that come in name order are
/// appended.
impl<V> Extend<(AttributeName, V)> for NameMap<V> {
    fn extend<I: IntoIterator<Item = (AttributeName, V)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.insert(name, value);
        }
    }
}

impl<V> From<std::collections::BTreeMap<AttributeName, V>> for NameMap<V> {
    fn from(map: std::collections::BTreeMap<AttributeName, V>) -> Self {
        // Already in order and unique.
        Self(map.into_iter().collect())
    }
}

impl<V> IntoIterator for NameMap<V> {
    type Item = (AttributeName, V);
    type IntoIter = std::vec::IntoIter<(AttributeName, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a NameMap<V> {
    type Item = (&'a AttributeName, &'a V);
    type IntoIter = NameMapIter<'a, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// An iterator over a [`NameMap`] in name order.
#[derive(Debug, Clone)]
pub struct NameMapIter<'a, V>(std::slice::Iter<'a, (AttributeName, V)>);

impl<'a, V> Iterator for NameMapIter<'a, V> {
    type Item = (&'a AttributeName, &'a V);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(name, value)| (name, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<V> DoubleEndedIterator for NameMapIter<'_, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(name, value)| (name, value))
    }
}

impl<V> ExactSizeIterator for NameMapIter<'_, V> {}

impl<V> std::iter::FusedIterator for NameMapIter<'_, V> {}

/// A map from name (as spelled) to value, in name order.
impl<V: Serialize> Serialize for NameMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for NameMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> de::Visitor<'de> for MapVisitor<V> {
            type Value = NameMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of attribute names to values")
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<NameMap<V>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
                while let Some(entry) = map.next_entry::<AttributeName, V>()? {
                    entries.push(entry);
                }
                Ok(entries.into_iter().collect())
            }
        }

        deserializer.deserialize_map(MapVisitor(std::marker::PhantomData))
    }
}

/// A set of attributes: case-insensitive names to typed values, in a deterministic order (a
/// [`NameMap`] of values).
///
/// Copies share the map, which is copied on the first change of a shared set (clone on
/// write): a record's attributes are copied whole into the management space, into what a
/// target holds and into each export command, and are rarely changed afterwards, so a copy
/// costs a reference count where it cost an allocation and a copy of every name and value.
/// An empty set holds no map at all.
#[derive(Clone, Default)]
pub struct Attributes(Option<Arc<NameMap<Value>>>);

/// An iterator over [`Attributes`] in name order.
pub type AttributesIter<'a> = NameMapIter<'a, Value>;

impl Attributes {
    /// Returns an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns an empty set with room for `capacity` attributes.
    pub fn with_capacity(capacity: usize) -> Self {
        Self((capacity > 0).then(|| Arc::new(NameMap::with_capacity(capacity))))
    }

    fn from_map(map: NameMap<Value>) -> Self {
        Self((!map.is_empty()).then(|| Arc::new(map)))
    }

    /// The map to change: this set's own copy, made now if the map is shared.
    #[inline]
    fn map_mut(&mut self) -> &mut NameMap<Value> {
        Arc::make_mut(self.0.get_or_insert_with(Default::default))
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: AttributeName, value: Value) -> Option<Value> {
        self.map_mut().insert(name, value)
    }

    /// Returns the value of `name`.
    #[inline]
    pub fn get(&self, name: &AttributeName) -> Option<&Value> {
        self.0.as_ref()?.get(name)
    }

    /// Returns the name as spelled in the set, and the value, of `name`.
    #[inline]
    pub fn get_key_value(&self, name: &AttributeName) -> Option<(&AttributeName, &Value)> {
        self.0.as_ref()?.get_key_value(name)
    }

    /// Returns the value of the attribute whose name, in any case, is `name`.
    pub fn get_str(&self, name: &str) -> Option<&Value> {
        if name.is_ascii() && !name.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.get_folded(name);
        }
        self.get_folded(&AttributeName::fold(name))
    }

    /// Returns the value of the attribute whose folded name is `key` (see
    /// [`AttributeName::fold`]); no allocation.
    #[inline]
    pub fn get_folded(&self, key: &str) -> Option<&Value> {
        self.0.as_ref()?.get_folded(key)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &AttributeName) -> Option<Value> {
        // A shared map is copied only when there is something to remove.
        let shared = self.0.as_mut().filter(|map| map.contains_key(name))?;
        let map = Arc::make_mut(shared);
        let value = map.remove(name);
        if map.is_empty() {
            self.0 = None;
        }
        value
    }

    /// Returns the number of attributes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |map| map.len())
    }

    /// Returns true when there are no attributes.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Iterates over the attributes in name order.
    #[inline]
    pub fn iter(&self) -> AttributesIter<'_> {
        match &self.0 {
            Some(map) => map.iter(),
            None => NameMapIter([].iter()),
        }
    }
}

impl PartialEq for Attributes {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        // Copies share their map: equal without comparing the entries.
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
            (None, None) => true,
            _ => false,
        }
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(AttributeName, Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (AttributeName, Value)>>(iter: I) -> Self {
        Self::from_map(iter.into_iter().collect())
    }
}

/// Inserts each attribute as [`Attributes::insert`] does, into the set's own copy.
impl Extend<(AttributeName, Value)> for Attributes {
    fn extend<I: IntoIterator<Item = (AttributeName, Value)>>(&mut self, iter: I) {
        self.map_mut().extend(iter);
        if self.0.as_ref().is_some_and(|map| map.is_empty()) {
            self.0 = None;
        }
    }
}

impl IntoIterator for Attributes {
    type Item = (AttributeName, Value);
    type IntoIter = std::vec::IntoIter<(AttributeName, Value)>;
    fn into_iter(self) -> Self::IntoIter {
        // The map itself when no copy shares it.
        self.0
            .map(Arc::unwrap_or_clone)
            .unwrap_or_default()
            .into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a AttributeName, &'a Value);
    type IntoIter = AttributesIter<'a>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        NameMap::deserialize(deserializer).map(Self::from_map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> AttributeName {
        AttributeName::parse(s).unwrap()
    }

    /// Copies share their entries until one changes; extending and removing give what
    /// inserting one by one gives.
    #[test]
    fn copies_share_until_changed_and_extend_inserts() {
        let mut a = Attributes::new();
        a.insert(name("mail"), Value::from("a@example.com"));
        a.insert(name("cn"), Value::from("A"));
        let b = a.clone();
        assert_eq!(a, b);
        a.insert(name("MAIL"), Value::from("b@example.com"));
        assert_eq!(b.get_str("mail"), Some(&Value::from("a@example.com")));
        assert_eq!(a.get_str("mail"), Some(&Value::from("b@example.com")));
        assert_eq!(
            a.get_key_value(&name("Mail")).map(|(n, _)| n.as_str()),
            Some("mail")
        );
        assert_ne!(a, b);

        let items = [
            ("uid", "1"),
            ("CN", "B"),
            ("zz", "2"),
            ("Uid", "3"),
            ("aa", "4"),
        ];
        let mut one_by_one = b.clone();
        let mut extended = b.clone();
        for (n, v) in items {
            one_by_one.insert(name(n), Value::from(v));
        }
        extended.extend(items.iter().map(|(n, v)| (name(n), Value::from(*v))));
        let spelled = |x: &Attributes| -> Vec<(String, Value)> {
            x.iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.clone()))
                .collect()
        };
        assert_eq!(spelled(&one_by_one), spelled(&extended));
        assert_eq!(b.len(), 2);

        let mut emptied = b.clone();
        emptied.remove(&name("cn"));
        emptied.remove(&name("mail"));
        assert!(emptied.is_empty());
        assert_eq!(emptied, Attributes::new());
        assert_eq!(b.into_iter().count(), 2);
    }

    #[test]
    fn names_compare_case_insensitively_and_keep_their_spelling() {
        assert_eq!(name("employeeID"), name("EmployeeId"));
        assert_eq!(name("employeeID").to_string(), "employeeID");
        let mut attributes = Attributes::new();
        attributes.insert(name("employeeID"), Value::from("42"));
        let previous = attributes.insert(name("EMPLOYEEID"), Value::from("43"));
        assert_eq!(previous, Some(Value::from("42")));
        assert_eq!(attributes.len(), 1);
        assert_eq!(attributes.get_str("EmployeeId"), Some(&Value::from("43")));
        let (kept, _) = attributes.iter().next().unwrap();
        assert_eq!(kept.as_str(), "employeeID");
    }

    #[test]
    fn names_order_by_their_fold_bytes() {
        let names = [
            "",
            "a",
            "A",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "ABCDEFGHJ",
            "abcdefgz",
            "b",
            "ä",
            "Ä",
            "z",
            "employeeid",
            "employeeID",
            "email",
            "abcdefgh12345678",
            "abcdefgh12345678x",
            "ABCDEFGH12345678Y",
            "abcdefgh1234567",
            "abcdefghé",
            "abcdefghÉz",
            "abcdefgh~",
        ];
        for a in names.iter().filter(|n| !n.is_empty()) {
            for b in names.iter().filter(|n| !n.is_empty()) {
                let (x, y) = (name(a), name(b));
                let expected = x.key().cmp(y.key());
                assert_eq!(x.cmp(&y), expected, "{a} vs {b}");
                assert_eq!(x == y, expected.is_eq(), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn a_name_is_four_words() {
        // Every contribution, lineage entry and attribute holds one: keep them small.
        assert_eq!(std::mem::size_of::<AttributeName>(), 32);
    }

    #[test]
    fn attributes_built_in_any_order_match_inserting_one_by_one() {
        let pairs = [("b", "1"), ("A", "2"), ("c", "3"), ("a", "4"), ("B", "5")];
        let collected: Attributes = pairs
            .iter()
            .map(|(n, v)| (name(n), Value::from(*v)))
            .collect();
        let mut inserted = Attributes::new();
        for (n, v) in pairs {
            inserted.insert(name(n), Value::from(v));
        }
        assert_eq!(collected, inserted);
        let spelled: Vec<(&str, &Value)> = collected.iter().map(|(n, v)| (n.as_str(), v)).collect();
        assert_eq!(
            spelled,
            [
                ("A", &Value::from("4")),
                ("b", &Value::from("5")),
                ("c", &Value::from("3"))
            ]
        );
        assert_eq!(
            format!("{collected:?}"),
            r#"{"A": String("4"), "b": String("5"), "c": String("3")}"#
        );
        let mut removed = collected.clone();
        assert_eq!(removed.remove(&name("B")), Some(Value::from("5")));
        assert_eq!(removed.get_str("b"), None);
        assert_eq!(removed.get_str("C"), Some(&Value::from("3")));
        assert_eq!(removed.len(), 2);
    }

    #[test]
    fn attributes_serialize_as_a_map_and_merge_case_duplicates() {
        let parsed: Attributes = serde_json::from_str(r#"{"b": 1, "A": 2, "a": 3}"#).unwrap();
        assert_eq!(serde_json::to_string(&parsed).unwrap(), r#"{"A":3,"b":1}"#);
    }

    #[test]
    fn names_reject_control_characters_and_empty() {
        assert!(AttributeName::parse("display name").is_ok());
        assert!(AttributeName::parse("a\nb").is_err());
        assert!(AttributeName::parse("").is_err());
    }

    #[test]
    fn folding_handles_non_ascii() {
        assert_eq!(name("STRAßE"), name("straße"));
        assert_eq!(name("ÉCOLE"), name("école"));
    }
}
