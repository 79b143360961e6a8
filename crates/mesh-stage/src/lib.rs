//! What every pipeline stage shares beyond the bus and the store: the transactional outbox
//! that makes "commit, then publish" safe, loading the rule set, and the stage metrics.
//!
//! A stage handles a batch as DESIGN.md §4 says: one transaction claims the batch's message
//! ids in the inbox, applies the effect and writes the output messages to the stage outbox
//! ([`Outbox::write`]); after the commit the batch is acked and the outputs are published in
//! the background, in commit order, and their rows deleted ([`Outbox::publish_committed`]).
//! If the process dies between the commit and the deletion, the rows stay, and the next
//! process publishes them first ([`Outbox::flush`]) with their original message ids.

pub mod rules;

use std::collections::HashSet;
use std::path::Path;

use bytes::Bytes;
use mesh_bus::consume::BoxError;
use mesh_bus::{Delivery, HandlerError, Outgoing, Publisher};
use mesh_engine::{LoadError, RuleSet};
use mesh_runtime::metrics::{MetricsRegistry, names};
use mesh_store::audit::{self, AuditEntry};
use mesh_store::outbox::{self, NewOutboxRow};
use mesh_store::{StoreError, inbox};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

/// Why the rule set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The files could not be read.
    #[error("reading rules from {path}")]
    Read {
        /// The configured path.
        path: String,
        /// What failed.
        #[source]
        source: mesh_sim::files::FilesError,
    },
    /// The rules are invalid.
    #[error("the rules in {path} are invalid:\n{problems}")]
    Invalid {
        /// The configured path, or `rule version N`.
        path: String,
        /// Every problem, one per line, with its position.
        problems: String,
    },
    /// The stored rule versions could not be read or written.
    #[error("reading the rule version in force")]
    Store(#[source] mesh_store::StoreError),
}

pub use rules::{
    RulesHandle, follow_rules, load_and_follow, load_versioned_rules, sweep_rule_versions,
};

