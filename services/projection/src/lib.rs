//! The projection service: mesh object changes -> export commands that land exactly once.
//!
//! Four loops share one database and one rule set:
//! - **projection** (consumer `projection` on MESH_OBJECTS): per batch, in one transaction,
//!   lock the mesh objects' projection rows, read flow's resolved state and what each target
//!   holds, run the pure [`mesh_engine::project`] stage, and record its commands in `exports`
//!   and what the targets will hold in `projection_targets`. A change of a version already
//!   projected finds nothing to do. Deprovisions pass the target's mass-deletion guard. A
//!   command whose (mesh object, target) has nothing open is recorded sent and published to
//!   MESH_EXPORTS (`mesh.export.<target>`) from the batch's outbox after the commit.
//! - **dispatcher**: sends the commands that had to wait: those behind an open command of the
//!   same (mesh object, target), retries after their backoff and released held deprovisions,
//!   one at a time per pair in issue order, so that a retried create never lands after the
//!   update behind it. It wakes when a batch queues a command or a result commits, on a
//!   PostgreSQL notification (`meshctl exports approve`), when the next retry falls due, and
//!   every `projection.timer_interval`.
//! - **results** (consumer `projection-results` on MESH_RESULTS): records each ExportResult.
//!   Applied or already applied confirms the command; a retryable failure queues it again after
//!   an exponential backoff (`projection.retry_initial` doubling up to `retry_max`); a permanent
//!   failure, or the `projection.max_attempts`-th retryable one, fails it and stores the
//!   command in MESH_DLQ (`mesh.dlq.projection`).
//! - **grace timer**: every `projection.timer_interval`, projects again the mesh objects whose
//!   `disable-then-delete` grace period ended, which deletes them.
//!
//! docs/projection.md describes the states, the guard and the operations.

mod dispatch;
mod handler;
mod results;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::{Bus, BusError, ConsumerSettings, Topology, run_consumer, topology::consumers};
use mesh_engine::RuleSet;
use mesh_model::ConnectorId;
use mesh_runtime::config::{MeshConfig, ProjectionConfig, parse_duration};
use mesh_runtime::metrics::{MetricsRegistry, names};
use mesh_stage::{RulesError, Stage};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use dispatch::{Dispatcher, dispatch_due, project_due_deletions};
pub use handler::ProjectionHandler;
pub use results::ResultsHandler;

/// The projection consumer's inbox, outbox stage and audit chain.
pub const STAGE: &str = consumers::PROJECTION;
/// The results consumer's inbox, outbox stage and audit chain.
pub const RESULTS_STAGE: &str = consumers::PROJECTION_RESULTS;

/// Why the projection service stopped or did not start.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The rules could not be loaded.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A target's `spec.massDeletionGuard` is malformed.
    #[error("connector {connector}: spec.massDeletionGuard: {reason}")]
    Guard {
        /// The target connector.
        connector: String,
        /// What is wrong.
        reason: String,
    },
    /// The topology does not declare a consumer the service needs.
    #[error("the topology has no consumer {0}")]
    MissingConsumer(&'static str),
    /// A consume loop failed.
    #[error("consume loop failed")]
    Bus(#[from] BusError),
    /// The database failed outside a batch (the dispatcher's notification listener).
    #[error("database failed")]
    Store(#[from] sqlx::Error),
}

/// One target's mass-deletion guard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guard {
    /// Deprovisions within `window` above which the target's deprovisions are held.
    pub threshold: u32,
    /// The sliding window.
    pub window: Duration,
}

/// What the projection service needs besides rules and connections.
#[derive(Debug, Clone)]
pub struct ProjectionSettings {
    /// Sends of one command before it fails for good.
    pub max_attempts: u32,
    /// First wait before a resend.
    pub retry_initial: Duration,
    /// Longest wait before a resend.
    pub retry_max: Duration,
    /// How often the grace timer and the dispatcher look without being woken.
    pub timer_interval: Duration,
    /// The guard of targets without their own.
    pub default_guard: Guard,
    /// Targets with their own guard (`spec.massDeletionGuard`).
    pub guards: HashMap<ConnectorId, Guard>,
}

impl ProjectionSettings {
    /// Settings from the configuration section, with each target's own guard from `rules`.
    pub fn new(config: &ProjectionConfig, rules: &RuleSet) -> Result<Self, ProjectionError> {
        let default_guard = Guard {
            threshold: config.guard_threshold,
            window: config.guard_window,
        };
        let mut guards = HashMap::new();
        for connector in rules.connectors() {
            let Some(node) = connector.settings.get("massDeletionGuard") else {
                continue;
            };
            let guard =
                guard_from(node, default_guard).map_err(|reason| ProjectionError::Guard {
                    connector: connector.name.to_string(),
                    reason,
                })?;
            guards.insert(connector.name.clone(), guard);
        }
        Ok(Self {
            max_attempts: config.max_attempts,
            retry_initial: config.retry_initial,
            retry_max: config.retry_max,
            timer_interval: config.timer_interval,
            default_guard,
            guards,
        })
    }

    /// The guard of `target`.
    pub fn guard(&self, target: &ConnectorId) -> Guard {
        self.guards
            .get(target)
            .copied()
            .unwrap_or(self.default_guard)
    }

    /// The wait before send number `attempts + 1` after `attempts` failed sends.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(30);
        self.retry_initial
            .saturating_mul(1 << doublings)
            .min(self.retry_max)
    }
}

