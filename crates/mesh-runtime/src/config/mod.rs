//! Service configuration: defaults, then an optional TOML file, then `MESH_*` environment
//! variables, each layer overriding the one before.
//!
//! Environment variables nest with `__`: `MESH_NATS__URL` sets `nats.url`,
//! `MESH_BUS__BATCH_SIZE` sets `bus.batch_size`. Values are read as TOML scalars, so
//! `MESH_BUS__BATCH_SIZE=10` is an integer and `MESH_BUS__BACKOFF=["1s","5s"]` a list.
//! `MESH_CONFIG_FILE` is not a key: binaries read it to find the file.
//!
//! Invariants:
//! - Every section is `#[serde(deny_unknown_fields)]` and has defaults, so a misspelt key or a
//!   wrong type fails at start with a [`ConfigError`] naming the key and its origin (the file
//!   path or the environment variable), never silently falls back to a default.
//! - Credentials never reach a log: URLs are [`SecretUrl`], tokens are [`Secret`], and the
//!   `Debug` of every section redacts them.
//!
//! Durations accept `"30s"`, `"500ms"`, `"1m30s"` or a number of seconds (see
//! [`parse_duration`]). docs/configuration.md lists every key with its default and variable.
//!
//! # Adding a section
//! A later service adds its own section by adding a field to [`MeshConfig`] with a struct that
//! is `#[serde(default, deny_unknown_fields)]`, implements `Default`, and (if it has cross-field
//! rules) contributes to [`MeshConfig::check`]; then it documents the keys in
//! docs/configuration.md. Binaries with a different top-level shape can reuse
//! [`figment()`](fn@figment) and [`extract`] with their own type.

mod connector_agent;
mod duration;
mod error;
mod secret;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use connector_agent::{ConnectorAgentConfig, HrFeedConfig, HrFormat, ScimEndpointConfig};
pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, ConfigProblem, ProblemKind, env_var_for};
pub use secret::{REDACTED, Secret, SecretUrl, redacted_url};

/// Prefix of the environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "MESH_";

/// Environment variable naming the configuration file; it is not itself a configuration key.
pub const ENV_CONFIG_FILE: &str = "MESH_CONFIG_FILE";

/// The configuration of a `meshd` process: shared sections, one per adapter or concern.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MeshConfig {
    /// NATS JetStream connection.
    pub nats: NatsConfig,
    /// PostgreSQL connection pool.
    pub postgres: PostgresConfig,
    /// Redis connection (risk service hot state).
    pub redis: RedisConfig,
    /// Admin HTTP server (`/healthz`, `/readyz`, `/metrics`).
    pub admin: AdminConfig,
    /// Logs and traces.
    pub telemetry: TelemetryConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Consumer batching and redelivery defaults shared by every stage.
    pub bus: BusConfig,
    /// The connector agent's SCIM endpoints and HR feeds.
    pub connector_agent: ConnectorAgentConfig,
    /// Where the pipeline services read connectors and rules.
    pub rules: RulesConfig,
    /// The projection service's export retries, grace timer and mass-deletion guard.
    pub projection: ProjectionConfig,
    /// The risk service's gRPC listener, Redis keys, audit sampling and tokens.
    pub risk: RiskConfig,
    /// The query service's gRPC listener (MeshQuery, RuleAdmin) and tokens.
    pub query: QueryConfig,
}

/// The query service (docs/query.md): where MeshQuery and RuleAdmin listen and who may call
/// them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct QueryConfig {
    /// gRPC listen address (MeshQuery, RuleAdmin, health, reflection). Default
    /// `0.0.0.0:50051`.
    pub listen: SocketAddr,
    /// SHA-256 (hex) of the bearer tokens callers must present. Empty: no authentication (for
    /// a mesh reachable only inside its network policy); the service logs a warning.
    pub token_sha256: Vec<String>,
    /// Page size when a request asks for none. Default 100.
    pub default_page_size: u32,
    /// Largest page a request may ask for. Default 1000.
    pub max_page_size: u32,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50051)),
            token_sha256: Vec::new(),
            default_page_size: 100,
            max_page_size: 1000,
        }
    }
}

