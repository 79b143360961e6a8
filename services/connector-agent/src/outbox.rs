//! The outbox relay: publishes change events committed to `connector_outbox` to
//! `MESH_CHANGES`, in commit order, and deletes them in the transaction that read them.
//!
//! A write wakes the relay at once (through [`RelayHandle::wake`]); a timer catches rows
//! written by another replica or left by a crash. One relay publishes at a time across
//! replicas (a transaction-scoped advisory lock), so events of one object keep their order.
//! A round deletes its rows (`DELETE … RETURNING`, one statement), publishes them, and commits
//! only once JetStream has accepted every one: while NATS is down the transaction rolls back,
//! the rows wait and the relay retries with backoff. A publish whose delete was lost in a crash
//! is repeated with the same `Nats-Msg-Id`, which JetStream drops as a duplicate. Published
//! events are kept by `MESH_CHANGES`, not here: a published row is never written again, which
//! halves what the outbox costs PostgreSQL per event.
//!
//! A row keeps the W3C traceparent of the request or import that wrote it, and the relay
//! publishes it from an `outbox relay` span continuing that trace, so that the SCIM request
//! and the stages after it are one trace although the publish happens in another task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mesh_bus::{Outgoing, Publisher};
use mesh_runtime::metrics::{MetricsRegistry, names};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::events::read_frames;

/// Advisory lock key of the relay ("mesh-outbox" as bytes, truncated).
const RELAY_LOCK: i64 = 0x6d65_7368_6f75_7462;

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// PostgreSQL failed.
    #[error("outbox query failed")]
    Store(#[from] sqlx::Error),
    /// JetStream did not accept a publish.
    #[error("publishing outbox rows failed")]
    Publish(#[from] mesh_bus::BusError),
    /// A framed row does not split into whole frames; it stays in the outbox.
    #[error("outbox row {seq} holds a truncated event frame")]
    Frames {
        /// The row.
        seq: i64,
    },
}

/// An unpublished outbox row: seq, msg_id, subject, payload, traceparent, framed (the payload
/// holds many events, see [`crate::events::insert_outbox_framed`]).
type PendingRow = (i64, String, String, Vec<u8>, Option<String>, bool);

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
        // The outbox is a queue: few live rows, many dead ones until autovacuum comes by, and
        // statistics that call it small, so PostgreSQL would read it with sequential scans
        // through every dead row, twice per round. Its primary key is the way in (set for
        // this transaction only).
        let (locked, _): (bool, String) = sqlx::query_as(
            "SELECT pg_try_advisory_xact_lock($1), set_config('enable_seqscan', 'off', true)",
        )
        .bind(RELAY_LOCK)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            // Another replica is publishing; it will take these rows too.
            return Ok(0);
        }
        // The oldest rows, while the events before each are fewer than the batch (a framed
        // row counts its events; the first row is always taken).
        let mut rows: Vec<PendingRow> = sqlx::query_as(
            "DELETE FROM connector_outbox WHERE seq IN ( \
               SELECT seq FROM ( \
                 SELECT seq, sum(events) OVER (ORDER BY seq) - events AS before \
                 FROM (SELECT seq, events FROM connector_outbox ORDER BY seq LIMIT $1) head \
               ) w WHERE before < $1) \
             RETURNING seq, msg_id, subject, payload, traceparent, framed",
        )
        .bind(self.batch)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            self.pending.set(0);
            return Ok(0);
        }
        // RETURNING follows no order; events publish in commit order.
        rows.sort_unstable_by_key(|row| row.0);
        let mut messages = Vec::with_capacity(rows.len());
        for (seq, msg_id, subject, payload, traceparent, framed) in rows {
            let span = tracing::info_span!("outbox relay", outbox.seq = seq);
            if let Some(parent) = traceparent {
                let carrier = HashMap::from([("traceparent".to_owned(), parent)]);
                let _ = mesh_runtime::telemetry::set_parent_from(&span, &carrier);
            }
            let payload = Bytes::from(payload);
            let events = if framed {
                read_frames(&payload).ok_or(RelayError::Frames { seq })?
            } else {
                vec![(msg_id, payload)]
            };
            messages.extend(events.into_iter().map(|(msg_id, payload)| {
                let mut message =
                    Outgoing::encode_raw(subject.clone(), msg_id, mesh_model_schema(), payload);
                message.span = span.clone();
                message
            }));
        }
        let published = messages.len();
        // Dropping `tx` on a failed publish rolls the delete back.
        self.publisher.publish_all(messages).await?;
        tx.commit().await?;
        self.published.inc_by(published as u64);
        tracing::debug!(events = published, "outbox rows published");
        Ok(published)
    }

    async fn count_pending(&self) -> Result<(), sqlx::Error> {
        let (pending,): (i64,) =
            sqlx::query_as("SELECT coalesce(sum(events), 0)::bigint FROM connector_outbox")
                .fetch_one(&self.pool)
                .await?;
        self.pending.set(pending);
        Ok(())
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
                && let Err(error) = self.count_pending().await
            {
                tracing::warn!(error = %error, "counting the outbox failed");
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
