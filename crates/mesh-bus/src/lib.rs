//! NATS JetStream adapter of Identity Mesh.
//!
//! - [`topology`]: the streams and durable pull consumers of DESIGN.md §2 as one declarative
//!   table, created or updated idempotently at start.
//! - [`publish`]: publishing with the mesh headers: a deterministic `Nats-Msg-Id` (so a
//!   redelivered input republishes the same id and JetStream drops the duplicate), W3C
//!   `traceparent`/`tracestate`, and `Mesh-Schema`.
//! - [`servers`]: the server list of `nats.url`, split on commas, its credentials sent as
//!   authentication options rather than inside the addresses the client logs.
//! - [`consume`]: the micro-batch consume loop every stage runs: up to N messages or T
//!   milliseconds, the handler gets the batch, acks follow only its success, transient failures
//!   nak with backoff, and a message that keeps failing goes to `MESH_DLQ` without blocking the
//!   messages behind it.
//!
//! Delivery is at least once; exactly-once effects come from the handler's inbox (see
//! `mesh_store::inbox`).

pub mod consume;
pub mod headers;
pub mod metrics;
pub mod publish;
pub mod servers;
pub mod topology;

use std::path::PathBuf;
use std::time::Duration;

pub use consume::{BatchHandler, ConsumerSettings, Delivery, HandlerError, run_consumer};
pub use publish::{Outgoing, Publisher};
pub use topology::{ConsumerSpec, StreamSpec, Topology};

