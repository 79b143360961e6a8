//! The risk state in Redis: one identity's signals, the mesh objects' lifecycle, and the index
//! from subject names to mesh objects.
//!
//! Keys, all under the configured prefix `P` (default `mesh:risk:`):
//! - `P s:<subject>` hash, per subject (lowercased, as callers name it): the last sighting
//!   (`lat`, `lon`, `at`, `cc`), the last impossible journey (`itk` km/h, `ita`), the last MFA
//!   (`mfa`), devices seen (`d:<id>`) and their posture (`p:<id>`, two digits managed and
//!   compliant), the level last contributed to the mesh (`lvl`). Expires `risk.state_ttl`
//!   after its last signal.
//! - `P f:<subject>` sorted set of failed sign-ins (member: signal id, score: time in ms),
//!   trimmed to the scoring's failure window: the sliding window.
//! - `P sig:<signal id>`: a signal already applied, for `ReportSignal`'s `duplicate`. Applying
//!   a signal twice changes nothing anyway (the failure is keyed by signal id, the sighting is
//!   replaced by itself).
//! - `P o:<mesh object>` hash: `type`, `lc` (lifecycle), `v` (version), `j` (joined, ms),
//!   `a` (the resolved attributes, the store's JSON form), copied from PostgreSQL.
//! - `P k:<attribute>:<value>`: the mesh object whose subject (or owner key) attribute holds
//!   the value, both lowercased.
//! - `P elevated` sorted set: subjects whose contributed level is above low, by when to look
//!   at them again (failures leave the window, journeys are forgotten).
//! - `P synced`: set once every mesh object was copied; without it (a new or flushed Redis)
//!   the service copies them all again.
//!
//! Times are milliseconds since the epoch. Redis is the hot state only: everything here is
//! rebuilt from PostgreSQL and the signals that follow.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh_engine::risk::{
    AccessPolicy, DeviceRecord, IdentityFacts, RiskLevel, RiskState, Sighting, SignInEffects,
};
use mesh_model::{AttributeName, Attributes, LifecycleState, ObjectType, Value};
use redis::aio::ConnectionManager;

/// How long a signal id is remembered for `duplicate`.
const SIGNAL_MEMORY: Duration = Duration::from_secs(7 * 86_400);

/// Redis with the service's key layout.
#[derive(Clone)]
pub struct RedisState {
    conn: ConnectionManager,
    prefix: String,
    state_ttl: Duration,
}

impl std::fmt::Debug for RedisState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisState")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A mesh object as the risk service keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectRecord {
    /// Canonical hyphenated UUID.
    pub id: String,
    /// Its type.
    pub object_type: String,
    /// Its lifecycle state.
    pub lifecycle: LifecycleState,
    /// Its version.
    pub version: i64,
    /// When the mesh first knew it.
    pub joined_at: DateTime<Utc>,
    /// Its resolved attributes.
    pub attributes: Attributes,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

fn lifecycle_from(s: &str) -> Option<LifecycleState> {
    [
        LifecycleState::Active,
        LifecycleState::Disabled,
        LifecycleState::Leaver,
        LifecycleState::Deleted,
    ]
    .into_iter()
    .find(|l| l.as_str() == s)
}

/// The text an index key holds for a value: scalars as text, lowercased; lists and nulls are
/// not indexed.
pub fn index_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_lowercase()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Bool(_) | Value::Decimal(_) | Value::Timestamp(_) => {
            Some(value.to_string().to_lowercase())
        }
        Value::Null | Value::List(_) => None,
    }
    .filter(|s| !s.is_empty())
}

/// What the decision read script returns: the subject's hash fields, the failed sign-ins in
/// the window, and the mesh object's id and fields when found.
type DecisionReply = (Vec<Option<String>>, u32, Option<Vec<Option<String>>>);

