//! Risk: signals become a per-identity risk state, the state and the request become a score,
//! and the access policy turns score, request and identity into a decision with its reasons.
//!
//! The risk service keeps the state in Redis and calls these functions; nothing here reads a
//! clock or a store. Three steps:
//! - [`sign_in_effects`]: what one sign-in changes in the state (a failure to count, a new
//!   sighting, an impossible journey since the last one, a completed MFA).
//! - [`assess`]: the 0–100 score and the factors behind it, from the state, the identity and
//!   (for a decision) the request. [`standing_level`] is the level without a request, the one
//!   the service contributes back to the mesh.
//! - [`decide`]: the policy's rules in order over the request, the risk and the identity; the
//!   first whose condition holds decides, else the policy's default.
//!
//! The names a policy condition reads are documented in docs/risk.md and listed in
//! [`REQUEST_NAMES`], [`RISK_NAMES`] and [`IDENTITY_NAMES`]; every other name is a mesh
//! attribute of the identity.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh_expr::EvalContext;
use mesh_model::{AttributeName, Attributes, LifecycleState, ObjectType, RuleName, Value};

use crate::rules::{Origin, Script};

/// What a decision grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Access is granted.
    Allow,
    /// Access is refused.
    Deny,
    /// Access is granted after a fresh MFA.
    RequireMfa,
    /// Access is granted within a scope only.
    Limit,
}

impl Verdict {
    /// Every verdict with its spelling in YAML.
    pub const ALL: &'static [(Self, &'static str)] = &[
        (Self::Allow, "allow"),
        (Self::Deny, "deny"),
        (Self::RequireMfa, "require_mfa"),
        (Self::Limit, "limit"),
    ];

    /// Returns the YAML spelling.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(v, _)| *v == self)
            .map_or("?", |(_, name)| name)
    }

    /// Parses the YAML spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .find(|(_, name)| *name == s)
            .map(|(v, _)| *v)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How sensitive the requested resource is. Unspecified reads as low.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Sensitivity {
    /// Public or low-value resources.
    #[default]
    Low,
    /// Ordinary business resources.
    Medium,
    /// Confidential data or privileged operations.
    High,
    /// Production administration, payment, identity administration.
    Critical,
}

impl Sensitivity {
    /// Returns the lowercase name a policy compares with.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Returns 1 (low) to 4 (critical), for ordered comparisons in policies.
    pub fn rank(self) -> i64 {
        match self {
            Self::Low => 1,
            Self::Medium => 2,
            Self::High => 3,
            Self::Critical => 4,
        }
    }
}

/// A score's band: low below 25, medium below 50, high below 75, critical from 75.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RiskLevel {
    /// 0–24.
    Low,
    /// 25–49.
    Medium,
    /// 50–74.
    High,
    /// 75–100.
    Critical,
}

impl RiskLevel {
    /// Returns the band of `score`.
    pub fn of(score: u32) -> Self {
        match score {
            0..=24 => Self::Low,
            25..=49 => Self::Medium,
            50..=74 => Self::High,
            _ => Self::Critical,
        }
    }

    /// Returns the lowercase name (`low`, `medium`, `high`, `critical`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Low, Self::Medium, Self::High, Self::Critical]
            .into_iter()
            .find(|l| l.as_str() == s)
    }
}

impl fmt::Display for RiskLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the policy finds identities and their owners in the mesh (`spec.identity`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    /// Mesh attributes whose value names the identity as callers do (a userName, a UPN, a
    /// client id); a request's `subject` is looked up among them, case-insensitively.
    pub subject_attributes: Vec<AttributeName>,
    /// Mesh object types that are non-human identities.
    pub service_account_types: Vec<ObjectType>,
    /// The attribute of a service account that names its owner.
    pub owner_attribute: Option<AttributeName>,
    /// The attribute of the owner that `owner_attribute` holds (an employee id); without it
    /// the owner is looked up among the subject attributes.
    pub owner_key_attribute: Option<AttributeName>,
    /// The attribute holding when an identity expires (a timestamp or RFC 3339 text).
    pub expiry_attribute: Option<AttributeName>,
}

