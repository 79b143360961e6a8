//! Typed identifiers. Each one is parsed once at the edge and trusted afterwards.
//!
//! Connector ids and object types appear as NATS subject tokens (`mesh.change.<connector>`,
//! `mesh.object.<object_type>`), so their alphabets exclude `.`, `*`, `>` and whitespace.
//!
//! The string ids share their text (`Arc<str>`): the pipeline copies connector object
//! references and rule names into every contribution, lineage entry and export command, and a
//! shared copy costs a reference count where an owned one cost an allocation per id.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ParseError;

fn check_len(what: &'static str, s: &str, max: usize) -> Result<(), ParseError> {
    if s.is_empty() {
        return Err(ParseError::Empty { what });
    }
    if s.len() > max {
        return Err(ParseError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn check_chars(
    what: &'static str,
    s: &str,
    rule: &'static str,
    first_ok: impl Fn(char) -> bool,
    rest_ok: impl Fn(char) -> bool,
) -> Result<(), ParseError> {
    for (i, c) in s.chars().enumerate() {
        let ok = if i == 0 { first_ok(c) } else { rest_ok(c) };
        if !ok {
            return Err(ParseError::InvalidCharacter {
                what,
                input: s.to_owned(),
                found: c,
                rule,
            });
        }
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(Arc<str>);

        impl std::hash::Hash for $name {
            #[inline]
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }

        // Copies of one parsed id share their text, and equal ids are mostly such copies (a
        // connector object's connector is the rule set's): a shared pointer is equal without
        // reading the text. (`Arc`'s own equality only knows this for sized values.)
        impl PartialEq for $name {
            #[inline]
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || *self.0 == *other.0
            }
        }

        impl Ord for $name {
            #[inline]
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                if Arc::ptr_eq(&self.0, &other.0) {
                    std::cmp::Ordering::Equal
                } else {
                    self.0.cmp(&other.0)
                }
            }
        }

        impl PartialOrd for $name {
            #[inline]
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }

        string_id! { @common $name }
    };
    ($(#[$doc:meta])* $name:ident, String) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        string_id! { @common $name }
    };
    (@common $name:ident) => {

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Returns the identifier as a string slice.
            #[inline]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, ParseError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.as_str().to_owned()
            }
        }
    };
}

string_id! {
    /// The name of a connector, such as `corporate-ad` or `hr-database`.
    ///
    /// 1 to 63 characters: lowercase ASCII letters, digits and `-`, starting with a letter (a DNS
    /// label, so it is also a valid NATS subject token and Kubernetes name).
    ConnectorId
}

impl ConnectorId {
    /// The longest connector id accepted, in bytes.
    pub const MAX_LEN: usize = 63;

    /// Parses a connector id.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "connector id";
        check_len(WHAT, s, Self::MAX_LEN)?;
        check_chars(
            WHAT,
            s,
            "use lowercase letters, digits and '-', starting with a letter",
            |c| c.is_ascii_lowercase(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
        )?;
        Ok(Self(s.into()))
    }
}

string_id! {
    /// The type of an object, such as `User`, `Group` or `ServiceAccount`.
    ///
    /// 1 to 64 characters: ASCII letters, digits and `_`, starting with a letter. Object types
    /// compare exactly (case-sensitively), as SCIM resource types do.
    ObjectType
}

impl ObjectType {
    /// The longest object type accepted, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses an object type.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "object type";
        check_len(WHAT, s, Self::MAX_LEN)?;
        check_chars(
            WHAT,
            s,
            "use ASCII letters, digits and '_', starting with a letter",
            |c| c.is_ascii_alphabetic(),
            |c| c.is_ascii_alphanumeric() || c == '_',
        )?;
        Ok(Self(s.into()))
    }
}

string_id! {
    /// The identifier of an object in its own connected system: a SCIM `id`, an HR employee
    /// number, an LDAP DN or objectGUID. Opaque to the mesh; up to 1024 bytes, no control
    /// characters.
    ExternalId
}

impl ExternalId {
    /// The longest external id accepted, in bytes.
    pub const MAX_LEN: usize = 1024;

    /// Parses an external id.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        Self::check(s)?;
        Ok(Self(s.into()))
    }

    /// Parses an external id held as shared text, sharing it: the id of a connector object
    /// is usually the text of one of its attributes, and needs no copy of its own.
    pub fn from_text(text: &crate::Text) -> Result<Self, ParseError> {
        Self::check(text)?;
        Ok(Self(text.shared()))
    }

    fn check(s: &str) -> Result<(), ParseError> {
        const WHAT: &str = "external id";
        check_len(WHAT, s, Self::MAX_LEN)?;
        // Most ids are printable ASCII, decided a byte at a time.
        if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Ok(());
        }
        check_chars(
            WHAT,
            s,
            "control characters are not allowed",
            |c| !c.is_control(),
            |c| !c.is_control(),
        )
    }
}