/// The risk service (docs/risk.md): where AccessDecision listens, how it uses Redis, which
/// allows it audits, and who may call it. Its policy is the rule set's `AccessPolicy`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RiskConfig {
    /// gRPC listen address (AccessDecision, health, reflection). Default `0.0.0.0:50052`.
    pub listen: SocketAddr,
    /// Prefix of every Redis key the service writes. Default `mesh:risk:`.
    pub key_prefix: String,
    /// Longest wait for Redis in one decision before the safe default applies. Default 50ms.
    #[serde(deserialize_with = "duration::deserialize")]
    pub redis_timeout: Duration,
    /// Share of allow decisions written to the audit log, 0 to 1; denies and step-ups are
    /// always written. Default 0.01.
    pub audit_allow_sample: f64,
    /// SHA-256 (hex) of the bearer tokens callers must present. Empty: no authentication (for
    /// a mesh reachable only inside its network policy); the service logs a warning.
    pub token_sha256: Vec<String>,
    /// The connector the risk level is contributed from (`RiskLevel`), or empty to contribute
    /// nothing. Default `risk`.
    pub feedback_connector: String,
    /// How long an identity's risk state lives after its last signal. Default 30d.
    #[serde(deserialize_with = "duration::deserialize")]
    pub state_ttl: Duration,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 50052)),
            key_prefix: "mesh:risk:".to_owned(),
            redis_timeout: Duration::from_millis(50),
            audit_allow_sample: 0.01,
            token_sha256: Vec::new(),
            feedback_connector: "risk".to_owned(),
            state_ttl: Duration::from_secs(30 * 86_400),
        }
    }
}

/// The projection service: how it retries exports, how often its grace timer looks for due
/// deletions, and the default mass-deletion guard of every target (a target's Connector
/// document may set its own with `spec.massDeletionGuard: {threshold, window}`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ProjectionConfig {
    /// Sends of one export command before it fails for good and goes to MESH_DLQ. Default 10.
    pub max_attempts: u32,
    /// Wait before the first resend after a retryable failure; each next wait doubles.
    /// Default 1s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub retry_initial: Duration,
    /// Longest wait between two sends of one command. Default 5m.
    #[serde(deserialize_with = "duration::deserialize")]
    pub retry_max: Duration,
    /// How often the grace timer looks for disabled objects whose deletion is due, and the
    /// dispatcher for retries that came due. Default 5s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub timer_interval: Duration,
    /// Deprovisions (disable, delete) of one target within `guard_window` above which that
    /// target's deprovisions are held until `meshctl exports approve`. Default 100.
    pub guard_threshold: u32,
    /// The guard's sliding window. Default 10m.
    #[serde(deserialize_with = "duration::deserialize")]
    pub guard_window: Duration,
}

impl Default for ProjectionConfig {
    fn default() -> Self {
        Self {
            max_attempts: 10,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            timer_interval: Duration::from_secs(5),
            guard_threshold: 100,
            guard_window: Duration::from_secs(600),
        }
    }
}

/// Where the pipeline services (correlation, flow) read their connectors and rules.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RulesConfig {
    /// A YAML file or a directory of them (read recursively). Default
    /// `/etc/identity-mesh/rules`, where the chart and the compose file mount them.
    pub path: PathBuf,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("/etc/identity-mesh/rules"),
        }
    }
}

/// NATS connection settings. At most one of `credentials_file`, `nkey_seed_file`, `token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NatsConfig {
    /// Server URL(s); `nats://`, `tls://`, `ws://` or `wss://`. Default `nats://127.0.0.1:4222`.
    pub url: SecretUrl,
    /// A `.creds` file (JWT + nkey seed), for decentralised auth.
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// A shared token.
    pub token: Option<Secret<String>>,
    /// How long to wait for the first connection. Default 5s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub connect_timeout: Duration,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: SecretUrl::new("nats://127.0.0.1:4222"),
            credentials_file: None,
            nkey_seed_file: None,
            token: None,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// PostgreSQL pool settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct PostgresConfig {
    /// Connection URL. Default `postgres://postgres@127.0.0.1:5432/identitymesh`.
    pub url: SecretUrl,
    /// Pool size. Default 10.
    pub max_connections: u32,
    /// Connections the pool keeps open while idle, at most `max_connections`. Default 0:
    /// connections open when needed. Opening one is a TLS handshake and an authentication,
    /// so a service that gets bursts of requests after quiet spells (the connector agent's
    /// SCIM server) keeps enough open for a burst.
    pub min_connections: u32,
    /// TLS mode; when unset, the URL's `sslmode` (or the driver's default, `prefer`) applies.
    pub tls_mode: Option<PgTlsMode>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            url: SecretUrl::new("postgres://postgres@127.0.0.1:5432/identitymesh"),
            max_connections: 10,
            min_connections: 0,
            tls_mode: None,
        }
    }
}

