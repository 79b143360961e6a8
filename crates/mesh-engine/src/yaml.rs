//! A YAML document as a tree of nodes that know their line and column.
//!
//! Rule validation must point at the offending line and column and report every problem, not
//! only the first. Deserializing straight into typed rules would stop at the first error and
//! lose positions inside tagged enums, so each document is first read into this untyped,
//! positioned tree (via `serde_saphyr::Spanned`), and the rule readers walk it by hand.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A 1-based line and column in a source file; `0:0` when unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// Byte offset into the source, when the parser knew it.
    pub offset: Option<usize>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

impl Position {
    fn from_location(location: serde_saphyr::Location) -> Self {
        Self {
            line: u32::try_from(location.line()).unwrap_or(u32::MAX),
            column: u32::try_from(location.column()).unwrap_or(u32::MAX),
            offset: location
                .span()
                .byte_offset()
                .and_then(|o| usize::try_from(o).ok()),
        }
    }
}

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub position: Position,
    /// What it holds.
    pub kind: NodeKind,
}

/// The shape of a YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// `~`, `null` or nothing.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// An integer.
    Integer(i64),
    /// A floating-point number.
    Float(f64),
    /// A string.
    String(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order; keys are strings with their own positions.
    Map(Vec<(Key, Node)>),
}

/// A mapping key and where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Key {
    /// Where the key is written.
    pub position: Position,
    /// The key.
    pub name: String,
}

impl NodeKind {
    /// Describes the node's type for messages: `a string`, `a mapping`, ...
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Integer(_) => "an integer",
            Self::Float(_) => "a number",
            Self::String(_) => "a string",
            Self::Seq(_) => "a list",
            Self::Map(_) => "a mapping",
        }
    }
}

/// The tree without positions; deserialized inside `Spanned` so each node gets its position.
struct Bare(NodeKind);

impl<'de> Deserialize<'de> for Bare {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BareVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Bare>::deserialize(deserializer)?;
        Ok(Node {
            position: Position::from_location(spanned.referenced),
            kind: spanned.value.0,
        })
    }
}

/// A mapping key: scalars of any type are read as their text (`1: x` has key `"1"`).
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Bare::deserialize(deserializer)?.0 {
            NodeKind::String(s) => Ok(KeyText(s)),
            NodeKind::Integer(i) => Ok(KeyText(i.to_string())),
            NodeKind::Float(f) => Ok(KeyText(f.to_string())),
            NodeKind::Bool(b) => Ok(KeyText(b.to_string())),
            NodeKind::Null => Ok(KeyText("null".to_owned())),
            other => Err(de::Error::custom(format!(
                "a mapping key must be a scalar, found {}",
                other.describe()
            ))),
        }
    }
}

struct BareVisitor;

impl<'de> Visitor<'de> for BareVisitor {
    type Value = Bare;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Bare, E> {
        Ok(Bare(NodeKind::Null))
    }
    fn visit_none<E: de::Error>(self) -> Result<Bare, E> {
        Ok(Bare(NodeKind::Null))
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Bare, D::Error> {
        Bare::deserialize(deserializer)
    }
    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Bare, E> {
        Ok(Bare(NodeKind::Bool(b)))
    }
    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Bare, E> {
        Ok(Bare(NodeKind::Integer(i)))
    }
    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Bare, E> {
        Ok(Bare(match i64::try_from(u) {
            Ok(i) => NodeKind::Integer(i),
            Err(_) => NodeKind::Float(u as f64),
        }))
    }
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Bare, E> {
        Ok(Bare(NodeKind::Float(f)))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Bare, E> {
        Ok(Bare(NodeKind::String(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Bare, E> {
        Ok(Bare(NodeKind::String(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bare, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Bare(NodeKind::Seq(items)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Bare, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            entries.push((
                Key {
                    position: Position::from_location(key.referenced),
                    name: key.value.0,
                },
                value,
            ));
        }
        Ok(Bare(NodeKind::Map(entries)))
    }
}

/// A YAML syntax error, with its position when the parser gave one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser stopped.
    pub position: Position,
    /// What it said.
    pub message: String,
}

/// Parses every document of a (possibly multi-document) YAML source into positioned trees.
/// Empty documents (a stray `---`) are dropped.
pub fn parse_documents(source: &str) -> Result<Vec<Node>, SyntaxError> {
    match serde_saphyr::from_multiple::<Option<Node>>(source) {
        Ok(documents) => Ok(documents
            .into_iter()
            .flatten()
            .filter(|d| d.kind != NodeKind::Null)
            .collect()),
        Err(error) => Err(SyntaxError {
            position: error
                .location()
                .map(Position::from_location)
                .unwrap_or_default(),
            message: first_line(&error.to_string()),
        }),
    }
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_and_keys_carry_line_and_column() {
        let source = "kind: JoinRule\nspec:\n  connector: ad\n  priority: 1\n  script: 'Left(a, 1)'\n---\nkind: FlowRule\n";
        let docs = parse_documents(source).unwrap();
        assert_eq!(docs.len(), 2);
        let NodeKind::Map(entries) = &docs[0].kind else {
            panic!("{docs:?}")
        };
        let (key, spec) = &entries[1];
        assert_eq!(
            (key.name.as_str(), key.position.line, key.position.column),
            ("spec", 2, 1)
        );
        let NodeKind::Map(spec) = &spec.kind else {
            panic!()
        };
        let (key, value) = &spec[1];
        assert_eq!((key.position.line, key.position.column), (4, 3));
        assert_eq!(value.kind, NodeKind::Integer(1));
        assert_eq!((value.position.line, value.position.column), (4, 13));
        let (_, script) = &spec[2];
        assert_eq!(script.kind, NodeKind::String("Left(a, 1)".into()));
        assert_eq!((script.position.line, script.position.column), (5, 11));
        let offset = script.position.offset.unwrap();
        assert_eq!(&source[offset..offset + 1], "'");
        let NodeKind::Map(entries) = &docs[1].kind else {
            panic!()
        };
        assert_eq!(entries[0].0.position.line, 7);
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse_documents("a: [1, 2\nb: c\n").unwrap_err();
        assert!(err.position.line >= 1, "{err:?}");
    }
}
