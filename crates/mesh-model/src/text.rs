//! Shared, immutable text: the content of a [`crate::Value::String`].
//!
//! A value is copied many times on its way through the pipeline: from the raw attributes into
//! a contribution, then into the resolved attributes, the change, what a target holds and the
//! export command. [`Text`] shares its bytes between those copies (`Arc<str>`), so a copy costs
//! a reference count where an owned `String` cost an allocation and a copy of the bytes.
//!
//! It reads like a `&str` (`Deref`, `AsRef<str>`, `Borrow<str>`), compares, orders and hashes
//! by its text, and serializes as a string. It cannot be changed in place: build a `String`
//! and convert it (`Text::from(string)`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Immutable UTF-8 text whose copies share one allocation.
#[derive(Clone)]
pub struct Text(Arc<str>);

impl Text {
    /// Returns the text as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the shared allocation, for the ids that share a value's text.
    #[inline]
    pub(crate) fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// Returns true when both share one allocation (so they are equal without reading them).
    #[inline]
    pub fn ptr_eq(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Default for Text {
    fn default() -> Self {
        Self::from("")
    }
}

impl Deref for Text {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    #[inline]
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    #[inline]
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    #[inline]
    fn from(s: &str) -> Self {
        Self(Arc::from(s))
    }
}

impl From<String> for Text {
    #[inline]
    fn from(s: String) -> Self {
        Self(Arc::from(s))
    }
}

impl From<&String> for Text {
    #[inline]
    fn from(s: &String) -> Self {
        Self(Arc::from(s.as_str()))
    }
}

impl From<Box<str>> for Text {
    #[inline]
    fn from(s: Box<str>) -> Self {
        Self(Arc::from(s))
    }
}

impl From<Arc<str>> for Text {
    #[inline]
    fn from(s: Arc<str>) -> Self {
        Self(s)
    }
}

impl From<Text> for String {
    #[inline]
    fn from(t: Text) -> Self {
        t.as_str().to_owned()
    }
}

impl From<&Text> for String {
    #[inline]
    fn from(t: &Text) -> Self {
        t.as_str().to_owned()
    }
}

// Copies of one value share their text, and the values compared are mostly such copies (a
// resolved value against the contribution it came from): a shared pointer is equal without
// reading the text.
impl PartialEq for Text {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        Self::ptr_eq(self, other) || *self.0 == *other.0
    }
}

impl Eq for Text {}

impl PartialEq<str> for Text {
    #[inline]
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    #[inline]
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Text {
    #[inline]
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl PartialEq<Text> for str {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        self == &*other.0
    }
}

impl PartialEq<Text> for &str {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        *self == &*other.0
    }
}

impl PartialEq<Text> for String {
    #[inline]
    fn eq(&self, other: &Text) -> bool {
        **self == *other.0
    }
}

impl Ord for Text {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        if Self::ptr_eq(self, other) {
            Ordering::Equal
        } else {
            self.0.cmp(&other.0)
        }
    }
}

impl PartialOrd for Text {
    #[inline]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Hashes as the `str` it holds, so that a map keyed by `Text` can be searched with a `&str`.
impl Hash for Text {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

/// Writes the text as a `str`'s `Debug` does, quoted and escaped.
impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_share_their_text() {
        let a = Text::from("Pat Doe".to_owned());
        let b = a.clone();
        assert!(Text::ptr_eq(&a, &b));
        assert_eq!(a, b);
        assert_eq!(a, Text::from("Pat Doe"));
        assert!(!Text::ptr_eq(&a, &Text::from("Pat Doe")));
    }

    #[test]
    fn reads_compares_and_prints_as_a_str() {
        let t = Text::from("b\"c");
        assert_eq!(t.len(), 3);
        assert_eq!(t, "b\"c");
        assert_eq!(format!("{t:?}"), format!("{:?}", "b\"c"));
        assert_eq!(t.to_string(), "b\"c");
        let (a, c) = (Text::from("a"), Text::from("c"));
        assert!(a < t && t < c);
        let mut set = std::collections::HashSet::new();
        set.insert(t);
        assert!(set.contains("b\"c"));
    }
}
