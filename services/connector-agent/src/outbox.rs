//! The outbox relay: publishes change events committed to `connector_outbox` to
//! `MESH_CHANGES`, in commit order, then marks them sent.
//!
//! A write wakes the relay at once (through [`RelayHandle::wake`]); a timer catches rows
//! written by another replica or left by a crash. One relay publishes at a time across
//! replicas (a transaction-scoped advisory lock), so events of one object keep their order.
//! While NATS is down rows wait and the relay retries with backoff; a publish whose mark was
//! lost is repeated with the same `Nats-Msg-Id`, which JetStream drops as a duplicate.
//!
//! A row keeps the W3C traceparent of the request or import that wrote it, and the relay
//! publishes it from an `outbox relay` span continuing that trace, so that the SCIM request
//! and the stages after it are one trace although the publish happens in another task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use mesh_bus::{Outgoing, Publisher};
use mesh_runtime::metrics::{MetricsRegistry, names};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Advisory lock key of the relay ("mesh-outbox" as bytes, truncated).
const RELAY_LOCK: i64 = 0x6d65_7368_6f75_7462;

/// How long published rows are kept, for inspection, before they are pruned.
const KEEP_PUBLISHED: Duration = Duration::from_secs(3600);

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// PostgreSQL failed.
    #[error("outbox query failed")]
    Store(#[from] sqlx::Error),
    /// JetStream did not accept a publish.
    #[error("publishing outbox rows failed")]
    Publish(#[from] mesh_bus::BusError),
}

/// An unpublished outbox row: seq, msg_id, subject, payload, traceparent.
type PendingRow = (i64, String, String, Vec<u8>, Option<String>);

/// Wakes the relay after a commit.
#[derive(Debug, Clone, Default)]
pub struct RelayHandle(Arc<Notify>);

impl RelayHandle {
    /// Tells the relay that rows were committed.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The relay task.
#[derive(Debug)]
pub struct Relay {
    pool: PgPool,
    publisher: Publisher,
    handle: RelayHandle,
    batch: i64,
    interval: Duration,
    published: Counter,
    pending: Gauge,
}

impl Relay {
    /// Builds a relay publishing with `publisher`.
    pub fn new(
        pool: PgPool,
        publisher: Publisher,
        batch: usize,
        interval: Duration,
        metrics: &MetricsRegistry,
    ) -> Self {
        Self {
            pool,
            publisher,
            handle: RelayHandle::default(),
            batch: i64::try_from(batch.max(1)).unwrap_or(1000),
            interval,
            published: metrics.register(&names::CONNECTOR_OUTBOX_PUBLISHED, Counter::default()),
            pending: metrics.register(&names::CONNECTOR_OUTBOX_PENDING, Gauge::default()),
        }
    }

    /// The handle writers use to wake the relay.
    pub fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }

    /// Publishes every pending row, batch by batch; returns how many were published.
    pub async fn publish_pending(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let n = self.publish_batch().await?;
            total += n;
            if n < usize::try_from(self.batch).unwrap_or(usize::MAX) {
                return Ok(total);
            }
        }
    }

    async fn publish_batch(&self) -> Result<usize, RelayError> {
        let mut tx = self.pool.begin().await?;
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            // Another replica is publishing; it will take these rows too.
            return Ok(0);
        }
        let rows: Vec<PendingRow> = sqlx::query_as(
            "SELECT seq, msg_id, subject, payload, traceparent FROM connector_outbox \
             WHERE published_at IS NULL ORDER BY seq LIMIT $1",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            self.pending.set(0);
            return Ok(0);
        }
        let seqs: Vec<i64> = rows.iter().map(|r| r.0).collect();
        let messages = rows
            .into_iter()
            .map(|(seq, msg_id, subject, payload, traceparent)| {
                let span = tracing::info_span!("outbox relay", outbox.seq = seq);
                if let Some(parent) = traceparent {
                    let carrier = HashMap::from([("traceparent".to_owned(), parent)]);
                    let _ = mesh_runtime::telemetry::set_parent_from(&span, &carrier);
                }
                let mut message =
                    Outgoing::encode_raw(subject, msg_id, mesh_model_schema(), payload);
                message.span = span;
                message
            });
        self.publisher.publish_all(messages).await?;
        sqlx::query("UPDATE connector_outbox SET published_at = now() WHERE seq = ANY($1)")
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.published.inc_by(seqs.len() as u64);
        tracing::debug!(events = seqs.len(), "outbox rows published");
        Ok(seqs.len())
    }

    async fn prune(&self) -> Result<u64, sqlx::Error> {
        let result = sqlx::query(
            "DELETE FROM connector_outbox WHERE published_at < now() - make_interval(secs => $1)",
        )
        .bind(KEEP_PUBLISHED.as_secs_f64())
        .execute(&self.pool)
        .await?;
        let (pending,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM connector_outbox WHERE published_at IS NULL")
                .fetch_one(&self.pool)
                .await?;
        self.pending.set(pending);
        Ok(result.rows_affected())
    }

    /// Runs until `shutdown`, then makes one last attempt to publish what is pending.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        let mut rounds: u64 = 0;
        loop {
            match self.publish_pending().await {
                Ok(_) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), retry_in = ?backoff, "outbox relay round failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            rounds += 1;
            if rounds.is_multiple_of(60)
                && let Err(error) = self.prune().await
            {
                tracing::warn!(error = %error, "pruning the outbox failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.handle.0.notified() => {}
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        match tokio::time::timeout(Duration::from_secs(5), self.publish_pending()).await {
            Ok(Ok(n)) => tracing::info!(events = n, "outbox relay drained"),
            Ok(Err(error)) => {
                tracing::warn!(error = %error_chain(&error), "outbox relay stopped with rows pending; they publish on the next start");
            }
            Err(_) => tracing::warn!(
                "outbox relay drain timed out; pending rows publish on the next start"
            ),
        }
    }
}

fn mesh_model_schema() -> &'static str {
    <mesh_model::ChangeEvent as mesh_proto::WireEvent>::SCHEMA
}

/// Renders an error with its sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