impl Default for IdentitySettings {
    fn default() -> Self {
        let name = |s: &str| AttributeName::parse(s).ok();
        Self {
            subject_attributes: ["UserName", "Email"].into_iter().filter_map(name).collect(),
            service_account_types: ObjectType::parse("ServiceAccount").into_iter().collect(),
            owner_attribute: None,
            owner_key_attribute: None,
            expiry_attribute: None,
        }
    }
}

/// The weights and thresholds of the score (`spec.scoring`). Every weight is in points of
/// the 0–100 score; the sum is capped at 100.
#[derive(Debug, Clone, PartialEq)]
pub struct Scoring {
    /// The sliding window failed sign-ins are counted in.
    pub failure_window: Duration,
    /// Failures in the window that cost nothing (typos).
    pub free_failures: u32,
    /// Points per failure beyond the free ones.
    pub failure_weight: u32,
    /// Most points failures may add.
    pub failure_cap: u32,
    /// Speed between two sightings above which the journey is impossible.
    pub max_travel_kmh: f64,
    /// Shortest distance that counts as travel (IP geolocation is coarse).
    pub min_travel_km: f64,
    /// How long an impossible journey keeps counting after it was seen.
    pub travel_memory: Duration,
    /// Points for an impossible journey.
    pub impossible_travel: u32,
    /// Points for a device the identity never signed in from.
    pub unknown_device: u32,
    /// Points for a device its MDM does not manage.
    pub unmanaged_device: u32,
    /// Points for a device that fails its compliance policies.
    pub noncompliant_device: u32,
    /// How long a completed MFA stays fresh.
    pub mfa_fresh: Duration,
    /// Points for a sensitive (high or critical) request without a fresh MFA.
    pub stale_mfa: u32,
    /// Points for a leaver.
    pub leaver: u32,
    /// Points for a disabled identity.
    pub disabled: u32,
    /// Points for a service account used interactively.
    pub nhi_interactive: u32,
    /// Points for an expired identity.
    pub expired: u32,
    /// Points for a service account whose owner is gone.
    pub ownerless: u32,
}

impl Default for Scoring {
    fn default() -> Self {
        Self {
            failure_window: Duration::from_secs(15 * 60),
            free_failures: 2,
            failure_weight: 10,
            failure_cap: 40,
            max_travel_kmh: 900.0,
            min_travel_km: 300.0,
            travel_memory: Duration::from_secs(24 * 3600),
            impossible_travel: 50,
            unknown_device: 15,
            unmanaged_device: 10,
            noncompliant_device: 25,
            mfa_fresh: Duration::from_secs(12 * 3600),
            stale_mfa: 10,
            leaver: 100,
            disabled: 100,
            nhi_interactive: 60,
            expired: 60,
            ownerless: 40,
        }
    }
}

/// One ordered rule of an access policy.
#[derive(Debug, Clone)]
pub struct PolicyRule {
    /// Its name, unique in the policy; the reason code of the decisions it makes.
    pub name: RuleName,
    /// The condition (a filter: null counts as false).
    pub when: Script,
    /// What it decides.
    pub decision: Verdict,
    /// For `limit`, the scope granted.
    pub scope: Option<String>,
    /// The reason in words.
    pub message: String,
}

/// An `AccessPolicy` document: ordered rules and a default.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    /// `metadata.name`.
    pub name: RuleName,
    /// The decision when no rule holds.
    pub default: Verdict,
    /// For a `limit` default, the scope granted.
    pub default_scope: Option<String>,
    /// The decision when the risk state cannot be read (`spec.degraded`); never `allow`.
    pub degraded: Verdict,
    /// How identities are found.
    pub identity: IdentitySettings,
    /// How the score is made.
    pub scoring: Scoring,
    /// In the order written.
    pub rules: Vec<PolicyRule>,
    /// Where it was defined.
    pub origin: Origin,
}

/// Names under `request.` a condition may read.
pub const REQUEST_NAMES: &[&str] = &[
    "request.subject",
    "request.resource",
    "request.action",
    "request.sensitivity",
    "request.sensitivityRank",
    "request.interactive",
    "request.ip",
    "request.deviceId",
    "request.country",
    "request.mfa",
    "request.mfaMethod",
    "request.mfaAgeMinutes",
];

