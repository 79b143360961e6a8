//! Attribute names and attribute maps.
//!
//! Attribute names are case-insensitive everywhere in the mesh (`employeeID`, `EmployeeId` and
//! `EMPLOYEEID` are one attribute), as in SCIM and LDAP. An [`AttributeName`] keeps the spelling
//! it was first written with for display and compares by its Unicode lowercase fold.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::collections::btree_map;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{ParseError, Value};

/// The name of an attribute, compared case-insensitively.
///
/// 1 to 512 bytes, no control characters. Names may contain spaces, dashes, dots and colons
/// (SCIM URNs such as `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`).
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AttributeName {
    /// The spelling as written.
    name: Box<str>,
    /// The lowercase fold used for equality, ordering and hashing.
    key: Box<str>,
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
        Ok(Self {
            name: s.into(),
            key: Self::fold(s).into(),
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
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// Returns the case fold used for comparison.
    pub fn key(&self) -> &str {
        &self.key
    }
}

impl PartialEq for AttributeName {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for AttributeName {}

impl PartialOrd for AttributeName {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for AttributeName {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

impl Hash for AttributeName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// Lets a map keyed by [`AttributeName`] be searched with an already-folded `&str`.
impl Borrow<str> for AttributeName {
    fn borrow(&self) -> &str {
        &self.key
    }
}

impl fmt::Debug for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name, f)
    }
}

impl fmt::Display for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
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
        name.name.into()
    }
}

/// A set of attributes: case-insensitive names to typed values, in a deterministic order.
///
/// Inserting a name that differs only in case replaces the value and keeps the first spelling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attributes(BTreeMap<AttributeName, Value>);

impl Attributes {
    /// Returns an empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `name` to `value`, returning the previous value.
    pub fn insert(&mut self, name: AttributeName, value: Value) -> Option<Value> {
        match self.0.get_mut(name.key()) {
            Some(slot) => Some(std::mem::replace(slot, value)),
            None => self.0.insert(name, value),
        }
    }

    /// Returns the value of `name`.
    pub fn get(&self, name: &AttributeName) -> Option<&Value> {
        self.0.get(name.key())
    }

    /// Returns the value of the attribute whose name, in any case, is `name`.
    pub fn get_str(&self, name: &str) -> Option<&Value> {
        self.0.get(AttributeName::fold(name).as_str())
    }

    /// Returns the value of the attribute whose folded name is `key` (see
    /// [`AttributeName::fold`]); no allocation.
    pub fn get_folded(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &AttributeName) -> Option<Value> {
        self.0.remove(name.key())
    }

    /// Returns the number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns true when there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates over the attributes in name order.
    pub fn iter(&self) -> btree_map::Iter<'_, AttributeName, Value> {
        self.0.iter()
    }
}

impl FromIterator<(AttributeName, Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (AttributeName, Value)>>(iter: I) -> Self {
        let mut attributes = Self::new();
        for (name, value) in iter {
            attributes.insert(name, value);
        }
        attributes
    }
}

impl IntoIterator for Attributes {
    type Item = (AttributeName, Value);
    type IntoIter = btree_map::IntoIter<AttributeName, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Attributes {
    type Item = (&'a AttributeName, &'a Value);
    type IntoIter = btree_map::Iter<'a, AttributeName, Value>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> AttributeName {
        AttributeName::parse(s).unwrap()
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
