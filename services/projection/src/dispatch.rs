//! The dispatcher (due exports -> MESH_EXPORTS) and the grace timer (due deletions).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use mesh_bus::{BusError, Outgoing, Publisher};
use mesh_model::ExportCommand;
use mesh_proto::WireEvent;
use mesh_store::StoreError;
use mesh_store::projection::{self, NOTIFY_CHANNEL};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::handler::{ProjectionHandler, Reason};
use crate::{OpenLabels, ProjectionMetrics, TargetLabels};

/// Commands sent per transaction.
const DISPATCH_BATCH: i64 = 256;
/// Mesh objects the grace timer projects per transaction.
const TIMER_BATCH: i64 = 256;

/// Why a dispatch pass failed (it is retried at the next wake-up).
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Publishing failed.
    #[error(transparent)]
    Bus(#[from] BusError),
    /// A stored command does not decode.
    #[error("stored export command {seq} does not decode: {reason}")]
    Malformed {
        /// Its row.
        seq: i64,
        /// Why.
        reason: String,
    },
}

/// Sends due export commands.
#[derive(Debug)]
pub struct Dispatcher {
    pool: PgPool,
    publisher: Publisher,
    metrics: ProjectionMetrics,
    wake: Arc<Notify>,
}

impl Dispatcher {
    /// A dispatcher woken by `wake`.
    pub fn new(
        pool: PgPool,
        publisher: Publisher,
        metrics: ProjectionMetrics,
        wake: Arc<Notify>,
    ) -> Self {
        Self {
            pool,
            publisher,
            metrics,
            wake,
        }
    }

    /// Sends due commands whenever woken (by a projection batch that queued a command, a
    /// result's commit, a PostgreSQL notification on `mesh_exports`, the next retry falling
    /// due, or every `interval`) until `shutdown`.
    pub async fn run(
        &self,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        let mut listener = self.listen().await;
        let mut gauges_at = tokio::time::Instant::now();
        loop {
            let mut next = interval;
            loop {
                match dispatch_due(&self.pool, &self.publisher).await {
                    Ok(pass) if pass.sent < DISPATCH_BATCH as usize => {
                        if let Some(at) = pass.next_due {
                            next = (at - Utc::now())
                                .to_std()
                                .unwrap_or(Duration::ZERO)
                                .min(interval);
                        }
                        break;
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(error = %error, "dispatching exports failed; retrying at the next wake-up");
                        break;
                    }
                }
            }
            if gauges_at.elapsed() >= interval {
                gauges_at = tokio::time::Instant::now();
                if let Err(error) = self.refresh_gauges().await {
                    tracing::debug!(error = %error, "export gauges not refreshed");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = self.wake.notified() => {}
                () = tokio::time::sleep(next) => {}
                notified = recv(&mut listener) => {
                    if notified.is_err() {
                        listener = None;
                    }
                }
            }
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        let listener = async {
            let mut listener = PgListener::connect_with(&self.pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        match listener {
            Ok(listener) => Some(listener),
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for export approvals; polling instead");
                None
            }
        }
    }

    async fn refresh_gauges(&self) -> Result<(), StoreError> {
        let counts = projection::open_counts(&self.pool).await?;
        self.metrics.open.clear();
        self.metrics.guard_held.clear();
        for ((target, state), n) in counts {
            if state == projection::ExportState::Held {
                self.metrics
                    .guard_held
                    .get_or_create(&TargetLabels {
                        target_connector: target.clone(),
                    })
                    .set(n);
            }
            self.metrics
                .open
                .get_or_create(&OpenLabels {
                    target_connector: target,
                    state: state.as_str().to_owned(),
                })
                .set(n);
        }
        Ok(())
    }
}

/// Waits for a notification; never returns without a listener.
async fn recv(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        Some(l) => l.recv().await.map(|_| ()),
        None => std::future::pending().await,
    }
}

/// What one dispatch pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchPass {
    /// Commands sent.
    pub sent: usize,
    /// When the next queued command comes due (a retry's backoff), if one is waiting.
    pub next_due: Option<DateTime<Utc>>,
}

/// Sends one batch of due commands and marks them sent; returns how many were sent and when
/// the next queued command comes due.
///
/// A command is sent with attempt `attempts + 1` and the target object id learned since it
/// was issued; its message id is `<idempotency key>/<attempt>`, so a crash between publish
/// and commit re-sends the same message, which JetStream (and the agent's record of applied
/// keys) drops. The next due instant is read in the same transaction, so that a command cannot
/// fall due between the two reads and be missed until the next timer tick.
pub async fn dispatch_due(
    pool: &PgPool,
    publisher: &Publisher,
) -> Result<DispatchPass, DispatchError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(StoreError::query("dispatching exports"))?;
    let due = projection::lock_due(&mut tx, DISPATCH_BATCH).await?;
    let next_due = if due.len() < DISPATCH_BATCH as usize {
        projection::next_due(&mut tx).await?
    } else {
        None
    };
    if due.is_empty() {
        return Ok(DispatchPass { sent: 0, next_due });
    }
    let mut messages = Vec::with_capacity(due.len());
    for export in &due {
        let mut command =
            ExportCommand::from_wire(&export.command).map_err(|e| DispatchError::Malformed {
                seq: export.seq,
                reason: e.to_string(),
            })?;
        command.attempt = export.attempts + 1;
        if command.target_object_id.is_none() {
            command
                .target_object_id
                .clone_from(&export.target_object_id);
        }
        messages.push(export_message(command, export.traceparent.as_deref()));
    }
    publisher.publish_all(messages).await?;
    let seqs: Vec<i64> = due.iter().map(|e| e.seq).collect();
    projection::mark_sent(&mut tx, &seqs).await?;
    tx.commit()
        .await
        .map_err(StoreError::query("dispatching exports"))?;
    Ok(DispatchPass {
        sent: due.len(),
        next_due,
    })
}