/// PostgreSQL `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PgTlsMode {
    /// No TLS.
    Disable,
    /// TLS only if the server insists.
    Allow,
    /// TLS if the server supports it.
    Prefer,
    /// TLS, without certificate verification.
    Require,
    /// TLS, verifying the certificate chain.
    VerifyCa,
    /// TLS, verifying the chain and the host name.
    VerifyFull,
}

/// Redis settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct RedisConfig {
    /// Connection URL (`redis://`, `rediss://`). Default `redis://127.0.0.1:6379`.
    pub url: SecretUrl,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: SecretUrl::new("redis://127.0.0.1:6379"),
        }
    }
}

/// Admin HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct AdminConfig {
    /// Listen address. Default `0.0.0.0:9464`.
    pub listen: SocketAddr,
    /// Time allowed to each readiness check before it counts as failed. Default 2s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub readiness_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9464)),
            readiness_timeout: Duration::from_secs(2),
        }
    }
}

/// Log output settings; trace export is driven by the standard `OTEL_*` variables.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct TelemetryConfig {
    /// `pretty` (human-readable lines) or `json` (one object per line). Default `pretty`.
    pub log_format: LogFormat,
    /// An `EnvFilter` directive (`info`, `mesh_bus=debug,info`). `RUST_LOG` overrides it.
    /// Default `info`.
    pub log_filter: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Pretty,
            log_filter: "info".to_owned(),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable single lines, coloured on a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Graceful shutdown settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct ShutdownConfig {
    /// Time given to in-flight work after SIGTERM/SIGINT before it is aborted. Default 30s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(30),
        }
    }
}

/// Consumer batching and redelivery defaults.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BusConfig {
    /// Most messages handed to a handler at once. Default 256.
    pub batch_size: usize,
    /// How long a batch may wait for more messages after its first one arrived, in
    /// milliseconds. Default 5: low latency at low rates, full batches under load (whatever is
    /// already buffered is taken without waiting).
    pub batch_wait_ms: u64,
    /// Deliveries of one message before it goes to the dead-letter stream. Default 5.
    pub max_deliver: u32,
    /// Time JetStream waits for an ack before redelivering. Default 30s.
    #[serde(deserialize_with = "duration::deserialize")]
    pub ack_wait: Duration,
    /// Redelivery delays after each failed delivery; must be shorter than `max_deliver`.
    /// Default `["1s", "5s", "30s"]`.
    #[serde(deserialize_with = "duration::list::deserialize")]
    pub backoff: Vec<Duration>,
    /// Consume loops per stage consumer in this process. Default 1 (strict stream order
    /// within the process); more overlap the round trips of concurrent batches, with order
    /// kept per object by row locks and sequence checks (docs/pipeline.md).
    pub workers: usize,
}

impl BusConfig {
    /// Returns `batch_wait_ms` as a [`Duration`].
    pub fn batch_wait(&self) -> Duration {
        Duration::from_millis(self.batch_wait_ms)
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            batch_size: 256,
            batch_wait_ms: 5,
            max_deliver: 5,
            ack_wait: Duration::from_secs(30),
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            workers: 1,
        }
    }
}

/// Builds the layered sources: the TOML file (if any, which must exist), then `MESH_*`
/// variables. Defaults come from the types themselves.
pub fn figment(file: Option<&Path>) -> Result<Figment, ConfigError> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile {
                path: path.to_owned(),
            });
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    Ok(figment.merge(env_provider()))
}

/// The `MESH_*` environment provider: `__` separates nesting levels.
fn env_provider() -> Env {
    let config_file_key = &ENV_CONFIG_FILE[ENV_PREFIX.len()..];
    Env::prefixed(ENV_PREFIX)
        .ignore(&[config_file_key])
        .split("__")
}