fn guard_from(node: &mesh_engine::yaml::Node, default: Guard) -> Result<Guard, String> {
    use mesh_engine::yaml::NodeKind;
    let NodeKind::Map(entries) = &node.kind else {
        return Err(format!(
            "expected a mapping {{threshold, window}}, found {}",
            node.kind.describe()
        ));
    };
    let mut guard = default;
    for (key, value) in entries {
        match (key.name.as_str(), &value.kind) {
            ("threshold", NodeKind::Integer(n)) if *n >= 1 => {
                guard.threshold = u32::try_from(*n).map_err(|_| "threshold is too large")?;
            }
            ("threshold", _) => return Err("threshold must be a whole number of at least 1".into()),
            ("window", NodeKind::String(s)) => {
                guard.window = parse_duration(s).map_err(|e| format!("window: {e}"))?;
            }
            ("window", other) => {
                return Err(format!(
                    "window must be a duration such as 10m, found {}",
                    other.describe()
                ));
            }
            (other, _) => return Err(format!("unknown key {other:?} (threshold, window)")),
        }
    }
    Ok(guard)
}

/// The projection service's own metrics.
#[derive(Debug, Clone)]
pub struct ProjectionMetrics {
    exports: Family<ExportLabels, Counter>,
    results: Family<ResultLabels, Counter>,
    open: Family<OpenLabels, Gauge>,
    guard_held: Family<TargetLabels, Gauge>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExportLabels {
    target_connector: String,
    operation: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    target_connector: String,
    outcome: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpenLabels {
    target_connector: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TargetLabels {
    target_connector: String,
}

impl ProjectionMetrics {
    /// Registers (or shares) the families in `registry`.
    pub fn new(registry: &MetricsRegistry) -> Self {
        Self {
            exports: registry.register_shared(&names::PROJECTION_EXPORTS, Family::default()),
            results: registry.register_shared(&names::PROJECTION_RESULTS, Family::default()),
            open: registry.register_shared(&names::PROJECTION_EXPORTS_OPEN, Family::default()),
            guard_held: registry
                .register_shared(&names::PROJECTION_EXPORTS_HELD, Family::default()),
        }
    }

    fn issued(&self, target: &str, operation: &str, state: &str) {
        self.exports
            .get_or_create(&ExportLabels {
                target_connector: target.to_owned(),
                operation: operation.to_owned(),
                state: state.to_owned(),
            })
            .inc();
    }

    fn result(&self, target: &str, outcome: &str) {
        self.results
            .get_or_create(&ResultLabels {
                target_connector: target.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Runs the projection service until `shutdown` (the `meshd run projection` entry point).
pub async fn run(
    config: Arc<MeshConfig>,
    bus: Bus,
    pool: PgPool,
    metrics: MetricsRegistry,
    topology: Topology,
    shutdown: CancellationToken,
) -> Result<(), ProjectionError> {
    let Some(rules) = mesh_stage::load_and_follow(&config, &pool, &bus, STAGE, &shutdown).await?
    else {
        // Stopped while waiting for the database.
        return Ok(());
    };
    // Guards are read once: a target's `massDeletionGuard` changes on restart.
    let settings = Arc::new(ProjectionSettings::new(
        &config.projection,
        &rules.current(),
    )?);
    run_with_rules(
        rules,
        settings,
        &bus,
        pool,
        &metrics,
        &topology,
        &ConsumerSettings::from(&config.bus),
        shutdown,
    )
    .await
}

/// How long a projection sweep waits for flow's sweep of the same version before it goes on
/// alone (flow is down, or not deployed beside this projection).
const FLOW_SWEEP_WAIT: Duration = Duration::from_secs(60);

/// Waits until flow has swept under `version`, at most [`FLOW_SWEEP_WAIT`].
async fn wait_for_flow_sweep(pool: &PgPool, version: u64, shutdown: &CancellationToken) {
    let deadline = tokio::time::Instant::now() + FLOW_SWEEP_WAIT;
    loop {
        if matches!(
            mesh_store::rules::swept(pool, "flow", version).await,
            Ok(true)
        ) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                version,
                "flow has not re-resolved the mesh under the new rule version; projecting the current state"
            );
            return;
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// Runs the projection service's four loops with `rules` until `shutdown`.
#[allow(clippy::too_many_arguments)]
pub async fn run_with_rules(
    rules: mesh_stage::RulesHandle,
    settings: Arc<ProjectionSettings>,
    bus: &Bus,
    pool: PgPool,
    registry: &MetricsRegistry,
    topology: &Topology,
    consumer: &ConsumerSettings,
    shutdown: CancellationToken,
) -> Result<(), ProjectionError> {
    let changes = topology
        .consumer(STAGE)
        .ok_or(ProjectionError::MissingConsumer(STAGE))?;
    let results = topology
        .consumer(RESULTS_STAGE)
        .ok_or(ProjectionError::MissingConsumer(RESULTS_STAGE))?;
    let metrics = ProjectionMetrics::new(registry);
    let wake = Arc::new(Notify::new());
    let projection = ProjectionHandler::new(
        rules.clone(),
        settings.clone(),
        Stage::new(STAGE, pool.clone(), bus.publisher(), registry),
        metrics.clone(),
        wake.clone(),
    );
    let results_handler = ResultsHandler::new(
        settings.clone(),
        Stage::new(RESULTS_STAGE, pool.clone(), bus.publisher(), registry),
        metrics.clone(),
        wake.clone(),
    );
    let dispatcher = Dispatcher::new(pool.clone(), bus.publisher(), metrics, wake);

    // Every mesh object is projected again under each new rule version, once flow has
    // resolved them all again under it: each object is then projected once, with its new
    // attributes, as a preview computes.
    let sweep_stop = shutdown.clone();
    let sweep_pool = pool.clone();
    let sweep =
        mesh_stage::sweep_rule_versions(pool.clone(), rules, STAGE, shutdown.clone(), |rules| {
            let (projection, pool, stop) = (&projection, &sweep_pool, &sweep_stop);
            async move {
                wait_for_flow_sweep(pool, rules.version(), stop).await;
                // A version superseded while waiting is not worth projecting: the sweep under
                // the newer one follows.
                if projection.rules().version() != rules.version() {
                    return Ok(0);
                }
                dispatch::sweep(projection, &rules).await
            }
        });
    let (changes, results, dispatched, (), ()) = tokio::join!(
        run_consumer(bus, changes, consumer, &projection, shutdown.clone()),
        run_consumer(bus, results, consumer, &results_handler, shutdown.clone()),
        dispatcher.run(settings.timer_interval, shutdown.clone()),
        dispatch::grace_timer(&projection, settings.timer_interval, shutdown.clone()),
        sweep,
    );
    changes?;
    results?;
    dispatched?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(initial: u64, max: u64) -> ProjectionSettings {
        ProjectionSettings {
            max_attempts: 10,
            retry_initial: Duration::from_secs(initial),
            retry_max: Duration::from_secs(max),
            timer_interval: Duration::from_secs(1),
            default_guard: Guard {
                threshold: 1,
                window: Duration::from_secs(1),
            },
            guards: HashMap::new(),
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let s = settings(1, 20);
        let waits: Vec<u64> = (1..=7).map(|a| s.backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 20, 20]);
        assert_eq!(s.backoff(u32::MAX).as_secs(), 20);
    }

    #[test]
    fn a_target_guard_is_read_from_its_connector() {
        let rules = mesh_engine::load(&[mesh_engine::SourceFile {
            path: "c.yaml".into(),
            contents: "apiVersion: identitymesh.io/v1\nkind: Connector\nmetadata: { name: dir }\n\
             spec: { type: ldap-target, objectTypes: [User], \
             massDeletionGuard: { threshold: 7, window: 2m } }\n"
                .into(),
        }])
        .unwrap();
        let config = ProjectionConfig::default();
        let s = ProjectionSettings::new(&config, &rules).unwrap();
        let dir = ConnectorId::parse("dir").unwrap();
        assert_eq!(
            s.guard(&dir),
            Guard {
                threshold: 7,
                window: Duration::from_secs(120)
            }
        );
        let other = ConnectorId::parse("other").unwrap();
        assert_eq!(s.guard(&other).threshold, config.guard_threshold);
    }

    #[test]
    fn a_malformed_guard_is_refused_with_its_connector() {
        let rules = mesh_engine::load(&[mesh_engine::SourceFile {
            path: "c.yaml".into(),
            contents: "apiVersion: identitymesh.io/v1\nkind: Connector\nmetadata: { name: dir }\n\
             spec: { type: ldap-target, objectTypes: [User], \
             massDeletionGuard: { threshold: 0 } }\n"
                .into(),
        }])
        .unwrap();
        let error = ProjectionSettings::new(&ProjectionConfig::default(), &rules).unwrap_err();
        assert_eq!(
            error.to_string(),
            "connector dir: spec.massDeletionGuard: threshold must be a whole number of at least 1"
        );
    }
}