/// Names under `risk.` a condition may read.
pub const RISK_NAMES: &[&str] = &[
    "risk.score",
    "risk.level",
    "risk.failedSignIns",
    "risk.impossibleTravel",
    "risk.travelKmh",
    "risk.knownDevice",
    "risk.deviceManaged",
    "risk.deviceCompliant",
    "risk.lastMfaAgeMinutes",
];

/// Names under `identity.` a condition may read.
pub const IDENTITY_NAMES: &[&str] = &[
    "identity.known",
    "identity.meshObject",
    "identity.type",
    "identity.lifecycle",
    "identity.daysSinceJoin",
    "identity.serviceAccount",
    "identity.hasOwner",
    "identity.ownerLifecycle",
    "identity.ownerless",
    "identity.expiresAt",
    "identity.expired",
];

/// Returns true when `name` is in one of the reserved namespaces (`request.`, `risk.`,
/// `identity.`, but not `context.`) without being one of its names: a typo to refuse.
pub fn is_unknown_reserved(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let reserved = ["request.", "risk.", "identity."];
    reserved.iter().any(|p| lower.starts_with(p))
        && !REQUEST_NAMES
            .iter()
            .chain(RISK_NAMES)
            .chain(IDENTITY_NAMES)
            .any(|n| n.eq_ignore_ascii_case(name))
}

/// A place and time an identity was seen signing in.
#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
    /// When.
    pub at: DateTime<Utc>,
    /// ISO 3166-1 alpha-2, when known.
    pub country: Option<String>,
}

/// What the state holds about one device of an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceRecord {
    /// The identity signed in from it before.
    pub seen: bool,
    /// Managed by the MDM, when a posture report said.
    pub managed: Option<bool>,
    /// Compliant, when a posture report said.
    pub compliant: Option<bool>,
}

/// One identity's risk state, as read for a decision: counts already windowed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RiskState {
    /// Failed sign-ins within the failure window.
    pub failed_sign_ins: u32,
    /// The last successful sign-in with a location.
    pub last_sighting: Option<Sighting>,
    /// When an impossible journey was last seen, and its speed.
    pub impossible_travel: Option<(DateTime<Utc>, f64)>,
    /// When MFA last completed.
    pub last_mfa_at: Option<DateTime<Utc>>,
    /// The request's device, when it named one.
    pub device: Option<DeviceRecord>,
}

/// What the mesh knows of an identity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct IdentityFacts {
    /// The mesh object, canonical hyphenated UUID; `None` when the subject is unknown.
    pub mesh_object: Option<String>,
    /// Its type.
    pub object_type: Option<ObjectType>,
    /// Its lifecycle state.
    pub lifecycle: Option<LifecycleState>,
    /// When the mesh first knew it.
    pub joined_at: Option<DateTime<Utc>>,
    /// Its resolved mesh attributes.
    pub attributes: Attributes,
    /// For a service account with an owner attribute: `Some(lifecycle)` of the owner, or
    /// `Some(None)` when no mesh object holds the owner's key. `None`: no owner named.
    pub owner: Option<Option<LifecycleState>>,
}

/// An access request.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRequest {
    /// The identity as the caller knows it.
    pub subject: String,
    /// What is accessed.
    pub resource: String,
    /// What is done to it.
    pub action: String,
    /// How sensitive it is.
    pub sensitivity: Sensitivity,
    /// The client's IP address, when known.
    pub ip: Option<String>,
    /// The device's id, when known.
    pub device_id: Option<String>,
    /// Where the client is, when known: latitude, longitude, country.
    pub location: Option<(f64, f64, Option<String>)>,
    /// The session completed MFA.
    pub mfa_completed: bool,
    /// The MFA method, when completed.
    pub mfa_method: Option<String>,
    /// When the session's MFA completed.
    pub mfa_at: Option<DateTime<Utc>>,
    /// A person makes the request interactively.
    pub interactive: bool,
    /// When the request was made.
    pub time: DateTime<Utc>,
    /// Further facts, read as `context.<name>`.
    pub context: Attributes,
}

/// One factor of a score, or the reason a policy rule gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    /// A stable code: a factor (`failed_sign_ins`, `impossible_travel`, ...) or a policy
    /// rule's name.
    pub code: String,
    /// In words.
    pub message: String,
    /// Points it added to the score (0 for a policy reason).
    pub weight: u32,
}

