//! The ports through which the pure stages search the mesh.
//!
//! Correlation needs two searches: mesh objects whose resolved attribute equals a value, and
//! the mesh object with a given anchor. The simulator answers them from memory; the
//! PostgreSQL store answers them from indexed tables. Because the store is asynchronous and
//! the stages are not, a service first asks [`crate::correlate::join_queries`] which searches
//! an event needs, runs them (in one round trip for a whole batch), and hands the answers to
//! the stage as a [`JoinLookups`], which implements the same [`MeshDirectory`] port.
//!
//! Values are compared by their *join key* ([`join_key`]): the text form of a scalar, so that
//! an employee number imported as `1001` from JSON and as `"1001"` from CSV match. Join keys
//! compare exactly (case-sensitively); see docs/engine.md.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use chrono::SecondsFormat;
use mesh_model::{
    AttributeName, ConnectorId, ConnectorObjectRef, MeshObjectId, ObjectType, Text, Value,
};

/// Searches mesh objects for correlation.
pub trait MeshDirectory {
    /// Returns the mesh objects of `object_type` whose resolved `attribute` has join key `key`:
    /// none, one (the usual answer, given without building a set), or several. Two are enough
    /// to call a match ambiguous; an implementation may stop there.
    fn find_by_attribute(
        &self,
        object_type: &ObjectType,
        attribute: &AttributeName,
        key: &str,
    ) -> Found;

    /// Returns the mesh object of `object_type` anchored on `key`, if there is one (anchors are
    /// unique per object type).
    fn find_by_anchor(&self, object_type: &ObjectType, key: &str) -> Option<MeshObjectId>;
}

/// The mesh objects a search found: none, one, or several (in id order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// No mesh object.
    None,
    /// Exactly one.
    One(MeshObjectId),
    /// Two or more.
    Several(BTreeSet<MeshObjectId>),
}

impl Found {
    /// Returns how many mesh objects were found.
    pub fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::One(_) => 1,
            Self::Several(ids) => ids.len(),
        }
    }

    /// Returns true when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<BTreeSet<MeshObjectId>> for Found {
    fn from(ids: BTreeSet<MeshObjectId>) -> Self {
        match ids.len() {
            0 => Self::None,
            1 => ids.first().copied().map_or(Self::None, Self::One),
            _ => Self::Several(ids),
        }
    }
}

/// Searches disconnectors (and ambiguous connector objects) to try again.
pub trait DisconnectorDirectory {
    /// Returns the connector objects of `connector` and `object_type` that are not joined and
    /// whose raw `source_attribute` has join key `key`.
    fn find_unjoined(
        &self,
        connector: &ConnectorId,
        object_type: &ObjectType,
        source_attribute: &AttributeName,
        key: &str,
    ) -> BTreeSet<ConnectorObjectRef>;
}

/// Returns the join key of a value: the text of a scalar; `None` for null, lists and empty
/// text, which never join.
pub fn join_key(value: &Value) -> Option<String> {
    join_key_ref(value).map(Cow::into_owned)
}

/// Returns the join key of a value as [`join_key`] does, borrowing the text of a string
/// rather than copying it.
pub fn join_key_ref(value: &Value) -> Option<Cow<'_, str>> {
    let key = match value {
        Value::Null | Value::List(_) => return None,
        Value::Bool(b) => Cow::Owned(b.to_string()),
        Value::Integer(i) => Cow::Owned(i.to_string()),
        Value::Decimal(d) => Cow::Owned(d.to_string()),
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Timestamp(t) => Cow::Owned(t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    };
    (!key.is_empty()).then_some(key)
}

/// Returns the join key of a value as [`join_key`] does, as shared text: for a string, the
/// value's own text, without a copy.
pub fn join_key_text(value: &Value) -> Option<Text> {
    match value {
        Value::String(text) => (!text.is_empty()).then(|| text.clone()),
        other => join_key(other).map(Text::from),
    }
}

/// Precomputed answers to the searches of [`crate::correlate::join_queries`], for callers whose
/// store cannot be searched synchronously. A search not answered here finds nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinLookups {
    by_attribute: BTreeMap<(ObjectType, String, String), Found>,
    by_anchor: BTreeMap<(ObjectType, String), MeshObjectId>,
}

impl JoinLookups {
    /// Returns empty answers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the answer to an attribute search.
    pub fn insert_attribute_matches(
        &mut self,
        object_type: ObjectType,
        attribute: &AttributeName,
        key: String,
        matches: BTreeSet<MeshObjectId>,
    ) {
        self.by_attribute.insert(
            (object_type, attribute.key().to_owned(), key),
            Found::from(matches),
        );
    }

    /// Records the answer to an anchor search.
    pub fn insert_anchor(
        &mut self,
        object_type: ObjectType,
        key: String,
        mesh_object: MeshObjectId,
    ) {
        self.by_anchor.insert((object_type, key), mesh_object);
    }
}

impl MeshDirectory for JoinLookups {
    fn find_by_attribute(
        &self,
        object_type: &ObjectType,
        attribute: &AttributeName,
        key: &str,
    ) -> Found {
        self.by_attribute
            .get(&(
                object_type.clone(),
                attribute.key().to_owned(),
                key.to_owned(),
            ))
            .cloned()
            .unwrap_or(Found::None)
    }

    fn find_by_anchor(&self, object_type: &ObjectType, key: &str) -> Option<MeshObjectId> {
        self.by_anchor
            .get(&(object_type.clone(), key.to_owned()))
            .copied()
    }
}
