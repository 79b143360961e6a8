//! Targets: the systems export commands are applied to, one [`Target`] per target connector.
//!
//! A target applies one command and says how it ended ([`Outcome`]); it never returns an
//! error, because every failure is an answer the projection service acts on (retry or give
//! up). Each operation is idempotent by itself, because a crash between applying a command and
//! committing its result re-applies it on redelivery:
//!
//! - create adopts an object that already exists under the same natural key (SCIM
//!   `userName`, the table's key column, the entry's DN) instead of creating a second one;
//! - update sets the carried values (replace, never add), so setting them twice is setting
//!   them once;
//! - disable and enable set a state;
//! - delete of an object that is not there is already applied.
//!
//! [`Targets::from_rules`] builds a target for every connector a projection rule exports to,
//! from the connector's settings (docs/provisioning.md lists them). Invalid settings stop the
//! agent, like invalid rules; a secret missing from the environment only makes that target
//! unavailable (its commands are answered as retryable failures), so that one target's
//! deployment mistake does not stop the others.

pub mod ldap;
pub mod postgres;
pub mod scim;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use mesh_engine::RuleSet;
use mesh_engine::rules::{Connector, ConnectorKind};
use mesh_model::{ConnectorId, ExportCommand, ExportStatus};
use tokio::sync::Semaphore;

use crate::settings::{EnvLookup, Settings, SettingsError};

/// How applying one command to a target ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target now holds the change.
    Applied {
        /// The object's id in the target after the command (none after a delete of an object
        /// whose id was never known).
        target_object_id: Option<String>,
    },
    /// The target already held the change: an adopted object, a delete of a missing object, a
    /// state that was already set.
    AlreadyApplied {
        /// The object's id in the target, when known.
        target_object_id: Option<String>,
    },
    /// It failed in a way that may pass later (the target is down, overloaded, timed out).
    Retryable(String),
    /// It failed in a way that retrying will not fix (the target refused the data).
    Permanent(String),
}

impl Outcome {
    /// Returns the wire status.
    pub fn status(&self) -> ExportStatus {
        match self {
            Self::Applied { .. } => ExportStatus::Applied,
            Self::AlreadyApplied { .. } => ExportStatus::AlreadyApplied,
            Self::Retryable(_) => ExportStatus::RetryableFailure,
            Self::Permanent(_) => ExportStatus::PermanentFailure,
        }
    }

    /// Returns the target object id of a success.
    pub fn target_object_id(&self) -> Option<&str> {
        match self {
            Self::Applied { target_object_id } | Self::AlreadyApplied { target_object_id } => {
                target_object_id.as_deref()
            }
            Self::Retryable(_) | Self::Permanent(_) => None,
        }
    }

    /// Returns what the target said, for a failure; empty for a success.
    pub fn message(&self) -> &str {
        match self {
            Self::Applied { .. } | Self::AlreadyApplied { .. } => "",
            Self::Retryable(message) | Self::Permanent(message) => message,
        }
    }

    /// Returns true for [`Outcome::Applied`] and [`Outcome::AlreadyApplied`].
    pub fn succeeded(&self) -> bool {
        matches!(self, Self::Applied { .. } | Self::AlreadyApplied { .. })
    }

    pub(crate) fn applied(id: impl Into<String>) -> Self {
        Self::Applied {
            target_object_id: Some(id.into()),
        }
    }

    pub(crate) fn already(id: impl Into<String>) -> Self {
        Self::AlreadyApplied {
            target_object_id: Some(id.into()),
        }
    }
}

/// One command as a target sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The command.
    pub command: &'a ExportCommand,
    /// The object's id in the target: the command's own, else the one the agent recorded for
    /// this mesh object and target.
    pub target_object_id: Option<&'a str>,
}

impl Request<'_> {
    /// The container to use: the command's, else the connector's `container` setting.
    pub fn container<'b>(&'b self, default: Option<&'b str>) -> Option<&'b str> {
        let own = self.command.container.trim();
        if own.is_empty() { default } else { Some(own) }
    }
}

/// A system export commands are applied to.
pub trait Target: Send + Sync + fmt::Debug {
    /// Applies one command. Never fails: every failure is an [`Outcome`].
    fn apply<'a>(&'a self, request: Request<'a>) -> BoxFuture<'a, Outcome>;
}

/// A target with the limits the agent applies around it.
#[derive(Debug, Clone)]
pub struct TargetEntry {
    /// The target.
    pub target: Arc<dyn Target>,
    /// Commands in flight to it at once.
    pub concurrency: Arc<Semaphore>,
    /// How long one command may take before it is a retryable failure.
    pub timeout: Duration,
}

/// Settings every target reads.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    /// `timeout`: one request (connect included); default 10 s.
    pub timeout: Duration,
    /// `concurrency`: commands in flight to the target at once; default 8.
    pub concurrency: u32,
    /// `container`: the container of commands that carry none.
    pub container: Option<String>,
}

/// The default of `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default of `concurrency`.
pub const DEFAULT_CONCURRENCY: u32 = 8;

impl Common {
    fn read(settings: &mut Settings<'_>) -> Result<Self, SettingsError> {
        // Read by the projection service (docs/projection.md).
        settings.belongs_elsewhere("massDeletionGuard");
        Ok(Self {
            timeout: settings.duration("timeout")?.unwrap_or(DEFAULT_TIMEOUT),
            concurrency: settings
                .positive("concurrency")?
                .unwrap_or(DEFAULT_CONCURRENCY),
            container: settings.string("container")?,
        })
    }
}