/// A score and what made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    /// 0 (none) to 100 (critical).
    pub score: u32,
    /// The band of the score.
    pub level: RiskLevel,
    /// The factors, heaviest first.
    pub factors: Vec<Reason>,
}

/// What [`decide`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionOutcome {
    /// The verdict.
    pub verdict: Verdict,
    /// For `limit`, the scope granted.
    pub scope: Option<String>,
    /// The rule that decided, or `default`.
    pub policy: String,
    /// The score behind it.
    pub assessment: Assessment,
    /// The deciding rule's reason first, then the score's factors.
    pub reasons: Vec<Reason>,
    /// Rules whose condition failed to evaluate, with the error; they were skipped.
    pub errors: Vec<(String, String)>,
}

/// What one sign-in changes in its identity's state.
#[derive(Debug, Clone, PartialEq)]
pub struct SignInEffects {
    /// The sign-in failed: count it in the window.
    pub failed: bool,
    /// The sign-in succeeded from a known place: the new last sighting, unless an older one
    /// arrived late (`observed_at` before the last sighting's).
    pub sighting: Option<Sighting>,
    /// The journey from the last sighting was impossible: its speed in km/h.
    pub impossible_travel_kmh: Option<f64>,
    /// MFA completed at this time.
    pub mfa_at: Option<DateTime<Utc>>,
}

/// Great-circle distance in kilometres (haversine, mean Earth radius).
pub fn distance_km(a: (f64, f64), b: (f64, f64)) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0088;
    let (lat1, lon1) = (a.0.to_radians(), a.1.to_radians());
    let (lat2, lon2) = (b.0.to_radians(), b.1.to_radians());
    let h = ((lat2 - lat1) / 2.0).sin().powi(2)
        + lat1.cos() * lat2.cos() * ((lon2 - lon1) / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().min(1.0).asin()
}

/// The speed in km/h needed to go from `from` to (`to`, `at`), when the distance counts as
/// travel and the speed is above the limit; `None` otherwise.
pub fn impossible_journey(
    scoring: &Scoring,
    from: &Sighting,
    to: (f64, f64),
    at: DateTime<Utc>,
) -> Option<f64> {
    let km = distance_km((from.latitude, from.longitude), to);
    if !km.is_finite() || km < scoring.min_travel_km {
        return None;
    }
    let seconds = (at - from.at).num_milliseconds().unsigned_abs() as f64 / 1000.0;
    // Two sightings in the same second: as fast as one second allows.
    let hours = seconds.max(1.0) / 3600.0;
    let kmh = km / hours;
    (kmh > scoring.max_travel_kmh).then_some(kmh)
}

/// What a sign-in observed at `observed_at` changes, given the last sighting.
#[allow(clippy::too_many_arguments)]
pub fn sign_in_effects(
    scoring: &Scoring,
    last: Option<&Sighting>,
    success: bool,
    location: Option<(f64, f64, Option<String>)>,
    mfa_at: Option<DateTime<Utc>>,
    observed_at: DateTime<Utc>,
) -> SignInEffects {
    if !success {
        return SignInEffects {
            failed: true,
            sighting: None,
            impossible_travel_kmh: None,
            mfa_at: None,
        };
    }
    let mut effects = SignInEffects {
        failed: false,
        sighting: None,
        impossible_travel_kmh: None,
        mfa_at,
    };
    if let Some((latitude, longitude, country)) = location
        && latitude.is_finite()
        && longitude.is_finite()
    {
        effects.impossible_travel_kmh =
            last.and_then(|l| impossible_journey(scoring, l, (latitude, longitude), observed_at));
        if last.is_none_or(|l| l.at <= observed_at) {
            effects.sighting = Some(Sighting {
                latitude,
                longitude,
                at: observed_at,
                country,
            });
        }
    }
    effects
}

fn minutes_since(then: DateTime<Utc>, now: DateTime<Utc>) -> i64 {
    (now - then).num_minutes().max(0)
}

/// The identity's expiry, read from `expiry_attribute` (a timestamp, or RFC 3339 text).
pub fn expiry(settings: &IdentitySettings, identity: &IdentityFacts) -> Option<DateTime<Utc>> {
    let name = settings.expiry_attribute.as_ref()?;
    match identity.attributes.get(name)? {
        Value::Timestamp(t) => Some(*t),
        Value::String(s) => DateTime::parse_from_rfc3339(s.trim())
            .ok()
            .map(|t| t.with_timezone(&Utc))
            .or_else(|| {
                chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                    .ok()
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| t.and_utc())
            }),
        _ => None,
    }
}

