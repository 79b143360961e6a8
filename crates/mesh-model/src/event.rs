//! The domain form of every event that travels between the services (DESIGN.md §2).
//!
//! The protobuf form lives in `mesh-proto`, which converts to and from these types; the
//! services and the pure engine only ever see these.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    AttributeName, Attributes, ConnectorId, ConnectorObjectRef, EventId, IdempotencyKey,
    MeshObjectId, ObjectType, RuleName, Value,
};

/// What happened to a connector object in its connected system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeOperation {
    /// The object exists with exactly the attributes carried (a full snapshot, not a delta:
    /// an attribute that is absent is withdrawn).
    Upsert,
    /// The object no longer exists.
    Delete,
}

/// A change to one connector object, as a connector agent saw it. Stream `MESH_CHANGES`,
/// subject `mesh.change.<connector>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEvent {
    /// Chosen by the connector agent; a replay of the same change carries the same id.
    pub event_id: EventId,
    /// The connector object that changed.
    pub object: ConnectorObjectRef,
    /// Upsert or delete.
    pub operation: ChangeOperation,
    /// The raw attributes of the object after the change (empty for a delete).
    pub attributes: Attributes,
    /// When the connected system made the change, as far as the agent knows.
    pub source_time: DateTime<Utc>,
}

/// How a joined connector object came to be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JoinMethod {
    /// A join rule found exactly one mesh object.
    Matched,
    /// No mesh object matched and an anchor rule projected a new one.
    Projected,
    /// The connector object was already joined; the link is kept.
    Existing,
    /// An operator resolved a review-queue entry.
    Manual,
}

/// The outcome of correlation for one connector object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "camelCase")]
pub enum JoinState {
    /// Linked to a mesh object.
    Joined {
        /// The mesh object.
        mesh_object: MeshObjectId,
        /// The join rule that found or projected it, if a rule did.
        rule: Option<RuleName>,
        /// How the link came about.
        method: JoinMethod,
    },
    /// No rule matched and no anchor rule applied: kept in the management space and tried
    /// again when a mesh attribute one of its join rules targets changes.
    Disconnector,
    /// A rule matched several mesh objects: nothing is joined, the review queue holds it.
    Ambiguous {
        /// The rule that matched more than once.
        rule: RuleName,
        /// The mesh objects it matched, in id order.
        candidates: Vec<MeshObjectId>,
    },
    /// The connector object was deleted in its system.
    Deleted,
}

/// A change event after correlation. Stream `MESH_JOINED`, subject `mesh.joined.<connector>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CorrelatedChange {
    /// Derived from the change's event id and the stage `correlation`.
    pub event_id: EventId,
    /// The change that was correlated.
    pub change: ChangeEvent,
    /// Where the connector object stands now.
    pub join: JoinState,
    /// The mesh object the connector object was joined to before this change, when that
    /// differs from the one it is joined to now (a disconnect or a move): its contributions
    /// from this connector object must be withdrawn.
    pub previous_mesh_object: Option<MeshObjectId>,
    /// The version of the rule set that produced the outcome.
    pub rule_version: u64,
    /// The MESH_CHANGES stream sequence of the change the attributes come from; per connector
    /// object, a lower one than already applied is stale. 0 when unknown.
    #[serde(default)]
    pub source_sequence: u64,
}

/// Where a mesh object is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// In use: a joiner or a mover.
    Active,
    /// Temporarily without access (a suspension, a leave of absence).
    Disabled,
    /// Gone from the authoritative source: access must be removed everywhere.
    Leaver,
    /// No connector object is joined any more; the mesh object is kept for history.
    Deleted,
}

impl LifecycleState {
    /// Returns the lowercase name: `active`, `disabled`, `leaver`, `deleted`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
            Self::Leaver => "leaver",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for LifecycleState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attribute's resolved value before and after a change. `Null` on one side means the
/// attribute appeared or disappeared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    /// The mesh attribute.
    pub name: AttributeName,
    /// The value before.
    pub old: Value,
    /// The value after.
    pub new: Value,
}

/// A mesh object's resolved state changed. Stream `MESH_OBJECTS`, subject
/// `mesh.object.<object_type>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeshObjectChanged {
    /// Derived from the causing event id and the stage `flow`.
    pub event_id: EventId,
    /// The event (a change event, an override, a rule change) that caused this one.
    pub cause: EventId,
    /// The mesh object.
    pub mesh_object: MeshObjectId,
    /// Its type.
    pub object_type: ObjectType,
    /// Its version after the change; versions increase by one per change.
    pub version: u64,
    /// Its lifecycle state after the change.
    pub lifecycle: LifecycleState,
    /// Its lifecycle state before the change, when the change altered it; `None` for a new
    /// mesh object or when the state stayed the same.
    pub previous_lifecycle: Option<LifecycleState>,
    /// Exactly the attributes whose resolved value changed, in name order.
    pub changes: Vec<AttributeChange>,
    /// When the change was resolved (the causing event's time, not the wall clock).
    pub occurred_at: DateTime<Utc>,
    /// The version of the rule set that produced it.
    pub rule_version: u64,
}

/// What an export command asks a target to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportOperation {
    /// Create the object (or adopt an existing one with the same key) with all attributes.
    Create,
    /// Change only the attributes carried.
    Update,
    /// Take away access but keep the object (SCIM `active: false`, AD
    /// `userAccountControl` bit 2).
    Disable,
    /// Give access back to a disabled object (a rejoin within the grace period).
    Enable,
    /// Remove the object.
    Delete,
}

impl ExportOperation {
    /// Returns the lowercase name: `create`, `update`, `disable`, `enable`, `delete`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Disable => "disable",
            Self::Enable => "enable",
            Self::Delete => "delete",
        }
    }
}