/// Lua that sets `object` to `{id, type, lc, v, j, a}` of the mesh object the first of
/// `KEYS[first..]` that exists points at (an index entry holds the object's id); the object's
/// key is `prefix .. id`.
macro_rules! find_object_lua {
    ($first:literal, $prefix:literal) => {
        concat!(
            "for i = ",
            $first,
            ", #KEYS do \
               local id = redis.call('GET', KEYS[i]) \
               if id then \
                 local f = redis.call('HMGET', ",
            $prefix,
            " .. id, 'type', 'lc', 'v', 'j', 'a') \
                 object = {id, f[1], f[2], f[3], f[4], f[5]} \
                 break \
               end \
             end"
        )
    };
}

impl RedisState {
    /// Wraps a connection with the key layout under `prefix`.
    pub fn new(conn: ConnectionManager, prefix: impl Into<String>, state_ttl: Duration) -> Self {
        Self {
            conn,
            prefix: prefix.into(),
            state_ttl,
        }
    }

    fn key(&self, kind: &str, rest: &str) -> String {
        format!("{}{kind}:{rest}", self.prefix)
    }

    fn subject_key(&self, subject: &str) -> String {
        self.key("s", &subject.to_lowercase())
    }

    fn failures_key(&self, subject: &str) -> String {
        self.key("f", &subject.to_lowercase())
    }

    fn object_key(&self, id: &str) -> String {
        self.key("o", id)
    }

    fn index_key(&self, attribute: &AttributeName, value: &str) -> String {
        format!("{}k:{}:{value}", self.prefix, attribute.key())
    }

    fn elevated_key(&self) -> String {
        format!("{}elevated", self.prefix)
    }

    fn synced_key(&self) -> String {
        format!("{}synced", self.prefix)
    }