/// Returns true when the identity is of a service-account type.
pub fn is_service_account(settings: &IdentitySettings, identity: &IdentityFacts) -> bool {
    identity
        .object_type
        .as_ref()
        .is_some_and(|t| settings.service_account_types.contains(t))
}

fn is_ownerless(identity: &IdentityFacts) -> bool {
    matches!(
        identity.owner,
        Some(None | Some(LifecycleState::Leaver | LifecycleState::Deleted))
    )
}

/// Scores an identity: from its state alone (`request` is `None`, the standing score), or for
/// one request.
pub fn assess(
    policy: &AccessPolicy,
    state: &RiskState,
    identity: &IdentityFacts,
    request: Option<&AccessRequest>,
    now: DateTime<Utc>,
) -> Assessment {
    let s = &policy.scoring;
    let mut factors = Vec::new();
    let mut add = |code: &str, message: String, weight: u32| {
        if weight > 0 {
            factors.push(Reason {
                code: code.to_owned(),
                message,
                weight,
            });
        }
    };

    let beyond = state.failed_sign_ins.saturating_sub(s.free_failures);
    if beyond > 0 {
        add(
            "failed_sign_ins",
            format!(
                "{} failed sign-ins in the last {} minutes",
                state.failed_sign_ins,
                s.failure_window.as_secs() / 60
            ),
            beyond.saturating_mul(s.failure_weight).min(s.failure_cap),
        );
    }
    let travel = travel_now(policy, state, request, now);
    if let Some(kmh) = travel {
        add(
            "impossible_travel",
            format!("sign-ins from places {kmh:.0} km/h apart"),
            s.impossible_travel,
        );
    }
    if let Some(request) = request {
        if request.device_id.is_some() {
            let device = state.device.unwrap_or_default();
            if !device.seen {
                add(
                    "unknown_device",
                    "a device this identity never signed in from".to_owned(),
                    s.unknown_device,
                );
            }
            if device.managed == Some(false) {
                add(
                    "unmanaged_device",
                    "a device the organisation does not manage".to_owned(),
                    s.unmanaged_device,
                );
            }
            if device.compliant == Some(false) {
                add(
                    "noncompliant_device",
                    "a device that fails its compliance policies".to_owned(),
                    s.noncompliant_device,
                );
            }
        }
        if request.sensitivity >= Sensitivity::High && !mfa_fresh(policy, state, request) {
            add(
                "stale_mfa",
                format!(
                    "no MFA within {} hours for a {} resource",
                    s.mfa_fresh.as_secs() / 3600,
                    request.sensitivity.as_str()
                ),
                s.stale_mfa,
            );
        }
        let service_account = is_service_account(&policy.identity, identity);
        if service_account && request.interactive {
            add(
                "nhi_interactive_use",
                "a service account used interactively by a person".to_owned(),
                s.nhi_interactive,
            );
        }
        if service_account && is_ownerless(identity) {
            add(
                "nhi_ownerless",
                "a service account whose owner is gone".to_owned(),
                s.ownerless,
            );
        }
        if let Some(expires) = expiry(&policy.identity, identity)
            && expires <= request.time
        {
            add(
                "expired",
                format!("expired at {}", expires.to_rfc3339()),
                s.expired,
            );
        }
        match identity.lifecycle {
            Some(LifecycleState::Leaver | LifecycleState::Deleted) => add(
                "leaver",
                "the identity has left the organisation".to_owned(),
                s.leaver,
            ),
            Some(LifecycleState::Disabled) => add(
                "disabled",
                "the identity is disabled".to_owned(),
                s.disabled,
            ),
            _ => {}
        }
    }
    factors.sort_by(|a, b| b.weight.cmp(&a.weight).then_with(|| a.code.cmp(&b.code)));
    let score = factors
        .iter()
        .fold(0u32, |sum, f| sum.saturating_add(f.weight))
        .min(100);
    Assessment {
        score,
        level: RiskLevel::of(score),
        factors,
    }
}