impl fmt::Display for ExportOperation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An instruction to a provisioning agent. Stream `MESH_EXPORTS`, subject
/// `mesh.export.<target_connector>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportCommand {
    /// Mesh object, target, version and operation: applying the command twice has one effect.
    pub idempotency_key: IdempotencyKey,
    /// The target connector.
    pub target: ConnectorId,
    /// What to do.
    pub operation: ExportOperation,
    /// Where the object lives in the target: an OU's DN, a `schema.table`, a SCIM endpoint's
    /// resource type path.
    pub container: String,
    /// The object's type in the target.
    pub object_type: ObjectType,
    /// Target attributes: all of them for a create, only the changed ones for an update,
    /// empty for disable, enable and delete.
    pub attributes: Attributes,
    /// The object's id in the target, once a previous export learned it.
    pub target_object_id: Option<String>,
    /// The mesh object exported.
    pub mesh_object: MeshObjectId,
    /// Its version this command reflects.
    pub mesh_object_version: u64,
    /// The projection rule that put the object in scope.
    pub rule: RuleName,
    /// The event that caused the command.
    pub cause: EventId,
    /// When the projection service issued it.
    pub issued_at: DateTime<Utc>,
    /// Which attempt this is, from 1; a retry resends the command with the next attempt.
    pub attempt: u32,
}

/// How an export command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ExportStatus {
    /// The target now holds the change.
    Applied,
    /// The target already held it (a repeat of an applied key, or an adopted object).
    AlreadyApplied,
    /// It failed in a way that may pass later (timeouts, 429, 503): retry with backoff.
    RetryableFailure,
    /// It failed in a way that will not pass by retrying (400, schema violation).
    PermanentFailure,
}

/// A provisioning agent's answer to an export command. Stream `MESH_RESULTS`, subject
/// `mesh.result.<target_connector>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportResult {
    /// The command's key.
    pub idempotency_key: IdempotencyKey,
    /// The target connector.
    pub target: ConnectorId,
    /// The command's operation.
    pub operation: ExportOperation,
    /// The mesh object exported.
    pub mesh_object: MeshObjectId,
    /// The version the command reflected.
    pub mesh_object_version: u64,
    /// How it ended.
    pub status: ExportStatus,
    /// The object's id in the target, when known.
    pub target_object_id: Option<String>,
    /// What the target said, for failures; empty on success.
    pub message: String,
    /// Which attempt this was, from 1.
    pub attempt: u32,
    /// When the agent finished.
    pub completed_at: DateTime<Utc>,
}

/// A place on Earth, as resolved from an IP address or reported by a device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeoLocation {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// ISO 3166-1 alpha-2, when known.
    pub country: Option<String>,
    /// City name, when known.
    pub city: Option<String>,
}

/// A sign-in attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignIn {
    /// Whether the sign-in succeeded.
    pub success: bool,
    /// The client's address.
    pub ip: Option<IpAddr>,
    /// Where the client was.
    pub location: Option<GeoLocation>,
    /// The device's id, when the identity provider knows it.
    pub device_id: Option<String>,
    /// The MFA method used (`totp`, `webauthn`, `push`, `sms`), if any.
    pub mfa_method: Option<String>,
    /// When MFA last completed, if it did.
    pub mfa_at: Option<DateTime<Utc>>,
    /// True when a person signed in interactively (a browser or a desktop prompt), false for
    /// a token or client-credentials flow. A service account signing in interactively is a
    /// human using a non-human identity.
    pub interactive: bool,
    /// Why a failed sign-in failed, in the identity provider's words.
    pub failure_reason: Option<String>,
}

/// A device's management state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DevicePosture {
    /// The device's id.
    pub device_id: String,
    /// Managed by the organisation's MDM.
    pub managed: bool,
    /// Compliant with its policies (encryption, OS version, ...).
    pub compliant: bool,
}

/// What a risk signal reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum SignalKind {
    /// A sign-in attempt.
    SignIn(SignIn),
    /// A device posture report.
    DevicePosture(DevicePosture),
}

impl SignalKind {
    /// Returns the subject token: `signin` or `posture` (`mesh.signal.<kind>`).
    pub const fn subject_token(&self) -> &'static str {
        match self {
            Self::SignIn(_) => "signin",
            Self::DevicePosture(_) => "posture",
        }
    }
}

/// An observation about an identity that feeds its risk state. Stream `MESH_SIGNALS`, subject
/// `mesh.signal.<kind>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RiskSignal {
    /// Chosen by the reporter; a repeat with the same id is counted once.
    pub signal_id: EventId,
    /// The identity as the reporter knows it (a userName, a UPN, a client id).
    pub subject: String,
    /// The mesh object, when the reporter knows it.
    pub mesh_object: Option<MeshObjectId>,
    /// When it was observed.
    pub observed_at: DateTime<Utc>,
    /// What was observed.
    pub kind: SignalKind,
}

/// A message a stage could not process after its bounded deliveries. Stream `MESH_DLQ`,
/// subject `mesh.dlq.<stage>`. It keeps the original bytes so it can be replayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The stage (consumer) that gave up, such as `correlation`.
    pub stage: String,
    /// The subject the message was published on.
    pub subject: String,
    /// The stream it came from.
    pub stream: String,
    /// Its sequence in that stream.
    pub stream_sequence: u64,
    /// Its `Mesh-Schema` header, when present.
    pub schema: Option<String>,
    /// Its headers, so that a replay keeps the message id and trace context.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The original payload.
    pub payload: Vec<u8>,
    /// Why the stage gave up (the last error).
    pub reason: String,
    /// How many times it was delivered.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub failed_at: DateTime<Utc>,
}