/// What went wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The client could not be set up (bad URL, unreadable credentials).
    #[error("cannot connect to NATS")]
    Connect(#[source] async_nats::ConnectError),
    /// `nats.url` is not a usable server list.
    #[error("invalid NATS server list")]
    Servers(#[from] servers::ServersError),
    /// Credentials or an nkey seed could not be read.
    #[error("cannot read NATS credentials from {path}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stream could not be created or updated.
    #[error("cannot create or update stream {stream}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// The server's answer.
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
    /// A consumer could not be created, updated or opened.
    #[error("cannot create or open consumer {consumer} on stream {stream}")]
    Consumer {
        /// The stream's name.
        stream: String,
        /// The consumer's durable name.
        consumer: String,
        /// The server's answer.
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    /// A publish was not accepted by the stream.
    #[error("publish to {subject} was not acknowledged")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
    /// The consumer's message stream could not be opened.
    #[error("cannot pull from consumer {consumer}")]
    Pull {
        /// The consumer's durable name.
        consumer: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::consumer::StreamError,
    },
    /// JetStream did not answer an account query.
    #[error("JetStream does not answer")]
    Unavailable(#[source] async_nats::jetstream::context::AccountError),
    /// JetStream did not answer within the deadline.
    #[error("JetStream did not answer within {0:?}")]
    Timeout(Duration),
    /// A core NATS publish or subscription failed.
    #[error("core NATS {what} on {subject} failed: {reason}")]
    Core {
        /// `publish` or `subscribe`.
        what: &'static str,
        /// The subject.
        subject: &'static str,
        /// The client's error, in words.
        reason: String,
    },
}

/// Core NATS subject on which the query service announces a newly applied rule version (the
/// payload is the version in decimal). It is a hint: services also poll the database, so a
/// missed announcement delays the switch, never loses it.
pub const RULES_CHANGED_SUBJECT: &str = "mesh.rules.changed";

/// Announcements of new rule versions ([`Bus::watch_rule_versions`]).
#[derive(Debug)]
pub struct RuleVersionWatch {
    subscriber: async_nats::Subscriber,
}

impl RuleVersionWatch {
    /// Waits for the next announcement; `None` once the subscription ended. A payload that is
    /// not a number still wakes the caller (as version 0), who then reads the database.
    pub async fn next(&mut self) -> Option<u64> {
        use futures::StreamExt as _;
        let message = self.subscriber.next().await?;
        Some(
            std::str::from_utf8(&message.payload)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        )
    }
}

/// How to reach NATS. `Debug` shows neither the token nor a password in `url`.
#[derive(Clone)]
pub struct ConnectOptions {
    /// The server URL(s), comma-separated: `nats://127.0.0.1:4222`.
    pub url: String,
    /// A `.creds` file (user JWT and nkey seed), if the server requires one.
    pub credentials_file: Option<PathBuf>,
    /// A file holding an nkey seed, if the server authenticates by nkey.
    pub nkey_seed_file: Option<PathBuf>,
    /// A token, if the server authenticates by token.
    pub token: Option<String>,
    /// The client name shown by the server (`meshd-correlation`).
    pub name: String,
    /// How long a JetStream API request may take.
    pub request_timeout: Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &mesh_runtime::config::redacted_url(&self.url))
            .field("credentials_file", &self.credentials_file)
            .field("nkey_seed_file", &self.nkey_seed_file)
            .field(
                "token",
                &self.token.as_ref().map(|_| mesh_runtime::config::REDACTED),
            )
            .field("name", &self.name)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".to_owned(),
            credentials_file: None,
            nkey_seed_file: None,
            token: None,
            name: "meshd".to_owned(),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A connection to NATS with its JetStream context.
#[derive(Debug, Clone)]
pub struct Bus {
    client: async_nats::Client,
    jetstream: async_nats::jetstream::Context,
    metrics: metrics::BusMetrics,
}

impl Bus {
    /// Connects to NATS. The client reconnects forever in the background, and the first
    /// connection is retried too, so a service can start (and report not-ready) while NATS is
    /// down.
    ///
    /// `options.url` may list several servers, comma-separated, and carry credentials in its
    /// user-info; they are sent as authentication options and kept out of the addresses the
    /// client logs ([`servers`]).
    pub async fn connect(options: &ConnectOptions) -> Result<Self, BusError> {
        let servers = servers::parse(&options.url)?;
        let mut connect = async_nats::ConnectOptions::new()
            .name(&options.name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .request_timeout(Some(options.request_timeout));
        if let Some(path) = &options.credentials_file {
            connect =
                connect
                    .credentials_file(path)
                    .await
                    .map_err(|source| BusError::Credentials {
                        path: path.clone(),
                        source,
                    })?;
        }
        if let Some(path) = &options.nkey_seed_file {
            let seed = std::fs::read_to_string(path).map_err(|source| BusError::Credentials {
                path: path.clone(),
                source,
            })?;
            connect = connect.nkey(seed.trim().to_owned());
        }
        match servers.auth {
            Some(servers::UrlAuth::UserPassword(user, password)) => {
                connect = connect.user_and_password(user, password);
            }
            Some(servers::UrlAuth::Token(token)) => connect = connect.token(token),
            None => {}
        }
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        let client = connect
            .connect(servers.urls)
            .await
            .map_err(BusError::Connect)?;
        Ok(Self::from_client(client))
    }

    /// Wraps an existing client.
    pub fn from_client(client: async_nats::Client) -> Self {
        let jetstream = async_nats::jetstream::new(client.clone());
        Self {
            client,
            jetstream,
            metrics: metrics::BusMetrics::default(),
        }
    }

    /// Records this bus's metrics (consumed, acked, nacked, dead-lettered, lag, batch sizes and
    /// durations, published) in `registry`.
    pub fn with_metrics(mut self, registry: &mesh_runtime::metrics::MetricsRegistry) -> Self {
        self.metrics = metrics::BusMetrics::register(registry);
        self
    }

    /// Returns the metric handles.
    pub fn metrics(&self) -> &metrics::BusMetrics {
        &self.metrics
    }

    /// Returns the core NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Returns the JetStream context.
    pub fn jetstream(&self) -> &async_nats::jetstream::Context {
        &self.jetstream
    }

    /// Announces that rule version `version` is now in force ([`RULES_CHANGED_SUBJECT`]).
    pub async fn announce_rule_version(&self, version: u64) -> Result<(), BusError> {
        let core = |e: &dyn std::fmt::Display| BusError::Core {
            what: "publish",
            subject: RULES_CHANGED_SUBJECT,
            reason: e.to_string(),
        };
        self.client
            .publish(RULES_CHANGED_SUBJECT, version.to_string().into())
            .await
            .map_err(|e| core(&e))?;
        self.client.flush().await.map_err(|e| core(&e))
    }

    /// Subscribes to rule version announcements.
    pub async fn watch_rule_versions(&self) -> Result<RuleVersionWatch, BusError> {
        let subscriber = self
            .client
            .subscribe(RULES_CHANGED_SUBJECT)
            .await
            .map_err(|e| BusError::Core {
                what: "subscribe",
                subject: RULES_CHANGED_SUBJECT,
                reason: e.to_string(),
            })?;
        Ok(RuleVersionWatch { subscriber })
    }

    /// Returns a publisher on this connection.
    pub fn publisher(&self) -> Publisher {
        Publisher::new(self.jetstream.clone(), self.metrics.clone())
    }

    /// Checks that JetStream answers within `timeout`: the readiness probe.
    pub async fn ping(&self, timeout: Duration) -> Result<(), BusError> {
        match tokio::time::timeout(timeout, self.jetstream.query_account()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(BusError::Unavailable(e)),
            Err(_) => Err(BusError::Timeout(timeout)),
        }
    }
}

impl From<&mesh_runtime::config::NatsConfig> for ConnectOptions {
    fn from(config: &mesh_runtime::config::NatsConfig) -> Self {
        Self {
            url: config.url.expose().to_owned(),
            credentials_file: config.credentials_file.clone(),
            nkey_seed_file: config.nkey_seed_file.clone(),
            token: config.token.as_ref().map(|t| t.expose().clone()),
            name: "meshd".to_owned(),
            request_timeout: config.connect_timeout,
        }
    }
}

impl From<&mesh_runtime::config::BusConfig> for ConsumerSettings {
    fn from(config: &mesh_runtime::config::BusConfig) -> Self {
        Self {
            batch_size: config.batch_size,
            batch_wait: config.batch_wait(),
            max_deliver: config.max_deliver,
            backoff: config.backoff.clone(),
            workers: config.workers,
        }
    }
}