/// The message that sends `command` (its attempt set): subject `mesh.export.<target>`, message
/// id `<idempotency key>/<attempt>`, under an `export send` span that continues the trace of
/// the change that issued it (`traceparent`); the bus publishes it under a `mesh.publish`
/// producer span, a child of that one.
pub(crate) fn export_message(command: ExportCommand, traceparent: Option<&str>) -> Outgoing {
    let span = tracing::info_span!(
        "export send",
        target_connector = %command.target,
        idempotency_key = %command.idempotency_key,
        attempt = command.attempt,
    );
    if let Some(parent) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), parent.to_owned())]);
        let _ = mesh_runtime::telemetry::set_parent_from(&span, &carrier);
    }
    let mut message = Outgoing::event(
        format!("mesh.export.{}", command.target),
        format!("{}/{}", command.idempotency_key, command.attempt),
        command,
    );
    message.span = span;
    message
}

/// Projects again, at the wall clock, mesh objects whose grace period ended; returns how many.
pub async fn project_due_deletions(
    handler: &ProjectionHandler,
) -> Result<usize, mesh_bus::HandlerError> {
    let now = Utc::now();
    let due = projection::due_deletions(handler.stage().pool(), now, TIMER_BATCH)
        .await
        .map_err(mesh_stage::store_error)?;
    if due.is_empty() {
        return Ok(0);
    }
    let objects: BTreeMap<_, _> = due
        .iter()
        .map(|id| {
            (
                *id,
                Reason {
                    // The timer's own event: derived from the mesh object and the instant, so
                    // the audit rows of one pass share it.
                    cause: mesh_model::EventId::derive(
                        "grace-timer",
                        format!("{id}/{}", now.timestamp_millis()).as_bytes(),
                    ),
                    now,
                    again: true,
                    // A deletion that falls due starts no trace of its own.
                    traceparent: None,
                },
            )
        })
        .collect();
    project_and_commit(handler, &handler.rules(), &objects).await?;
    Ok(due.len())
}

/// Projects `objects` in a transaction of their own, commits, and wakes the dispatcher when
/// commands were queued; returns how many audit entries it wrote.
async fn project_and_commit(
    handler: &ProjectionHandler,
    rules: &mesh_engine::RuleSet,
    objects: &BTreeMap<mesh_model::MeshObjectId, Reason>,
) -> Result<usize, mesh_bus::HandlerError> {
    let mut tx = handler.stage().begin_without_inbox().await?;
    let projected = handler.project_objects(&mut tx, rules, objects).await?;
    let written = projected.entries.len();
    handler
        .stage()
        .commit(tx, &projected.entries, projected.sends)
        .await?;
    if projected.queued {
        handler.wake();
    }
    Ok(written)
}

/// Mesh objects per transaction of a rule-change sweep.
const SWEEP_PAGE: i64 = 200;

/// Projects every resolved mesh object again under `rules` (a version that just came into
/// force), a page at a time: objects enter or leave scopes, and targets receive
/// what the new outbound rules shape. Returns how many audit entries it wrote (one per scope
/// change and export command). The commands' cause is derived from the version and the
/// object, so two replicas sweeping at once record each command once (the second finds the
/// targets already up to date under the row locks).
pub async fn sweep(
    handler: &ProjectionHandler,
    rules: &mesh_engine::RuleSet,
) -> Result<usize, mesh_bus::HandlerError> {
    let version = rules.version();
    let mut after = None;
    let mut written = 0;
    loop {
        let ids =
            mesh_store::pipeline::mesh_object_ids_after(handler.stage().pool(), after, SWEEP_PAGE)
                .await
                .map_err(mesh_stage::store_error)?;
        let Some(last) = ids.last() else {
            return Ok(written);
        };
        after = Some(*last);
        let now = Utc::now();
        let objects: BTreeMap<_, _> = ids
            .iter()
            .map(|id| {
                let mut name = version.to_be_bytes().to_vec();
                name.extend_from_slice(id.as_uuid().as_bytes());
                let reason = Reason {
                    cause: mesh_model::EventId::derive("rules", &name),
                    now,
                    again: true,
                    traceparent: None,
                };
                (*id, reason)
            })
            .collect();
        written += project_and_commit(handler, rules, &objects).await?;
    }
}

/// Runs [`project_due_deletions`] every `interval` until `shutdown`.
pub(crate) async fn grace_timer(
    handler: &ProjectionHandler,
    interval: Duration,
    shutdown: CancellationToken,
) {
    loop {
        loop {
            match project_due_deletions(handler).await {
                Ok(n) if n < TIMER_BATCH as usize => break,
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(error = %error, "grace timer pass failed; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