/// The standing level: the score from signals alone, without a request. This is what the
/// risk service contributes to the mesh.
pub fn standing_level(policy: &AccessPolicy, state: &RiskState, now: DateTime<Utc>) -> RiskLevel {
    assess(policy, state, &IdentityFacts::default(), None, now).level
}

/// The speed of an impossible journey that still counts at `now`: one remembered from the
/// signals, or the one from the last sighting to the request's location.
fn travel_now(
    policy: &AccessPolicy,
    state: &RiskState,
    request: Option<&AccessRequest>,
    now: DateTime<Utc>,
) -> Option<f64> {
    let memory = chrono::Duration::from_std(policy.scoring.travel_memory).unwrap_or_default();
    let remembered = state
        .impossible_travel
        .filter(|(at, _)| *at + memory > now)
        .map(|(_, kmh)| kmh);
    let current = request.and_then(|r| {
        let (lat, lon, _) = r.location.as_ref()?;
        let last = state.last_sighting.as_ref()?;
        impossible_journey(&policy.scoring, last, (*lat, *lon), r.time)
    });
    match (remembered, current) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn mfa_fresh(policy: &AccessPolicy, state: &RiskState, request: &AccessRequest) -> bool {
    let fresh = chrono::Duration::from_std(policy.scoring.mfa_fresh).unwrap_or_default();
    let last = match (
        request.mfa_completed.then_some(request.mfa_at).flatten(),
        state.last_mfa_at,
    ) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    match last {
        Some(at) => at + fresh > request.time,
        // A session that says MFA completed without saying when counts as fresh.
        None => request.mfa_completed,
    }
}

/// The reserved names, parsed once: a decision sets about thirty of them.
static RESERVED: std::sync::LazyLock<Vec<(&'static str, AttributeName)>> =
    std::sync::LazyLock::new(|| {
        REQUEST_NAMES
            .iter()
            .chain(RISK_NAMES)
            .chain(IDENTITY_NAMES)
            .filter_map(|n| AttributeName::parse(n).ok().map(|a| (*n, a)))
            .collect()
    });

fn set(attributes: &mut Attributes, name: &str, value: Value) {
    let parsed = match RESERVED.iter().find(|(n, _)| *n == name) {
        Some((_, a)) => Some(a.clone()),
        None => AttributeName::parse(name).ok(),
    };
    if let Some(name) = parsed {
        attributes.insert(name, value);
    }
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

/// The names a condition reads: the identity's mesh attributes, then `request.*`, `risk.*`,
/// `identity.*` and `context.*` (which take precedence over a mesh attribute of the same
/// name).
pub fn condition_attributes(
    policy: &AccessPolicy,
    request: &AccessRequest,
    state: &RiskState,
    identity: &IdentityFacts,
    assessment: &Assessment,
) -> Attributes {
    let mut a = identity.attributes.clone();
    let r = request;
    set(&mut a, "request.subject", r.subject.as_str().into());
    set(&mut a, "request.resource", r.resource.as_str().into());
    set(&mut a, "request.action", r.action.as_str().into());
    set(&mut a, "request.sensitivity", r.sensitivity.as_str().into());
    set(
        &mut a,
        "request.sensitivityRank",
        r.sensitivity.rank().into(),
    );
    set(&mut a, "request.interactive", r.interactive.into());
    set(&mut a, "request.ip", opt(r.ip.clone()));
    set(&mut a, "request.deviceId", opt(r.device_id.clone()));
    set(
        &mut a,
        "request.country",
        opt(r.location.as_ref().and_then(|l| l.2.clone())),
    );
    set(&mut a, "request.mfa", r.mfa_completed.into());
    set(&mut a, "request.mfaMethod", opt(r.mfa_method.clone()));
    set(
        &mut a,
        "request.mfaAgeMinutes",
        opt(r.mfa_at.map(|t| minutes_since(t, r.time))),
    );
    for (name, value) in r.context.iter() {
        set(&mut a, &format!("context.{}", name.as_str()), value.clone());
    }

    set(&mut a, "risk.score", i64::from(assessment.score).into());
    set(&mut a, "risk.level", assessment.level.as_str().into());
    set(
        &mut a,
        "risk.failedSignIns",
        i64::from(state.failed_sign_ins).into(),
    );
    let travel = travel_now(policy, state, Some(r), r.time);
    set(&mut a, "risk.impossibleTravel", travel.is_some().into());
    set(&mut a, "risk.travelKmh", opt(travel.map(f64::round)));
    let device = r
        .device_id
        .as_ref()
        .map(|_| state.device.unwrap_or_default());
    set(&mut a, "risk.knownDevice", opt(device.map(|d| d.seen)));
    set(
        &mut a,
        "risk.deviceManaged",
        opt(device.and_then(|d| d.managed)),
    );
    set(
        &mut a,
        "risk.deviceCompliant",
        opt(device.and_then(|d| d.compliant)),
    );
    set(
        &mut a,
        "risk.lastMfaAgeMinutes",
        opt(state.last_mfa_at.map(|t| minutes_since(t, r.time))),
    );

    let i = identity;
    set(&mut a, "identity.known", i.mesh_object.is_some().into());
    set(&mut a, "identity.meshObject", opt(i.mesh_object.clone()));
    set(
        &mut a,
        "identity.type",
        opt(i.object_type.as_ref().map(|t| t.as_str().to_owned())),
    );
    set(
        &mut a,
        "identity.lifecycle",
        opt(i.lifecycle.map(|l| l.as_str())),
    );
    set(
        &mut a,
        "identity.daysSinceJoin",
        opt(i.joined_at.map(|t| (r.time - t).num_days().max(0))),
    );
    let service_account = is_service_account(&policy.identity, i);
    set(&mut a, "identity.serviceAccount", service_account.into());
    set(&mut a, "identity.hasOwner", i.owner.is_some().into());
    set(
        &mut a,
        "identity.ownerLifecycle",
        opt(i.owner.flatten().map(|l| l.as_str())),
    );
    set(
        &mut a,
        "identity.ownerless",
        (service_account && (is_ownerless(i) || i.owner.is_none())).into(),
    );
    let expires = expiry(&policy.identity, i);
    set(&mut a, "identity.expiresAt", opt(expires));
    set(
        &mut a,
        "identity.expired",
        expires.is_some_and(|e| e <= r.time).into(),
    );
    a
}

/// Decides `request`: scores it, then runs the policy's rules in order; the first whose
/// condition holds decides, else the default. A rule whose condition fails to evaluate is
/// skipped and reported in [`DecisionOutcome::errors`].
pub fn decide(
    policy: &AccessPolicy,
    request: &AccessRequest,
    state: &RiskState,
    identity: &IdentityFacts,
) -> DecisionOutcome {
    let assessment = assess(policy, state, identity, Some(request), request.time);
    let attributes = condition_attributes(policy, request, state, identity, &assessment);
    let context = EvalContext::new(request.time);
    let mut errors = Vec::new();
    let mut decided = None;
    for rule in &policy.rules {
        match rule.when.program.eval_filter(&attributes, &context) {
            Ok(true) => {
                decided = Some(rule);
                break;
            }
            Ok(false) => {}
            Err(e) => errors.push((rule.name.to_string(), e.to_string())),
        }
    }
    let (verdict, scope, name, first) = match decided {
        Some(rule) => (
            rule.decision,
            rule.scope.clone(),
            rule.name.to_string(),
            Reason {
                code: rule.name.to_string(),
                message: rule.message.clone(),
                weight: 0,
            },
        ),
        None => (
            policy.default,
            policy.default_scope.clone(),
            "default".to_owned(),
            Reason {
                code: "default".to_owned(),
                message: format!("no rule of policy {} applies", policy.name),
                weight: 0,
            },
        ),
    };
    let mut reasons = Vec::with_capacity(assessment.factors.len() + 1);
    reasons.push(first);
    reasons.extend(assessment.factors.iter().cloned());
    DecisionOutcome {
        verdict,
        scope: if verdict == Verdict::Limit {
            scope
        } else {
            None
        },
        policy: name,
        assessment,
        reasons,
        errors,
    }
}

/// The verdict when the risk state cannot be read: `deny` for a high or critical resource,
/// the policy's `degraded` verdict (never `allow`) otherwise.
pub fn degraded_verdict(policy: Option<&AccessPolicy>, sensitivity: Sensitivity) -> Verdict {
    if sensitivity >= Sensitivity::High {
        return Verdict::Deny;
    }
    policy.map_or(Verdict::RequireMfa, |p| p.degraded)
}
