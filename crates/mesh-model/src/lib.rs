//! Identity Mesh domain model: the vocabulary every other crate speaks.
//!
//! This crate sits at the bottom of the dependency graph (`mesh-model <- mesh-expr <-
//! mesh-engine <- mesh-sim`, and `mesh-model <- mesh-proto`). It holds types only: typed ids,
//! case-insensitive [`AttributeName`]s, typed [`Value`]s, [`Confidence`], and the domain form of
//! every event that travels between the services. It performs no I/O, reads no clock and has no
//! randomness: time is always passed in.
//!
//! Every newtype is parsed, not validated: once you hold a [`ConnectorId`] or a [`Confidence`] it
//! is known to be well formed.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod attribute;
mod confidence;
mod event;
mod ids;
mod text;
mod value;

pub use attribute::{AttributeName, Attributes, AttributesIter, NameMap, NameMapIter};
pub use confidence::Confidence;
pub use event::{
    AttributeChange, ChangeEvent, ChangeOperation, CorrelatedChange, DeadLetter, DevicePosture,
    ExportCommand, ExportOperation, ExportResult, ExportStatus, GeoLocation, JoinMethod, JoinState,
    LifecycleState, MeshObjectChanged, RiskSignal, SignIn, SignalKind,
};
pub use ids::{
    ConnectorId, ConnectorObjectRef, EventId, ExternalId, IdNamespace, IdempotencyKey,
    MeshObjectId, ObjectType, RuleName,
};
pub use text::Text;
pub use value::{Value, ValueKind};

/// Why a string could not become one of the model's newtypes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input was empty where a value is required.
    #[error("{what} must not be empty")]
    Empty {
        /// The kind of value being parsed, e.g. "connector id".
        what: &'static str,
    },
    /// The input was longer than the documented maximum.
    #[error("{what} is {len} bytes long; the maximum is {max}")]
    TooLong {
        /// The kind of value being parsed.
        what: &'static str,
        /// The input's length in bytes.
        len: usize,
        /// The maximum length in bytes.
        max: usize,
    },
    /// The input contained a character the type does not allow.
    #[error("{what} {input:?} has an invalid character {found:?}: {rule}")]
    InvalidCharacter {
        /// The kind of value being parsed.
        what: &'static str,
        /// The rejected input.
        input: String,
        /// The first offending character.
        found: char,
        /// The rule the input breaks, in words.
        rule: &'static str,
    },
    /// A number was outside its allowed range.
    #[error("{what} {value} is outside {min}..={max}")]
    OutOfRange {
        /// The kind of value being parsed.
        what: &'static str,
        /// The rejected value.
        value: i64,
        /// The smallest allowed value.
        min: i64,
        /// The largest allowed value.
        max: i64,
    },
    /// The input was not in the expected syntax.
    #[error("{what} {input:?} is malformed: {reason}")]
    Malformed {
        /// The kind of value being parsed.
        what: &'static str,
        /// The rejected input.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
}