/// The targets of a rule set, by connector.
#[derive(Debug, Clone, Default)]
pub struct Targets {
    by_connector: BTreeMap<ConnectorId, TargetEntry>,
}

impl Targets {
    /// No targets.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a target for every connector a projection rule exports to, reading secrets from
    /// the process environment. Connectors no projection rule names are not built (an `ldap`
    /// connector that is only imported needs no write credentials).
    pub fn from_rules(rules: &RuleSet) -> Result<Self, SettingsError> {
        Self::from_rules_with_env(rules, &|name| std::env::var(name).ok())
    }

    /// Like [`Targets::from_rules`], reading environment variables through `env`.
    pub fn from_rules_with_env(rules: &RuleSet, env: EnvLookup<'_>) -> Result<Self, SettingsError> {
        let mut targets = Self::new();
        for rule in rules.projection_rules() {
            if targets.by_connector.contains_key(&rule.target) {
                continue;
            }
            // The loader checks that a projection rule names a connector that exports.
            let Some(connector) = rules.connector(&rule.target) else {
                continue;
            };
            let entry = match build(connector, env) {
                Ok(entry) => entry,
                // The rules are right and the environment is not: the other targets work,
                // and this one's commands wait (retryable) until a restart with the secret.
                Err(error) if error.missing_variable.is_some() => {
                    tracing::error!(
                        connector = %connector.name,
                        error = %error,
                        "target unavailable: its commands are answered as retryable failures"
                    );
                    TargetEntry {
                        target: Arc::new(Unavailable {
                            reason: error.to_string(),
                        }),
                        concurrency: Arc::new(Semaphore::new(1)),
                        timeout: DEFAULT_TIMEOUT,
                    }
                }
                Err(error) => return Err(error),
            };
            targets.by_connector.insert(connector.name.clone(), entry);
        }
        Ok(targets)
    }

    /// Adds (or replaces) the target of `connector`.
    pub fn insert(&mut self, connector: ConnectorId, entry: TargetEntry) {
        self.by_connector.insert(connector, entry);
    }

    /// Returns the target of `connector`.
    pub fn get(&self, connector: &ConnectorId) -> Option<&TargetEntry> {
        self.by_connector.get(connector)
    }

    /// Iterates over the connectors with a target, in name order.
    pub fn connectors(&self) -> impl Iterator<Item = &ConnectorId> {
        self.by_connector.keys()
    }
}

/// Builds the target of one connector from its settings.
pub fn build(connector: &Connector, env: EnvLookup<'_>) -> Result<TargetEntry, SettingsError> {
    let mut settings = Settings::new(connector, env);
    let common = Common::read(&mut settings)?;
    let target: Arc<dyn Target> = match connector.kind {
        ConnectorKind::ScimTarget => {
            Arc::new(scim::ScimTarget::from_settings(&mut settings, &common)?)
        }
        ConnectorKind::PostgresTarget => Arc::new(postgres::PostgresTarget::from_settings(
            &mut settings,
            &common,
        )?),
        ConnectorKind::LdapTarget | ConnectorKind::Ldap => {
            Arc::new(ldap::LdapTarget::from_settings(&mut settings, &common)?)
        }
        ConnectorKind::HrCsv
        | ConnectorKind::HrJson
        | ConnectorKind::ScimInbound
        | ConnectorKind::Risk => {
            return Err(settings.error(format!(
                "a {} connector is not a target the provisioning agent can write to",
                connector.kind.as_str()
            )));
        }
    };
    // An `ldap` connector is imported too: the importer's settings share its spec.
    if connector.kind != ConnectorKind::Ldap {
        settings.finish()?;
    }
    Ok(TargetEntry {
        target,
        concurrency: Arc::new(Semaphore::new(common.concurrency as usize)),
        timeout: common.timeout,
    })
}

/// The answer to a command about an object the agent has not seen created: retryable, because
/// its create may still be in flight (answering a delete "already applied" could let that
/// create land afterwards).
pub(crate) fn not_known_yet() -> Outcome {
    Outcome::Retryable(
        "the agent knows no object of this mesh object in the target (its create may still be \
         in flight, or failed)"
            .to_owned(),
    )
}

/// A target whose settings name a secret the environment lacks.
#[derive(Debug)]
struct Unavailable {
    reason: String,
}

impl Target for Unavailable {
    fn apply<'a>(&'a self, _request: Request<'a>) -> BoxFuture<'a, Outcome> {
        Box::pin(std::future::ready(Outcome::Retryable(format!(
            "the target is unavailable: {}",
            self.reason
        ))))
    }
}

/// Renders a value as text for targets that store strings (LDAP values, SCIM filters, keys).
pub(crate) fn text_of(value: &mesh_model::Value) -> Option<String> {
    use mesh_model::Value;
    match value {
        Value::Null | Value::List(_) => None,
        Value::Bool(b) => Some(b.to_string()),
        Value::Integer(i) => Some(i.to_string()),
        Value::Decimal(d) => Some(d.to_string()),
        Value::String(s) => Some(s.as_str().to_owned()),
        Value::Timestamp(t) => Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
    }
}