    /// Answers PING.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<()>(&mut conn).await
    }

    /// Returns true when every mesh object was copied since Redis last lost its data.
    pub async fn is_synced(&self) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(self.synced_key())
            .query_async(&mut conn)
            .await
    }

    /// Marks the copy of every mesh object complete.
    pub async fn mark_synced(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("SET")
            .arg(self.synced_key())
            .arg(Utc::now().to_rfc3339())
            .query_async(&mut conn)
            .await
    }

    /// Returns true when the signal was applied before.
    pub async fn seen_signal(&self, signal_id: &str) -> redis::RedisResult<bool> {
        let mut conn = self.conn.clone();
        redis::cmd("EXISTS")
            .arg(self.key("sig", signal_id))
            .query_async(&mut conn)
            .await
    }

    /// Returns the last sighting of `subject`.
    pub async fn last_sighting(&self, subject: &str) -> redis::RedisResult<Option<Sighting>> {
        let mut conn = self.conn.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.subject_key(subject))
            .arg(&["lat", "lon", "at", "cc"])
            .query_async(&mut conn)
            .await?;
        Ok(sighting(&fields))
    }

    /// Applies a sign-in's effects and remembers the signal. Idempotent.
    pub async fn apply_sign_in(
        &self,
        policy: &AccessPolicy,
        signal_id: &str,
        subject: &str,
        device_id: Option<&str>,
        effects: &SignInEffects,
        observed_at: DateTime<Utc>,
    ) -> redis::RedisResult<()> {
        let state = self.subject_key(subject);
        let failures = self.failures_key(subject);
        let ttl = self.state_ttl.as_millis() as u64;
        let window = policy.scoring.failure_window.as_millis() as i64;
        let mut pipe = redis::pipe();
        if effects.failed {
            pipe.cmd("ZADD")
                .arg(&failures)
                .arg(ms(observed_at))
                .arg(signal_id)
                .ignore();
            pipe.cmd("ZREMRANGEBYSCORE")
                .arg(&failures)
                .arg("-inf")
                .arg(format!("({}", ms(Utc::now()) - window))
                .ignore();
            pipe.cmd("PEXPIRE").arg(&failures).arg(window).ignore();
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        if let Some(s) = &effects.sighting {
            fields.push(("lat".into(), s.latitude.to_string()));
            fields.push(("lon".into(), s.longitude.to_string()));
            fields.push(("at".into(), ms(s.at).to_string()));
            fields.push(("cc".into(), s.country.clone().unwrap_or_default()));
        }
        if let Some(kmh) = effects.impossible_travel_kmh {
            fields.push(("itk".into(), format!("{kmh:.0}")));
            fields.push(("ita".into(), ms(observed_at).to_string()));
        }
        if let Some(at) = effects.mfa_at {
            fields.push(("mfa".into(), ms(at).to_string()));
        }
        if !effects.failed
            && let Some(device) = device_id
        {
            fields.push((format!("d:{device}"), "1".into()));
        }
        if !fields.is_empty() {
            pipe.cmd("HSET").arg(&state).arg(fields).ignore();
            pipe.cmd("PEXPIRE").arg(&state).arg(ttl).ignore();
        }
        self.remember_and_run(pipe, signal_id).await
    }

    /// Runs `pipe` with, last, the marker that the signal was applied (for `duplicate`).
    async fn remember_and_run(
        &self,
        mut pipe: redis::Pipeline,
        signal_id: &str,
    ) -> redis::RedisResult<()> {
        pipe.cmd("SET")
            .arg(self.key("sig", signal_id))
            .arg(1)
            .arg("PX")
            .arg(SIGNAL_MEMORY.as_millis() as u64)
            .ignore();
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    /// Records a device's posture and remembers the signal. Idempotent.
    pub async fn apply_posture(
        &self,
        signal_id: &str,
        subject: &str,
        device_id: &str,
        managed: bool,
        compliant: bool,
    ) -> redis::RedisResult<()> {
        let state = self.subject_key(subject);
        let flags = format!("{}{}", u8::from(managed), u8::from(compliant));
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&state)
            .arg(format!("p:{device_id}"))
            .arg(flags)
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&state)
            .arg(self.state_ttl.as_millis() as u64)
            .ignore();
        self.remember_and_run(pipe, signal_id).await
    }

    /// Reads the risk state of `subject` at `now`, with the record of `device` when given.
    /// Returns it with the level last contributed to the mesh.
    pub async fn risk_state(
        &self,
        policy: &AccessPolicy,
        subject: &str,
        device: Option<&str>,
        now: DateTime<Utc>,
    ) -> redis::RedisResult<(RiskState, Option<RiskLevel>)> {
        let mut pipe = redis::pipe();
        pipe.cmd("HMGET")
            .arg(self.subject_key(subject))
            .arg(state_fields(device));
        pipe.cmd("ZCOUNT")
            .arg(self.failures_key(subject))
            .arg(failures_since(policy, now))
            .arg("+inf");
        let mut conn = self.conn.clone();
        let (values, failed): (Vec<Option<String>>, u32) = pipe.query_async(&mut conn).await?;
        Ok(decode_state(&values, failed, device.is_some()))
    }

    /// Reads what a decision needs in one round trip (a script): the risk state of `subject`
    /// at `now` with the record of `device`, and the mesh object `mesh_object` (or the one
    /// `subject` names). A service account's owner costs a second round trip.
    pub async fn decision_inputs(
        &self,
        policy: &AccessPolicy,
        subject: &str,
        device: Option<&str>,
        mesh_object: Option<&str>,
        now: DateTime<Utc>,
    ) -> redis::RedisResult<(RiskState, IdentityFacts)> {
        // KEYS: the subject's hash, its failures, then the object's hash (ARGV[3] = "id") or
        // the index entries to try in order (ARGV[3] = "index"). ARGV: the failure window's
        // start, the object key prefix, the mode, then the subject's hash fields.
        static READ: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(concat!(
                "local state = redis.call('HMGET', KEYS[1], unpack(ARGV, 4)) \
                 local failed = redis.call('ZCOUNT', KEYS[2], ARGV[1], '+inf') \
                 local object = false \
                 if ARGV[3] == 'id' then \
                   local f = redis.call('HMGET', KEYS[3], 'type', 'lc', 'v', 'j', 'a') \
                   object = {'', f[1], f[2], f[3], f[4], f[5]} \
                 else ",
                find_object_lua!("3", "ARGV[2]"),
                " end \
                 return {state, failed, object}",
            ))
        });
        let mut invocation = READ.prepare_invoke();
        invocation
            .key(self.subject_key(subject))
            .key(self.failures_key(subject));
        match mesh_object {
            Some(id) => {
                invocation.key(self.object_key(id));
            }
            None => {
                for key in self.index_keys(&policy.identity.subject_attributes, subject) {
                    invocation.key(key);
                }
            }
        }
        invocation
            .arg(failures_since(policy, now))
            .arg(format!("{}o:", self.prefix))
            .arg(if mesh_object.is_some() { "id" } else { "index" })
            .arg(state_fields(device));
        let mut conn = self.conn.clone();
        let (values, failed, object): DecisionReply = invocation.invoke_async(&mut conn).await?;
        let (state, _) = decode_state(&values, failed, device.is_some());
        let record = object.and_then(|fields| found_object(&fields, mesh_object));
        let facts = self.facts(policy, record).await?;
        Ok((state, facts))
    }

    /// Records the level contributed to the mesh for `subject`, and when to look at it again
    /// (`None`: it is low, nothing to look at).
    pub async fn set_level(
        &self,
        subject: &str,
        level: RiskLevel,
        recheck_at: Option<DateTime<Utc>>,
    ) -> redis::RedisResult<()> {
        let subject = subject.to_lowercase();
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(self.subject_key(&subject))
            .arg("lvl")
            .arg(level.as_str())
            .ignore();
        match recheck_at {
            Some(at) => pipe
                .cmd("ZADD")
                .arg(self.elevated_key())
                .arg(ms(at))
                .arg(&subject)
                .ignore(),
            None => pipe
                .cmd("ZREM")
                .arg(self.elevated_key())
                .arg(&subject)
                .ignore(),
        };
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await
    }

    /// Subjects whose elevated level is due to be looked at again at `now`.
    pub async fn due_elevated(&self, now: DateTime<Utc>) -> redis::RedisResult<Vec<String>> {
        let mut conn = self.conn.clone();
        redis::cmd("ZRANGEBYSCORE")
            .arg(self.elevated_key())
            .arg("-inf")
            .arg(ms(now))
            .arg("LIMIT")
            .arg(0)
            .arg(500)
            .query_async(&mut conn)
            .await
    }

    /// Reads a mesh object.
    pub async fn object(&self, id: &str) -> redis::RedisResult<Option<ObjectRecord>> {
        let mut conn = self.conn.clone();
        let fields: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(self.object_key(id))
            .arg(&["type", "lc", "v", "j", "a"])
            .query_async(&mut conn)
            .await?;
        Ok(decode_object(id, &fields))
    }

    /// Finds the mesh object the first of `attributes` holding `value` points at, and reads it,
    /// in one round trip (a script: the index lookup, then the object).
    pub async fn find_object(
        &self,
        attributes: &[AttributeName],
        value: &str,
    ) -> redis::RedisResult<Option<ObjectRecord>> {
        static FIND: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            redis::Script::new(concat!(
                "local object = false ",
                find_object_lua!("1", "ARGV[1]"),
                " return object"
            ))
        });
        let keys = self.index_keys(attributes, value);
        if keys.is_empty() {
            return Ok(None);
        }
        let mut invocation = FIND.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        invocation.arg(format!("{}o:", self.prefix));
        let mut conn = self.conn.clone();
        let found: Option<Vec<Option<String>>> = invocation.invoke_async(&mut conn).await?;
        Ok(found.and_then(|fields| found_object(&fields, None)))
    }

    /// The index entries that may point at the mesh object whose `attributes` hold `value`,
    /// in the order to try them.
    fn index_keys(&self, attributes: &[AttributeName], value: &str) -> Vec<String> {
        let value = value.trim().to_lowercase();
        if value.is_empty() {
            return Vec::new();
        }
        attributes
            .iter()
            .map(|attribute| self.index_key(attribute, &value))
            .collect()
    }

    /// Reads what the mesh knows of the identity `mesh_object` (or of the one `subject`
    /// names), and of its owner when it is a service account with one.
    pub async fn identity(
        &self,
        policy: &AccessPolicy,
        mesh_object: Option<&str>,
        subject: &str,
    ) -> redis::RedisResult<IdentityFacts> {
        let record = match mesh_object {
            Some(id) => self.object(id).await?,
            None => {
                self.find_object(&policy.identity.subject_attributes, subject)
                    .await?
            }
        };
        self.facts(policy, record).await
    }

    /// What the mesh knows of the identity `record`, reading its owner when it is a service
    /// account with one.
    async fn facts(
        &self,
        policy: &AccessPolicy,
        record: Option<ObjectRecord>,
    ) -> redis::RedisResult<IdentityFacts> {
        let settings = &policy.identity;
        let Some(record) = record else {
            return Ok(IdentityFacts::default());
        };
        let object_type = ObjectType::parse(&record.object_type).ok();
        let service_account = object_type
            .as_ref()
            .is_some_and(|t| settings.service_account_types.contains(t));
        let owner = match (&settings.owner_attribute, service_account) {
            (Some(attribute), true) => {
                match record.attributes.get(attribute).and_then(index_text) {
                    Some(value) => {
                        let keys = match &settings.owner_key_attribute {
                            Some(k) => std::slice::from_ref(k),
                            None => settings.subject_attributes.as_slice(),
                        };
                        let owner = self.find_object(keys, &value).await?;
                        Some(owner.map(|o| o.lifecycle))
                    }
                    None => None,
                }
            }
            _ => None,
        };
        Ok(IdentityFacts {
            mesh_object: Some(record.id),
            object_type,
            lifecycle: Some(record.lifecycle),
            joined_at: Some(record.joined_at),
            attributes: record.attributes,
            owner,
        })
    }

    /// Writes mesh objects and their index entries; `stale` are index entries (attribute,
    /// old value, mesh object) to remove when they still point at that object.
    pub async fn write_objects(
        &self,
        indexed: &[AttributeName],
        objects: &[ObjectRecord],
        stale: &[(AttributeName, String, String)],
    ) -> redis::RedisResult<()> {
        if objects.is_empty() && stale.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn.clone();
        if !stale.is_empty() {
            // Compare and delete: another object may hold the value by now.
            let script = redis::Script::new(
                "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                 return redis.call('DEL', KEYS[1]) else return 0 end",
            );
            for (attribute, value, id) in stale {
                script
                    .key(self.index_key(attribute, value))
                    .arg(id)
                    .invoke_async::<i64>(&mut conn)
                    .await?;
            }
        }
        let mut pipe = redis::pipe();
        for object in objects {
            let attributes = mesh_store::json::attributes_to_json(&object.attributes).to_string();
            pipe.cmd("HSET")
                .arg(self.object_key(&object.id))
                .arg("type")
                .arg(&object.object_type)
                .arg("lc")
                .arg(object.lifecycle.as_str())
                .arg("v")
                .arg(object.version)
                .arg("j")
                .arg(ms(object.joined_at))
                .arg("a")
                .arg(attributes)
                .ignore();
            for attribute in indexed {
                if let Some(value) = object.attributes.get(attribute).and_then(index_text) {
                    pipe.cmd("SET")
                        .arg(self.index_key(attribute, &value))
                        .arg(&object.id)
                        .ignore();
                }
            }
        }
        pipe.query_async::<()>(&mut conn).await
    }
}

