//! The risk service: signals and lifecycle in, access decisions out.
//!
//! Four loops share one Redis (docs/risk.md):
//! - **signals** (consumer `risk-signals` on MESH_SIGNALS, and gRPC `ReportSignal`): each
//!   sign-in or posture report updates its subject's risk state ([`state`]); when the
//!   subject's standing level changes, the level is contributed back to the mesh as a change
//!   event of the feedback connector (`RiskLevel`), so projection rules can act on it.
//! - **lifecycle** (consumer `risk-lifecycle` on MESH_OBJECTS): copies each changed mesh
//!   object (type, lifecycle, attributes) from PostgreSQL into Redis, with the index from
//!   subject names to mesh objects.
//! - **upkeep**: pings Redis every second (readiness, `mesh_risk_redis_up`), copies every
//!   mesh object again when Redis lost its data, and looks again at elevated levels whose
//!   failures or journeys have aged out.
//! - **AccessDecision** over gRPC (with health and reflection): reads the state and the
//!   identity, scores, and runs the `AccessPolicy` of the rule set ([`mesh_engine::risk`]).
//!   Denies and step-ups are audited, allows sampled. Without Redis the answer is the safe
//!   default, never allow: deny for high and critical resources, the policy's `degraded`
//!   verdict (default `require_mfa`) otherwise, flagged `degraded`.

mod audit;
mod grpc;
mod lifecycle;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use mesh_bus::{Bus, BusError, ConsumerSettings, Outgoing, Publisher, Topology, run_consumer};
use mesh_engine::RuleSet;
use mesh_engine::risk::{
    AccessPolicy, AccessRequest, Assessment, DecisionOutcome, Reason, RiskLevel, Verdict,
    degraded_verdict, sign_in_effects, standing_level,
};
use mesh_model::{
    Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef, EventId, ExternalId,
    ObjectType, RiskSignal, SignalKind,
};
use mesh_proto::WireEvent;
use mesh_runtime::admin::{Readiness, check_fn};
use mesh_runtime::config::{MeshConfig, RiskConfig};
use mesh_runtime::error_chain;
use mesh_runtime::metrics::{MetricsRegistry, names};
use mesh_stage::RulesError;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use audit::AuditWriter;
pub use grpc::{AccessDecisionService, access_request, bind, decide_response};
pub use lifecycle::{LifecycleHandler, copy_all_objects};
pub use state::RedisState;

/// The signals consumer.
pub const SIGNALS_STAGE: &str = mesh_bus::topology::consumers::RISK_SIGNALS;
/// The lifecycle consumer.
pub const LIFECYCLE_STAGE: &str = mesh_bus::topology::consumers::RISK_LIFECYCLE;