/// Reads and validates the rule set at `path` (a file or a directory).
pub fn load_rules(path: &Path) -> Result<RuleSet, RulesError> {
    let shown = path.display().to_string();
    let sources = mesh_sim::files::read_rules(path).map_err(|source| RulesError::Read {
        path: shown.clone(),
        source,
    })?;
    mesh_engine::load(&sources).map_err(|LoadError { problems }| RulesError::Invalid {
        path: shown,
        problems: problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// One stage's batch bracket: inbox, audit chain, outbox and metrics under one name.
#[derive(Debug)]
pub struct Stage {
    name: &'static str,
    pool: PgPool,
    outbox: Outbox,
    metrics: StageMetrics,
}

impl Stage {
    /// The stage `name` (its inbox consumer, outbox stage, audit chain and metric label).
    pub fn new(
        name: &'static str,
        pool: PgPool,
        publisher: Publisher,
        registry: &MetricsRegistry,
    ) -> Self {
        Self {
            name,
            outbox: Outbox::new(pool.clone(), publisher, name),
            pool,
            metrics: StageMetrics::new(registry, name),
        }
    }

    /// The stage's metrics.
    pub fn metrics(&self) -> &StageMetrics {
        &self.metrics
    }

    /// Publishes what an earlier batch left in the outbox, opens the batch's transaction and
    /// claims its message ids; returns the transaction and the ids to process (the others were
    /// processed before).
    pub async fn begin(
        &self,
        batch: &[Delivery],
    ) -> Result<(Transaction<'static, Postgres>, HashSet<String>), HandlerError> {
        self.outbox.flush().await?;
        let mut tx = self.pool.begin().await.map_err(HandlerError::transient)?;
        let ids: Vec<String> = batch.iter().map(|d| d.msg_id().into_owned()).collect();
        let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let fresh = inbox::claim(&mut tx, self.name, &id_refs)
            .await
            .map_err(store_error)?;
        self.metrics.events("duplicate", batch.len() - fresh.len());
        self.metrics.events("in", fresh.len());
        Ok((tx, fresh))
    }

    /// The stage's pool, for reads outside a batch transaction.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Like [`Stage::begin`] without the inbox, for a stage whose effect is idempotent by
    /// itself (a second delivery finds nothing left to do).
    pub async fn begin_without_inbox(
        &self,
    ) -> Result<Transaction<'static, Postgres>, HandlerError> {
        self.outbox.flush().await?;
        self.pool.begin().await.map_err(HandlerError::transient)
    }

    /// Appends the batch's audit entries, writes its outputs to the outbox, commits, then
    /// publishes the outputs.
    pub async fn commit(
        &self,
        tx: Transaction<'static, Postgres>,
        entries: &[AuditEntry],
        outgoing: Vec<Outgoing>,
    ) -> Result<(), HandlerError> {
        self.commit_audited(tx, entries, outgoing).await.map(|_| ())
    }

    /// [`Stage::commit`], returning the sequence of the last audit entry in its chain (0 when
    /// `entries` is empty).
    pub async fn commit_audited(
        &self,
        mut tx: Transaction<'static, Postgres>,
        entries: &[AuditEntry],
        outgoing: Vec<Outgoing>,
    ) -> Result<u64, HandlerError> {
        let sequence = audit::append(&mut tx, self.name, entries)
            .await
            .map_err(store_error)?;
        self.metrics.events("out", outgoing.len());
        let written = self
            .outbox
            .write(&mut tx, outgoing)
            .await
            .map_err(store_error)?;
        tx.commit().await.map_err(HandlerError::transient)?;
        self.outbox.publish_committed(written).await?;
        Ok(sequence)
    }
}

/// Records in each entry's detail the rule version that produced it (`ruleVersion`), which the
/// query service's audit search reports as the entry's rule version.
pub fn stamp_rule_version(entries: &mut [AuditEntry], version: u64) {
    for entry in entries {
        if let serde_json::Value::Object(detail) = &mut entry.detail {
            detail.insert("ruleVersion".to_owned(), version.into());
        }
    }
}

/// Maps a store error to the consume loop's retry decision: a connection problem or a
/// serialization conflict is transient (retry the batch, never dead-letter); anything else
/// fails the batch so that a poison message is isolated.
pub fn store_error(error: StoreError) -> HandlerError {
    if error.is_transient() {
        HandlerError::transient(error)
    } else {
        HandlerError::failed(error)
    }
}

/// The outbox of one stage.
///
/// After a commit the batch's messages go to a background publisher and the batch is acked at
/// once: the committed rows guarantee the messages, so the next batch need not wait for
/// JetStream's acknowledgements. The publisher first publishes the rows a previous process
/// left (a crash between commit and publish), then each committed batch in commit order; it
/// retries a failed publish until it succeeds (the queue is bounded, so a NATS outage stalls
/// the stage rather than piling up memory), then hands the rows to a deleter task beside it,
/// which deletes everything handed to it in one statement and retries that too. A batch
/// waits until the leftovers are out ([`Outbox::flush`]), so outputs keep their order across
/// restarts.
#[derive(Debug)]
pub struct Outbox {
    stage: &'static str,
    /// Set once the leftovers of a previous process are published.
    ready: tokio::sync::watch::Receiver<bool>,
    queue: tokio::sync::mpsc::Sender<Written>,
}

/// Rows written in a transaction, to publish once it committed.
#[derive(Debug)]
#[must_use = "committed messages must be published"]
pub struct Written {
    ids: Vec<i64>,
    messages: Vec<Outgoing>,
}

/// Committed batches waiting for the background publisher; then the stage waits.
const PUBLISH_QUEUE: usize = 8;

impl Outbox {
    /// The outbox of `stage` (its rows are `stage_outbox.stage = stage`); starts its publisher
    /// on the current Tokio runtime.
    pub fn new(pool: PgPool, publisher: Publisher, stage: &'static str) -> Self {
        let (queue, receiver) = tokio::sync::mpsc::channel(PUBLISH_QUEUE);
        let (ready_tx, ready) = tokio::sync::watch::channel(false);
        tokio::spawn(publish_loop(pool, publisher, stage, receiver, ready_tx));
        Self {
            stage,
            ready,
            queue,
        }
    }

    /// Writes `messages` in the caller's transaction.
    pub async fn write(
        &self,
        conn: &mut PgConnection,
        messages: Vec<Outgoing>,
    ) -> Result<Written, StoreError> {
        let rows: Vec<NewOutboxRow<'_>> = messages
            .iter()
            .map(|m| NewOutboxRow {
                subject: &m.subject,
                msg_id: &m.msg_id,
                schema: &m.schema,
                payload: &m.payload,
            })
            .collect();
        let ids = outbox::insert(conn, self.stage, &rows).await?;
        Ok(Written { ids, messages })
    }

    /// Hands what a committed transaction wrote to the background publisher.
    pub async fn publish_committed(&self, written: Written) -> Result<(), HandlerError> {
        if written.messages.is_empty() {
            return Ok(());
        }
        self.queue.send(written).await.map_err(|_| {
            HandlerError::transient(format!("the {} outbox publisher stopped", self.stage))
        })
    }

    /// Waits until the rows a previous process left are published. Call it before a batch.
    pub async fn flush(&self) -> Result<(), HandlerError> {
        let mut ready = self.ready.clone();
        ready
            .wait_for(|ready| *ready)
            .await
            .map(|_| ())
            .map_err(|_| {
                HandlerError::transient(format!("the {} outbox publisher stopped", self.stage))
            })
    }
}

/// The background publisher of one stage's outbox.
async fn publish_loop(
    pool: PgPool,
    publisher: Publisher,
    stage: &'static str,
    mut queue: tokio::sync::mpsc::Receiver<Written>,
    ready: tokio::sync::watch::Sender<bool>,
) {
    let mut delay = Backoff::new();
    loop {
        match publish_leftovers(&pool, &publisher, stage).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(stage, error = %error, "publishing outbox rows left behind failed; retrying");
                delay.wait().await;
            }
        }
    }
    let _ = ready.send(true);
    // Published rows are deleted beside the publishing, so that the next batch's messages do
    // not wait for the previous batch's delete and its commit's disk flush.
    let (published, deletions) = tokio::sync::mpsc::channel(PUBLISH_QUEUE);
    let deleter = tokio::spawn(delete_loop(pool, stage, deletions));
    while let Some(first) = queue.recv().await {
        // Batches committed while the previous ones were being published go out together, in
        // commit order: one round of acknowledgements for all of them.
        let mut written = vec![first];
        while let Ok(next) = queue.try_recv() {
            written.push(next);
        }
        let messages: Vec<Outgoing> = written
            .iter()
            .flat_map(|w| w.messages.iter().cloned())
            .collect();
        let mut delay = Backoff::new();
        while let Err(error) = publisher.publish_all(messages.clone()).await {
            tracing::warn!(stage, error = %error, "publishing committed messages failed; retrying");
            delay.wait().await;
        }
        let ids: Vec<i64> = written.iter().flat_map(|w| w.ids.iter().copied()).collect();
        if published.send(ids).await.is_err() {
            break;
        }
    }
    drop(published);
    let _ = deleter.await;
}