/// Extracts any configuration type from `figment`, mapping errors to [`ConfigError`].
pub fn extract<T: DeserializeOwned>(figment: &Figment) -> Result<T, ConfigError> {
    figment.extract().map_err(ConfigError::from_figment)
}

impl MeshConfig {
    /// Loads defaults, then `file` (if given), then `MESH_*` variables, and checks the result.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_figment(&figment(file)?)
    }

    /// Extracts and checks the configuration from prepared sources (tests merge strings here).
    pub fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let config: Self = extract(figment)?;
        let problems = config.check();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::from_checks(figment, problems))
        }
    }

    /// Returns the cross-field problems as `(key, message)` pairs; empty when the config is valid.
    pub fn check(&self) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        let mut require = |ok: bool, key: &str, message: String| {
            if !ok {
                problems.push((key.to_owned(), message));
            }
        };
        let scheme_in = |url: &SecretUrl, schemes: &[&str]| {
            url.scheme()
                .is_some_and(|s| schemes.iter().any(|ok| ok.eq_ignore_ascii_case(s)))
        };

        let nats_schemes = ["nats", "tls", "ws", "wss"];
        require(
            self.nats
                .url
                .expose()
                .split(',')
                .all(|u| scheme_in(&SecretUrl::new(u.trim()), &nats_schemes)),
            "nats.url",
            format!(
                "expected a URL with scheme {}, found {}",
                nats_schemes.join("|"),
                self.nats.url
            ),
        );
        let auth_methods = [
            self.nats.credentials_file.is_some(),
            self.nats.nkey_seed_file.is_some(),
            self.nats.token.is_some(),
        ];
        require(
            auth_methods.iter().filter(|set| **set).count() <= 1,
            "nats",
            "set at most one of credentials_file, nkey_seed_file, token".to_owned(),
        );
        require(
            scheme_in(&self.postgres.url, &["postgres", "postgresql"]),
            "postgres.url",
            format!("expected a postgres:// URL, found {}", self.postgres.url),
        );
        require(
            self.postgres.max_connections >= 1,
            "postgres.max_connections",
            "must be at least 1".to_owned(),
        );
        require(
            self.postgres.min_connections <= self.postgres.max_connections,
            "postgres.min_connections",
            format!(
                "must be at most postgres.max_connections ({})",
                self.postgres.max_connections
            ),
        );
        require(
            scheme_in(&self.redis.url, &["redis", "rediss", "redis+unix", "unix"]),
            "redis.url",
            format!(
                "expected a redis:// or rediss:// URL, found {}",
                self.redis.url
            ),
        );
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_filter) {
            require(
                false,
                "telemetry.log_filter",
                format!("invalid filter: {e}"),
            );
        }
        require(
            self.bus.batch_size >= 1,
            "bus.batch_size",
            "must be at least 1".to_owned(),
        );
        require(
            self.bus.max_deliver >= 1,
            "bus.max_deliver",
            "must be at least 1".to_owned(),
        );
        require(
            self.projection.max_attempts >= 1,
            "projection.max_attempts",
            "must be at least 1".to_owned(),
        );
        require(
            self.projection.retry_initial <= self.projection.retry_max,
            "projection.retry_initial",
            "must not be longer than projection.retry_max".to_owned(),
        );
        require(
            !self.projection.timer_interval.is_zero(),
            "projection.timer_interval",
            "must be longer than zero".to_owned(),
        );
        require(
            self.projection.guard_threshold >= 1,
            "projection.guard_threshold",
            "must be at least 1".to_owned(),
        );
        require(
            self.bus.workers >= 1,
            "bus.workers",
            "must be at least 1".to_owned(),
        );
        // JetStream rejects a consumer whose backoff list is not shorter than max_deliver.
        require(
            self.bus.backoff.len() < self.bus.max_deliver as usize,
            "bus.backoff",
            format!(
                "has {} entries; JetStream needs fewer than bus.max_deliver ({})",
                self.bus.backoff.len(),
                self.bus.max_deliver
            ),
        );
        self.connector_agent.check(&mut problems);
        problems
    }
}

#[cfg(test)]
mod tests;