/// The fields of a subject's hash that its risk state is read from, in [`decode_state`]'s
/// order.
fn state_fields(device: Option<&str>) -> Vec<String> {
    let mut fields: Vec<String> = ["lat", "lon", "at", "cc", "itk", "ita", "mfa", "lvl"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(d) = device {
        fields.push(format!("d:{d}"));
        fields.push(format!("p:{d}"));
    }
    fields
}

/// The ZCOUNT bound of the failed sign-ins still in the window at `now`.
fn failures_since(policy: &AccessPolicy, now: DateTime<Utc>) -> String {
    let window = policy.scoring.failure_window.as_millis() as i64;
    format!("({}", ms(now) - window)
}

fn parse<T: std::str::FromStr>(v: Option<&Option<String>>) -> Option<T> {
    v.and_then(|v| v.as_deref()).and_then(|s| s.parse().ok())
}

fn sighting(values: &[Option<String>]) -> Option<Sighting> {
    Some(Sighting {
        latitude: parse(values.first())?,
        longitude: parse(values.get(1))?,
        at: from_ms(parse(values.get(2))?)?,
        country: values.get(3).cloned().flatten().filter(|c| !c.is_empty()),
    })
}

fn decode_state(
    values: &[Option<String>],
    failed: u32,
    with_device: bool,
) -> (RiskState, Option<RiskLevel>) {
    let impossible_travel = match (parse::<f64>(values.get(4)), parse::<i64>(values.get(5))) {
        (Some(kmh), Some(at)) => from_ms(at).map(|at| (at, kmh)),
        _ => None,
    };
    let device = with_device.then(|| {
        let posture = values.get(9).cloned().flatten().unwrap_or_default();
        let mut flags = posture.chars().map(|c| c == '1');
        let (managed, compliant) = if posture.len() == 2 {
            (flags.next(), flags.next())
        } else {
            (None, None)
        };
        DeviceRecord {
            seen: values.get(8).cloned().flatten().is_some(),
            managed,
            compliant,
        }
    });
    let level = values
        .get(7)
        .cloned()
        .flatten()
        .and_then(|l| RiskLevel::parse(&l));
    (
        RiskState {
            failed_sign_ins: failed,
            last_sighting: sighting(values),
            impossible_travel,
            last_mfa_at: parse::<i64>(values.get(6)).and_then(from_ms),
            device,
        },
        level,
    )
}

/// Decodes what a lookup script returned: the object's id (`given`, when the caller named it)
/// and its fields.
fn found_object(fields: &[Option<String>], given: Option<&str>) -> Option<ObjectRecord> {
    let (id, rest) = fields.split_first()?;
    decode_object(given.or(id.as_deref())?, rest)
}

fn decode_object(id: &str, values: &[Option<String>]) -> Option<ObjectRecord> {
    let object_type = values.first().cloned().flatten()?;
    let lifecycle = lifecycle_from(values.get(1).and_then(|v| v.as_deref())?)?;
    let attributes = values
        .get(4)
        .and_then(|v| v.as_deref())
        .and_then(|a| serde_json::from_str(a).ok())
        .and_then(|json| mesh_store::json::attributes_from_json(&json).ok())
        .unwrap_or_default();
    Some(ObjectRecord {
        id: id.to_owned(),
        object_type,
        lifecycle,
        version: parse(values.get(2)).unwrap_or(0),
        joined_at: parse::<i64>(values.get(3))
            .and_then(from_ms)
            .unwrap_or_default(),
        attributes,
    })
}

/// Decodes a row of `mesh_objects` into a record.
pub fn record_from_row(
    id: uuid::Uuid,
    object_type: String,
    lifecycle: &str,
    version: i64,
    attributes: &serde_json::Value,
    created_at: DateTime<Utc>,
) -> ObjectRecord {
    ObjectRecord {
        id: id.hyphenated().to_string(),
        object_type,
        lifecycle: lifecycle_from(lifecycle).unwrap_or(LifecycleState::Active),
        version,
        joined_at: created_at,
        attributes: mesh_store::json::attributes_from_json(attributes).unwrap_or_default(),
    }
}