/// Why the risk service stopped or did not start.
#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    /// The rules could not be loaded.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// The configuration is unusable.
    #[error("risk configuration: {0}")]
    Config(String),
    /// Redis could not be set up (a malformed URL).
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    /// The topology does not declare a consumer the service needs.
    #[error("the topology has no consumer {0}")]
    MissingConsumer(&'static str),
    /// A consume loop failed.
    #[error("consume loop failed")]
    Bus(#[from] BusError),
    /// The gRPC server failed.
    #[error("gRPC server on {addr}")]
    Serve {
        /// The listen address.
        addr: std::net::SocketAddr,
        /// What failed.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Why a signal could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Redis failed; the signal is kept (redelivered, or published to MESH_SIGNALS).
    #[error("redis")]
    Redis(#[from] redis::RedisError),
    /// The risk level could not be published to the mesh.
    #[error("publishing the risk level")]
    Publish(#[from] BusError),
}

/// The risk service's metrics.
#[derive(Debug, Clone)]
pub struct RiskMetrics {
    decisions: Family<DecisionLabels, Counter>,
    signals: Family<SignalLabels, Counter>,
    redis_up: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: String,
    degraded: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    kind: String,
    outcome: String,
}

impl RiskMetrics {
    /// Registers (or shares) the families in `registry`.
    pub fn new(registry: &MetricsRegistry) -> Self {
        Self {
            decisions: registry.register_shared(&names::RISK_DECISIONS, Family::default()),
            signals: registry.register_shared(&names::RISK_SIGNALS, Family::default()),
            redis_up: registry.register_shared(&names::RISK_REDIS_UP, Gauge::default()),
        }
    }

    fn decision(&self, verdict: Verdict, degraded: bool) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: verdict.as_str().to_owned(),
                degraded: degraded.to_string(),
            })
            .inc();
    }

    fn signal(&self, kind: &str, outcome: &str) {
        self.signals
            .get_or_create(&SignalLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Where the risk level goes back into the mesh.
#[derive(Debug, Clone)]
struct Feedback {
    connector: ConnectorId,
    object_type: ObjectType,
}

/// A decision with what the response and the audit need.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The outcome (verdict, score, reasons).
    pub outcome: DecisionOutcome,
    /// The safe default applied because the risk state could not be read.
    pub degraded: bool,
    /// The mesh object decided about, when known.
    pub mesh_object: Option<String>,
    /// The decision's id.
    pub decision_id: uuid::Uuid,
}

/// The shared core of the risk service: policy, state, metrics, feedback.
#[derive(Debug)]
pub struct Risk {
    policy: ArcSwap<InForce>,
    state: RedisState,
    redis_up: AtomicBool,
    redis_timeout: Duration,
    publisher: Publisher,
    feedback: Option<Feedback>,
    metrics: RiskMetrics,
    audit: AuditWriter,
    allow_sample: f64,
}

impl Risk {
    /// Builds the core from the rule set's policy and the configuration.
    pub fn new(
        rules: &RuleSet,
        config: &RiskConfig,
        state: RedisState,
        publisher: Publisher,
        metrics: RiskMetrics,
        audit: AuditWriter,
    ) -> Result<Self, RiskError> {
        let feedback = if config.feedback_connector.is_empty() {
            None
        } else {
            let name = ConnectorId::parse(&config.feedback_connector)
                .map_err(|e| RiskError::Config(format!("feedback_connector: {e}")))?;
            match rules.connector(&name) {
                Some(connector) => connector.object_types.first().map(|t| Feedback {
                    connector: name.clone(),
                    object_type: t.clone(),
                }),
                None => {
                    tracing::warn!(connector = %name, "the feedback connector is not defined in the rules; risk levels are not contributed to the mesh");
                    None
                }
            }
        };
        if !(0.0..=1.0).contains(&config.audit_allow_sample) {
            return Err(RiskError::Config(format!(
                "audit_allow_sample must be between 0 and 1, not {}",
                config.audit_allow_sample
            )));
        }
        Ok(Self {
            policy: ArcSwap::from_pointee(InForce::of(rules)),
            state,
            redis_up: AtomicBool::new(true),
            redis_timeout: config.redis_timeout,
            publisher,
            feedback,
            metrics,
            audit,
            allow_sample: config.audit_allow_sample,
        })
    }

    /// Returns the policy in force.
    pub fn policy(&self) -> Arc<InForce> {
        self.policy.load_full()
    }

    /// Puts the access policy of `rules` in force (a new rule version, applied live).
    pub fn set_rules(&self, rules: &RuleSet) {
        self.policy.store(Arc::new(InForce::of(rules)));
    }

    /// Returns the state store.
    pub fn state(&self) -> &RedisState {
        &self.state
    }

    /// Applies one signal. Returns true when it had been applied before (a duplicate).
    pub async fn apply_signal(&self, signal: &RiskSignal) -> Result<bool, SignalError> {
        let policy = self.policy();
        let id = signal.signal_id.to_string();
        let kind = signal.kind.subject_token();
        if self.state.seen_signal(&id).await? {
            self.metrics.signal(kind, "duplicate");
            return Ok(true);
        }
        match &signal.kind {
            SignalKind::SignIn(sign_in) => {
                let last = self.state.last_sighting(&signal.subject).await?;
                let location = sign_in
                    .location
                    .as_ref()
                    .map(|l| (l.latitude, l.longitude, l.country.clone()));
                let effects = sign_in_effects(
                    &policy.scoring,
                    last.as_ref(),
                    sign_in.success,
                    location,
                    sign_in.mfa_at,
                    signal.observed_at,
                );
                self.state
                    .apply_sign_in(
                        &policy,
                        &id,
                        &signal.subject,
                        sign_in.device_id.as_deref(),
                        &effects,
                        signal.observed_at,
                    )
                    .await?;
            }
            SignalKind::DevicePosture(posture) => {
                self.state
                    .apply_posture(
                        &id,
                        &signal.subject,
                        &posture.device_id,
                        posture.managed,
                        posture.compliant,
                    )
                    .await?;
            }
        }
        self.metrics.signal(kind, "applied");
        self.reassess(&signal.subject, Utc::now(), &id).await?;
        Ok(false)
    }

    /// Recomputes the standing level of `subject`; when it differs from the level last
    /// contributed, contributes the new one to the mesh.
    pub async fn reassess(
        &self,
        subject: &str,
        now: DateTime<Utc>,
        cause: &str,
    ) -> Result<(), SignalError> {
        let policy = self.policy();
        let (state, contributed) = self.state.risk_state(&policy, subject, None, now).await?;
        let level = standing_level(&policy, &state, now);
        if level == contributed.unwrap_or(RiskLevel::Low) {
            if level == RiskLevel::Low {
                return Ok(());
            }
            // Still elevated: look again later.
            self.state
                .set_level(subject, level, Some(self.recheck_at(now)))
                .await?;
            return Ok(());
        }
        if let Some(feedback) = &self.feedback {
            self.publish_level(feedback, subject, level, now, cause)
                .await?;
        }
        let recheck = (level > RiskLevel::Low).then(|| self.recheck_at(now));
        self.state.set_level(subject, level, recheck).await?;
        tracing::info!(subject, level = %level, "risk level changed");
        Ok(())
    }

    fn recheck_at(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let policy = self.policy();
        let s = &policy.scoring;
        let soonest = s
            .failure_window
            .min(s.travel_memory)
            .min(Duration::from_secs(60));
        now + chrono::Duration::from_std(soonest).unwrap_or_default()
    }

    async fn publish_level(
        &self,
        feedback: &Feedback,
        subject: &str,
        level: RiskLevel,
        now: DateTime<Utc>,
        cause: &str,
    ) -> Result<(), SignalError> {
        let external = subject.trim().to_lowercase();
        let Ok(external_id) = ExternalId::parse(&external) else {
            tracing::warn!(
                subject,
                "subject is not a valid external id; risk level not contributed"
            );
            return Ok(());
        };
        let mut attributes = Attributes::new();
        for (name, value) in [("subject", subject), ("riskLevel", level.as_str())] {
            if let Ok(name) = mesh_model::AttributeName::parse(name) {
                attributes.insert(name, value.into());
            }
        }
        let event_id = EventId::derive(
            "risk",
            format!("{external}\u{0}{}\u{0}{cause}", level.as_str()).as_bytes(),
        );
        let event = ChangeEvent {
            event_id,
            object: ConnectorObjectRef {
                connector: feedback.connector.clone(),
                object_type: feedback.object_type.clone(),
                external_id,
            },
            operation: ChangeOperation::Upsert,
            attributes,
            source_time: now,
        };
        let message = Outgoing::encode_raw(
            format!("mesh.change.{}", feedback.connector),
            event_id.to_string(),
            ChangeEvent::SCHEMA,
            event.into_wire(),
        );
        self.publisher.publish(message).await?;
        Ok(())
    }

    /// Looks again at subjects whose elevated level may have come down.
    pub async fn refresh_elevated(&self, now: DateTime<Utc>) -> Result<usize, SignalError> {
        let due = self.state.due_elevated(now).await?;
        for subject in &due {
            let cause = format!("recheck-{}", now.timestamp_millis());
            self.reassess(subject, now, &cause).await?;
        }
        Ok(due.len())
    }

    /// Decides one request. Never fails: without the risk state it answers the safe default.
    pub async fn decide(&self, request: &AccessRequest, mesh_object: Option<&str>) -> Decided {
        let policy = self.policy();
        let decision_id = uuid::Uuid::new_v4();
        let read = self.state.decision_inputs(
            &policy,
            &request.subject,
            request.device_id.as_deref(),
            mesh_object,
            request.time,
        );
        let read = if self.redis_up.load(Ordering::Relaxed) {
            match tokio::time::timeout(self.redis_timeout, read).await {
                Ok(Ok(read)) => Some(read),
                Ok(Err(error)) => {
                    tracing::warn!(error = %error, "risk state unavailable; safe default applies");
                    None
                }
                Err(_) => {
                    tracing::warn!(timeout = ?self.redis_timeout, "risk state too slow; safe default applies");
                    None
                }
            }
        } else {
            None
        };
        let decided = match read {
            Some((state, identity)) => Decided {
                mesh_object: identity.mesh_object.clone(),
                outcome: mesh_engine::risk::decide(&policy, request, &state, &identity),
                degraded: false,
                decision_id,
            },
            None => self.degraded(request, mesh_object, decision_id),
        };
        self.metrics
            .decision(decided.outcome.verdict, decided.degraded);
        if decided.outcome.verdict != Verdict::Allow || self.sampled(&decision_id) {
            self.audit.record(request, &decided).await;
        }
        decided
    }

    fn degraded(
        &self,
        request: &AccessRequest,
        mesh_object: Option<&str>,
        decision_id: uuid::Uuid,
    ) -> Decided {
        let policy = self.policy();
        let verdict = degraded_verdict(Some(&policy), request.sensitivity);
        let reason = Reason {
            code: "risk_state_unavailable".to_owned(),
            message: "the risk state could not be read; the safe default applies".to_owned(),
            weight: 0,
        };
        Decided {
            outcome: DecisionOutcome {
                verdict,
                scope: None,
                policy: "degraded".to_owned(),
                assessment: Assessment {
                    score: 0,
                    level: RiskLevel::Low,
                    factors: Vec::new(),
                },
                reasons: vec![reason],
                errors: Vec::new(),
            },
            degraded: true,
            mesh_object: mesh_object.map(str::to_owned),
            decision_id,
        }
    }

    fn sampled(&self, id: &uuid::Uuid) -> bool {
        if self.allow_sample >= 1.0 {
            return true;
        }
        let bucket = u64::from_le_bytes(id.as_bytes()[..8].try_into().unwrap_or_default());
        (bucket as f64 / u64::MAX as f64) < self.allow_sample
    }

    /// Pings Redis and records the answer: readiness, the gauge, and the decisions' fast path.
    pub async fn probe(&self) -> bool {
        let up = matches!(
            tokio::time::timeout(Duration::from_secs(1), self.state.ping()).await,
            Ok(Ok(()))
        );
        let was = self.redis_up.swap(up, Ordering::Relaxed);
        if was != up {
            if up {
                tracing::info!("redis reachable again; decisions use the risk state");
            } else {
                tracing::warn!("redis unreachable; decisions fall back to the safe default");
            }
        }
        self.metrics.redis_up.set(i64::from(up));
        up
    }

    /// Returns true while Redis answered the last probe.
    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// Returns the policy set version (the rule set's).
    pub fn policy_version(&self) -> u64 {
        self.policy.load().version
    }
}

/// The access policy in force and the rule version it comes from.
#[derive(Debug)]
pub struct InForce {
    /// The policy.
    pub policy: AccessPolicy,
    /// The rule set version.
    pub version: u64,
}

impl InForce {
    fn of(rules: &RuleSet) -> Self {
        let policy = match rules.access_policy() {
            Some(policy) => policy.clone(),
            None => {
                tracing::warn!(
                    version = rules.version(),
                    "the rule set has no AccessPolicy: every decision is deny until one is added (docs/risk.md)"
                );
                no_policy()
            }
        };
        Self {
            policy,
            version: rules.version(),
        }
    }
}

impl std::ops::Deref for InForce {
    type Target = AccessPolicy;

    fn deref(&self) -> &AccessPolicy {
        &self.policy
    }
}

/// The policy of a rule set without an `AccessPolicy`: no rules, deny. The service still
/// keeps risk state and contributes risk levels, so adding a policy later changes only the
/// decisions.
fn no_policy() -> AccessPolicy {
    AccessPolicy {
        name: mesh_model::RuleName::parse("no-access-policy")
            .unwrap_or_else(|_| unreachable!("a valid rule name")),
        default: Verdict::Deny,
        default_scope: None,
        degraded: Verdict::Deny,
        identity: mesh_engine::risk::IdentitySettings::default(),
        scoring: mesh_engine::risk::Scoring::default(),
        rules: Vec::new(),
        origin: mesh_engine::rules::Origin::default(),
    }
}

/// Connects to Redis lazily: the service starts, and answers degraded, while Redis is down.
pub fn connect_redis(url: &str) -> Result<redis::aio::ConnectionManager, RiskError> {
    let client = redis::Client::open(url)?;
    // A command on a connection to a Redis that died must not wait forever: the signal
    // consumer would hold its batch, and decisions have their own shorter budget.
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_response_timeout(Some(Duration::from_secs(1)))
        .set_connection_timeout(Some(Duration::from_millis(500)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    Ok(redis::aio::ConnectionManager::new_lazy_with_config(
        client, config,
    )?)
}

/// Runs the risk service until `shutdown` (the `meshd run risk` entry point).
pub async fn run(
    config: Arc<MeshConfig>,
    bus: Bus,
    pool: PgPool,
    metrics: MetricsRegistry,
    topology: Topology,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), RiskError> {
    let Some(handle) =
        mesh_stage::load_and_follow(&config, &pool, &bus, SIGNALS_STAGE, &shutdown).await?
    else {
        // Stopped while waiting for the database.
        return Ok(());
    };
    let state = RedisState::new(
        connect_redis(config.redis.url.expose())?,
        config.risk.key_prefix.clone(),
        config.risk.state_ttl,
    );
    let audit = AuditWriter::start(pool.clone(), shutdown.clone());
    let risk = Arc::new(Risk::new(
        &handle.current(),
        &config.risk,
        state,
        bus.publisher(),
        RiskMetrics::new(&metrics),
        audit,
    )?);
    tokio::spawn(follow_policy(risk.clone(), handle, shutdown.clone()));
    let probe = risk.clone();
    readiness.register(check_fn("redis", move || {
        let probe = probe.clone();
        async move {
            if probe.probe().await {
                Ok(())
            } else {
                Err("redis does not answer; decisions use the safe default".to_owned())
            }
        }
    }));
    let listener = grpc::bind(&config.risk).await?;
    run_with(
        risk,
        listener,
        &config.risk,
        &bus,
        pool,
        &topology,
        &ConsumerSettings::from(&config.bus),
        shutdown,
    )
    .await
}

/// Puts each new rule version's access policy in force until `shutdown`.
async fn follow_policy(
    risk: Arc<Risk>,
    rules: mesh_stage::RulesHandle,
    shutdown: CancellationToken,
) {
    let mut changes = rules.subscribe();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        let rules = changes.borrow_and_update().clone();
        risk.set_rules(&rules);
        tracing::info!(version = rules.version(), "access policy switched");
    }
}

/// A risk service running as a task of this process: for tests, benchmarks and programs that
/// embed it. Its gRPC listener is `config.listen` (port 0 picks a free one, see `addr`).
#[derive(Debug)]
pub struct LocalRisk {
    /// Where AccessDecision listens.
    pub addr: std::net::SocketAddr,
    /// The running core: its policy and state.
    pub risk: Arc<Risk>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), RiskError>>,
}

impl LocalRisk {
    /// Builds the core over the Redis at `redis_url` and starts the four loops.
    pub async fn start(
        rules: &RuleSet,
        config: RiskConfig,
        redis_url: &str,
        bus: &Bus,
        pool: PgPool,
        topology: &Topology,
        consumer: ConsumerSettings,
    ) -> Result<Self, RiskError> {
        let stop = CancellationToken::new();
        let state = RedisState::new(
            connect_redis(redis_url)?,
            config.key_prefix.clone(),
            config.state_ttl,
        );
        let risk = Arc::new(Risk::new(
            rules,
            &config,
            state,
            bus.publisher(),
            RiskMetrics::new(&MetricsRegistry::new()),
            AuditWriter::start(pool.clone(), stop.clone()),
        )?);
        let listener = grpc::bind(&config).await?;
        let addr = listener
            .local_addr()
            .map_err(|e| RiskError::Config(format!("listener address: {e}")))?;
        let (core, bus, topology, token) =
            (risk.clone(), bus.clone(), topology.clone(), stop.clone());
        let task = tokio::spawn(async move {
            run_with(
                core, listener, &config, &bus, pool, &topology, &consumer, token,
            )
            .await
        });
        Ok(Self {
            addr,
            risk,
            stop,
            task,
        })
    }

    /// Stops the loops and waits for them.
    pub async fn stop(self) -> Result<(), RiskError> {
        self.stop.cancel();
        self.task
            .await
            .map_err(|e| RiskError::Config(format!("the risk task failed: {e}")))?
    }
}

/// Runs the four loops with a built core until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn run_with(
    risk: Arc<Risk>,
    listener: tokio::net::TcpListener,
    config: &RiskConfig,
    bus: &Bus,
    pool: PgPool,
    topology: &Topology,
    consumer: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), RiskError> {
    let signals = topology
        .consumer(SIGNALS_STAGE)
        .ok_or(RiskError::MissingConsumer(SIGNALS_STAGE))?;
    let lifecycle = topology
        .consumer(LIFECYCLE_STAGE)
        .ok_or(RiskError::MissingConsumer(LIFECYCLE_STAGE))?;
    if config.token_sha256.is_empty() {
        tracing::warn!("risk.token_sha256 is empty: AccessDecision accepts calls without a token");
    }
    let signals_handler = grpc::SignalsHandler::new(risk.clone());
    let lifecycle_handler = LifecycleHandler::new(risk.clone(), pool.clone());
    let service = AccessDecisionService::new(risk.clone(), bus.publisher());
    let server = grpc::serve(service, listener, config, shutdown.clone());
    let (signals, lifecycle, served, ()) = tokio::join!(
        run_consumer(bus, signals, consumer, &signals_handler, shutdown.clone()),
        run_consumer(
            bus,
            lifecycle,
            consumer,
            &lifecycle_handler,
            shutdown.clone()
        ),
        server,
        upkeep(&risk, &pool, shutdown.clone()),
    );
    signals?;
    lifecycle?;
    served?;
    Ok(())
}

/// Every second: probe Redis; copy every mesh object when Redis lost them; look again at
/// elevated levels that are due.
async fn upkeep(risk: &Risk, pool: &PgPool, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !risk.probe().await {
            continue;
        }
        match risk.state().is_synced().await {
            Ok(true) => {}
            Ok(false) => match copy_all_objects(risk, pool).await {
                Ok(n) => tracing::info!(objects = n, "mesh objects copied to redis"),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "copying mesh objects to redis failed; retrying");
                    continue;
                }
            },
            Err(error) => {
                tracing::warn!(error = %error, "redis sync marker unreadable");
                continue;
            }
        }
        if let Err(error) = risk.refresh_elevated(Utc::now()).await {
            tracing::warn!(error = %error_chain(&error), "looking again at elevated risk levels failed");
        }
    }
}