string_id! {
    /// The name of a rule (`metadata.name` of a rule document), such as
    /// `match-ad-users-by-employee-id`.
    ///
    /// 1 to 253 characters: ASCII letters, digits, `-`, `_` and `.`, starting with a letter or
    /// digit.
    RuleName
}

impl RuleName {
    /// The longest rule name accepted, in bytes.
    pub const MAX_LEN: usize = 253;

    /// Parses a rule name.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "rule name";
        check_len(WHAT, s, Self::MAX_LEN)?;
        check_chars(
            WHAT,
            s,
            "use ASCII letters, digits, '-', '_' and '.', starting with a letter or digit",
            |c| c.is_ascii_alphanumeric(),
            |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'),
        )?;
        Ok(Self(s.into()))
    }
}

string_id! {
    /// The idempotency key of an export command: `<mesh object id>/<target>/<version>/<op>`.
    ///
    /// A provisioning agent that has applied a key applies it again as a no-op, so a command
    /// delivered twice has one effect.
    ///
    /// Unlike the other ids it owns a plain `String`: every key is built once and rarely
    /// copied, so sharing it would only add a copy into the shared allocation.
    IdempotencyKey, String
}

impl IdempotencyKey {
    /// The longest key accepted, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Builds the key of the export of `mesh_object` at `version` to `target` for `operation`.
    pub fn new(
        mesh_object: MeshObjectId,
        target: &ConnectorId,
        version: u64,
        operation: crate::ExportOperation,
    ) -> Self {
        // Built by hand: one key per export command, and `format!` costs several times this.
        let operation = operation.as_str();
        let mut key = String::with_capacity(36 + target.as_str().len() + 20 + operation.len() + 3);
        let mut uuid = Uuid::encode_buffer();
        key.push_str(mesh_object.as_uuid().hyphenated().encode_lower(&mut uuid));
        key.push('/');
        key.push_str(target.as_str());
        key.push('/');
        // The version's decimal digits, most significant first.
        let mut digits = [0u8; 20];
        let mut start = digits.len();
        let mut rest = version;
        for slot in digits.iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
            start -= 1;
            if rest == 0 {
                break;
            }
        }
        for digit in digits.iter().skip(start) {
            key.push(char::from(*digit));
        }
        key.push('/');
        key.push_str(operation);
        Self(key)
    }

    /// Parses a key received from the wire; any non-empty printable string up to 256 bytes.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        const WHAT: &str = "idempotency key";
        check_len(WHAT, s, Self::MAX_LEN)?;
        check_chars(
            WHAT,
            s,
            "control characters are not allowed",
            |c| !c.is_control(),
            |c| !c.is_control(),
        )?;
        Ok(Self(s.into()))
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID.
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            /// Returns the UUID.
            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the hyphenated text form.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                Uuid::parse_str(s).map(Self).map_err(|e| ParseError::Malformed {
                    what: $what,
                    input: s.to_owned(),
                    reason: e.to_string(),
                })
            }

            /// Parses the 16-byte binary form.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, ParseError> {
                Uuid::from_slice(bytes).map(Self).map_err(|e| ParseError::Malformed {
                    what: $what,
                    input: format!("{bytes:02x?}"),
                    reason: e.to_string(),
                })
            }

            /// Derives an id deterministically from a namespace and a name (UUID version 8 over
            /// a 128-bit FNV-1a hash), so that the same input always yields the same id.
            pub fn derive(namespace: &str, name: &[u8]) -> Self {
                Self(derive_uuid(namespace, name))
            }

            /// Derives an id as [`Self::derive`] does, in a namespace hashed beforehand.
            pub fn derive_in(namespace: IdNamespace, name: &[u8]) -> Self {
                Self(namespace.derive(name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                Self::parse(s)
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id! {
    /// The identifier of an event. Producers choose it (a UUIDv7 for a live change, a derived id
    /// for a replayable one); every downstream message id is derived from it and the stage, so a
    /// redelivery republishes the same id and the JetStream dedup window and inboxes catch it.
    EventId, "event id"
}

uuid_id! {
    /// The identifier of a mesh object: the one joined identity behind many connector objects.
    MeshObjectId, "mesh object id"
}

impl EventId {
    /// Derives the id of the message a stage publishes for this input event, such as
    /// `EventId::derive_for_stage(input, "correlation")`.
    pub fn derive_for_stage(&self, stage: &str) -> Self {
        Self::derive(stage, self.0.as_bytes())
    }
}

/// One step of 128-bit FNV-1a.
const fn fnv_1a(hash: u128, byte: u8) -> u128 {
    let hash = hash ^ byte as u128;
    // hash * PRIME with PRIME = 2^88 + 0x13B, as a shift and a small multiplication.
    (hash << 88).wrapping_add(hash.wrapping_mul(0x13B))
}

/// The namespace of derived ids, hashed once: deriving many ids in one namespace (one per
/// event, say) then hashes only their names. `IdNamespace::new` is a `const fn`, so a constant
/// namespace costs nothing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdNamespace(u128);

impl IdNamespace {
    /// Hashes `namespace` (and the separator that follows it).
    pub const fn new(namespace: &str) -> Self {
        let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
        let mut bytes = namespace.as_bytes();
        while let Some((byte, rest)) = bytes.split_first() {
            hash = fnv_1a(hash, *byte);
            bytes = rest;
        }
        Self(fnv_1a(hash, 0))
    }

    /// 128-bit FNV-1a over the namespace, a zero byte and `name`, formatted as a version 8
    /// (custom) RFC 9562 UUID.
    fn derive(self, name: &[u8]) -> Uuid {
        let hash = name.iter().fold(self.0, |hash, byte| fnv_1a(hash, *byte));
        Uuid::new_v8(hash.to_be_bytes())
    }
}

fn derive_uuid(namespace: &str, name: &[u8]) -> Uuid {
    IdNamespace::new(namespace).derive(name)
}

/// Names one connector object: an object of `object_type` known by `external_id` in the system
/// behind `connector`. This is the key of the management space.
///
/// It hashes as its external id alone: that tells connector objects apart almost always, and
/// the management space hashes a reference several times per change event. Equal references
/// hash alike, as a hash must; two objects of different connectors with one external id only
/// share a bucket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ConnectorObjectRef {
    /// The connector the object was imported from.
    pub connector: ConnectorId,
    /// The object's type in that connector.
    pub object_type: ObjectType,
    /// The object's id in the connected system.
    pub external_id: ExternalId,
}

impl std::hash::Hash for ConnectorObjectRef {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.external_id.hash(state);
    }
}

impl fmt::Display for ConnectorObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.connector, self.object_type, self.external_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connector_id_accepts_dns_labels_and_names_the_rule_otherwise() {
        assert!(ConnectorId::parse("corporate-ad").is_ok());
        assert!(ConnectorId::parse("hr2").is_ok());
        let err = ConnectorId::parse("Corporate.AD").unwrap_err();
        assert!(err.to_string().contains("lowercase letters"), "{err}");
        assert!(matches!(
            ConnectorId::parse(""),
            Err(ParseError::Empty { .. })
        ));
        assert!(matches!(
            ConnectorId::parse(&"a".repeat(64)),
            Err(ParseError::TooLong { len: 64, .. })
        ));
    }

    #[test]
    fn object_type_rejects_subject_wildcards() {
        assert!(ObjectType::parse("ServiceAccount").is_ok());
        assert!(ObjectType::parse("User.*").is_err());
        assert!(ObjectType::parse("9User").is_err());
    }

    #[test]
    fn derived_ids_are_deterministic_and_stage_specific() {
        let input = EventId::parse("0190d1f2-7c1a-7b3e-9f00-000000000001").unwrap();
        let a = input.derive_for_stage("correlation");
        assert_eq!(a, input.derive_for_stage("correlation"));
        assert_ne!(a, input.derive_for_stage("flow"));
        assert_eq!(a.as_uuid().get_version_num(), 8);
    }

    #[test]
    fn derivation_is_fnv_1a_128() {
        const OFFSET: u128 = 0x6c62272e07bb014262b821756295c58d;
        const PRIME: u128 = 0x0000000001000000000000000000013B;
        for (namespace, name) in [("", &b""[..]), ("flow", b"\x00\xffabc"), ("n", &[7u8; 40])] {
            let mut hash = OFFSET;
            for byte in namespace.as_bytes().iter().chain(&[0u8]).chain(name) {
                hash ^= u128::from(*byte);
                hash = hash.wrapping_mul(PRIME);
            }
            assert_eq!(
                derive_uuid(namespace, name),
                Uuid::new_v8(hash.to_be_bytes())
            );
            assert_eq!(
                EventId::derive_in(IdNamespace::new(namespace), name),
                EventId::derive(namespace, name)
            );
        }
    }

    #[test]
    fn idempotency_key_names_object_target_version_and_operation() {
        let id = MeshObjectId::parse("0190d1f2-7c1a-7b3e-9f00-000000000002").unwrap();
        let target = ConnectorId::parse("hr-database").unwrap();
        let key = IdempotencyKey::new(id, &target, 7, crate::ExportOperation::Update);
        assert_eq!(
            key.as_str(),
            "0190d1f2-7c1a-7b3e-9f00-000000000002/hr-database/7/update"
        );
        for version in [0, 10, 1234567890, u64::MAX] {
            let key = IdempotencyKey::new(id, &target, version, crate::ExportOperation::Create);
            assert_eq!(
                key.as_str(),
                format!("{id}/{target}/{version}/create"),
                "version {version}"
            );
        }
    }
}
