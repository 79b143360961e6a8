//! What a program may expect to find in the attributes it runs on.

use std::collections::BTreeMap;

use mesh_model::{AttributeName, ValueKind};

/// The attributes a rule's programs run on, with their type when it is known.
///
/// With a schema, [`crate::compile`] warns (W001) about an attribute the schema does not list
/// (usually a typo, with a suggestion), and uses the declared types to refuse arguments that
/// can never fit. Every attribute may still be absent at run time, so a declared attribute is
/// typed "its kind or null". Without a schema every attribute may hold any value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    attributes: BTreeMap<AttributeName, Option<ValueKind>>,
}

impl Schema {
    /// Returns an empty schema: every attribute reference is then a warning.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares `name`, of type `kind` when known (`None`: any type).
    pub fn insert(&mut self, name: AttributeName, kind: Option<ValueKind>) {
        self.attributes.insert(name, kind);
    }

    /// Returns the schema with `name` declared.
    #[must_use]
    pub fn with(mut self, name: AttributeName, kind: Option<ValueKind>) -> Self {
        self.insert(name, kind);
        self
    }

    /// Returns `Some(kind)` for a declared attribute (`kind` is `None` when any type goes), or
    /// `None` when the attribute is not declared.
    pub fn get(&self, name: &AttributeName) -> Option<Option<ValueKind>> {
        self.attributes.get(name).copied()
    }

    /// Returns true when `name` is declared.
    pub fn contains(&self, name: &AttributeName) -> bool {
        self.attributes.contains_key(name)
    }

    /// Iterates over the declared attributes in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&AttributeName, Option<ValueKind>)> {
        self.attributes.iter().map(|(name, kind)| (name, *kind))
    }
}

impl FromIterator<(AttributeName, Option<ValueKind>)> for Schema {
    fn from_iter<I: IntoIterator<Item = (AttributeName, Option<ValueKind>)>>(iter: I) -> Self {
        Self {
            attributes: iter.into_iter().collect(),
        }
    }
}