/// Deletes the rows the publisher published, all that are waiting in one statement.
async fn delete_loop(
    pool: PgPool,
    stage: &'static str,
    mut published: tokio::sync::mpsc::Receiver<Vec<i64>>,
) {
    while let Some(mut ids) = published.recv().await {
        while let Ok(more) = published.try_recv() {
            ids.extend(more);
        }
        // Published, so the rows must go: retried until PostgreSQL answers (a stage cannot
        // commit meanwhile anyway). Given up once, they stayed until the next start, and the
        // outbox never looked drained (the chaos test caught it after a PostgreSQL crash). If
        // this process dies first, the next one publishes them again under the same ids, which
        // JetStream or the next stage's inbox drops.
        let mut delay = Backoff::new();
        while let Err(error) = outbox::delete(&pool, stage, &ids).await {
            tracing::warn!(stage, error = %error, "deleting published outbox rows failed; retrying");
            delay.wait().await;
        }
    }
}

/// Publishes every row of `stage` left in the outbox, oldest first, and deletes them.
async fn publish_leftovers(
    pool: &PgPool,
    publisher: &Publisher,
    stage: &'static str,
) -> Result<(), BoxError> {
    loop {
        let rows = outbox::pending(pool, stage, 1000).await?;
        if rows.is_empty() {
            return Ok(());
        }
        tracing::info!(
            stage,
            rows = rows.len(),
            "publishing outbox rows left behind"
        );
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let messages = rows.into_iter().map(|row| {
            Outgoing::encode_raw(
                row.subject,
                row.msg_id,
                row.schema,
                Bytes::from(row.payload),
            )
        });
        publisher.publish_all(messages).await?;
        outbox::delete(pool, stage, &ids).await?;
    }
}

/// Doubling waits from 50 ms to 5 s.
struct Backoff(std::time::Duration);

impl Backoff {
    fn new() -> Self {
        Self(std::time::Duration::from_millis(50))
    }

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(std::time::Duration::from_secs(5));
    }
}

/// Labels of [`StageMetrics::events`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct EventLabels {
    /// The stage (`correlation`, `flow`, ...).
    pub stage: String,
    /// `in`, `out`, `stale` or `duplicate`.
    pub direction: String,
}

/// Labels of [`StageMetrics::outcomes`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// The stage.
    pub stage: String,
    /// What happened, e.g. `matched`, `projected`, `disconnector`, `ambiguous`.
    pub outcome: String,
}

/// The metrics a pipeline stage keeps beyond the bus's (which counts consumed, acked and
/// dead-lettered messages and batch sizes and durations per consumer).
#[derive(Debug, Clone)]
pub struct StageMetrics {
    stage: &'static str,
    events: Family<EventLabels, Counter>,
    outcomes: Family<OutcomeLabels, Counter>,
    transform_errors: Family<OutcomeLabels, Counter>,
}

impl StageMetrics {
    /// Registers (or shares) the stage metric families in `registry`.
    pub fn new(registry: &MetricsRegistry, stage: &'static str) -> Self {
        Self {
            stage,
            events: registry.register_shared(&names::STAGE_EVENTS, Family::default()),
            outcomes: registry.register_shared(&names::STAGE_OUTCOMES, Family::default()),
            transform_errors: registry
                .register_shared(&names::STAGE_TRANSFORM_ERRORS, Family::default()),
        }
    }

    /// Counts `n` events in `direction`.
    pub fn events(&self, direction: &str, n: usize) {
        if n > 0 {
            self.events
                .get_or_create(&EventLabels {
                    stage: self.stage.to_owned(),
                    direction: direction.to_owned(),
                })
                .inc_by(n as u64);
        }
    }

    /// Counts one outcome.
    pub fn outcome(&self, outcome: &str) {
        self.outcomes
            .get_or_create(&OutcomeLabels {
                stage: self.stage.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Counts a transform error of `rule`.
    pub fn transform_error(&self, rule: &str) {
        self.transform_errors
            .get_or_create(&OutcomeLabels {
                stage: self.stage.to_owned(),
                outcome: rule.to_owned(),
            })
            .inc();
    }
}
