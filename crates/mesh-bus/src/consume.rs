//! The micro-batch consume loop every stage runs.
//!
//! ```text
//! pull ─▶ batch (≤ N messages, ≤ T after the first) ─▶ handler ─Ok─▶ ack all
//!                                                        │
//!                          Transient (a dependency is down) ─▶ hold, retry in place with backoff
//!                          Failed / Poison, batch of many ─▶ retry each message alone
//!                          Failed, alone, < max_deliver    ─▶ nak with backoff
//!                          Failed ≥ max_deliver, or Poison ─▶ MESH_DLQ, then term
//! ```
//!
//! Invariants:
//! - A message is acked only after the handler returned Ok for a batch holding it, so its
//!   effect is durable before JetStream forgets it (the handler commits before returning).
//! - A failing message never blocks the ones behind it: a failed batch is split and each
//!   message retried alone, so only the poison one is naked and, after its bounded deliveries,
//!   dead-lettered; a dead letter is stored before the original is terminated.
//! - A failing dependency (PostgreSQL down) is not the message's fault: on [`HandlerError::
//!   Transient`] the loop keeps the batch, marks it in progress and retries it with backoff
//!   until it succeeds, however long the outage; it never dead-letters for that, and the
//!   messages behind the batch do not overtake it.
//! - Order survives a crash and a broken pull: a new instance that finds messages delivered
//!   and not acked, or pull requests still open (its predecessor died holding them), and a
//!   loop whose pull was interrupted (messages it had received are dropped with it), wait
//!   until those expire and come back (pull expiry plus ack wait) before pulling again, so
//!   JetStream delivers them first. Only a message that fails on its own is retried after the
//!   ones behind it.
//! - A handler panic is caught and treated as [`HandlerError::Failed`].
//! - On shutdown the loop stops pulling, finishes the batch in hand (handler, acks), and
//!   returns; unacked messages are redelivered to the next instance.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use chrono::Utc;
use futures::{FutureExt, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::ConsumerLabels;
use crate::publish::Outgoing;
use crate::topology::ConsumerSpec;
use crate::{Bus, BusError, headers};

/// A boxed error, as handlers return them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a handler could not process a batch.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A dependency failed (PostgreSQL unreachable, a serialization conflict): retry the whole
    /// batch later; never dead-letter for this.
    #[error("transient failure")]
    Transient(#[source] BoxError),
    /// Processing failed and may fail again: retry each message alone, and dead-letter one
    /// that still fails after the bounded deliveries.
    #[error("processing failed")]
    Failed(#[source] BoxError),
    /// A message can never be processed (it does not decode, it breaks an invariant):
    /// dead-letter it at once.
    #[error("poison message")]
    Poison(#[source] BoxError),
}

impl HandlerError {
    /// Wraps `error` as [`HandlerError::Transient`].
    pub fn transient(error: impl Into<BoxError>) -> Self {
        Self::Transient(error.into())
    }

    /// Wraps `error` as [`HandlerError::Failed`].
    pub fn failed(error: impl Into<BoxError>) -> Self {
        Self::Failed(error.into())
    }

    /// Wraps `error` as [`HandlerError::Poison`].
    pub fn poison(error: impl Into<BoxError>) -> Self {
        Self::Poison(error.into())
    }

    /// Renders the error with its whole source chain, for dead letters and logs.
    pub fn reason(&self) -> String {
        let mut reason = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(error) = source {
            reason.push_str(": ");
            reason.push_str(&error.to_string());
            source = error.source();
        }
        reason
    }
}

/// Processes batches of deliveries. The handler must make its effect durable (commit) before
/// returning Ok, and should use the inbox so that a redelivered message has no second effect.
pub trait BatchHandler: Send + Sync {
    /// Handles one batch; all of it succeeds or none of it does.
    fn handle(&self, batch: &[Delivery]) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// How a consume loop batches and retries.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// The most messages in one batch.
    pub batch_size: usize,
    /// How long to wait for more messages after the first one of a batch arrived. Zero takes
    /// whatever is already buffered, for the lowest latency.
    pub batch_wait: Duration,
    /// How many deliveries a failing message gets before it is dead-lettered.
    pub max_deliver: u32,
    /// The nak delay after the first, second, ... failed delivery; the last one repeats.
    pub backoff: Vec<Duration>,
    /// Consume loops run side by side on the consumer, each handling its own batches: more
    /// throughput when a batch waits on round trips more than on CPU. With more than one,
    /// batches of one consumer run concurrently, so the handler must lock what it changes and
    /// tolerate a change overtaken by a newer one (docs/pipeline.md).
    pub workers: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            batch_size: 256,
            batch_wait: Duration::from_millis(5),
            max_deliver: 5,
            backoff: vec![
                Duration::from_millis(100),
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(10),
                Duration::from_secs(30),
            ],
            workers: 1,
        }
    }
}

impl ConsumerSettings {
    fn backoff_for(&self, delivered: u32) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(usize::MAX);
        self.backoff
            .get(index)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(Duration::from_secs(1))
    }
}

/// One message delivered to a stage, with the span that traces its processing.
#[derive(Debug)]
pub struct Delivery {
    message: jetstream::Message,
    span: tracing::Span,
    stream_sequence: u64,
    delivered: u32,
    pending: u64,
}

impl Delivery {
    fn new(message: jetstream::Message, consumer: &str) -> Self {
        let (stream_sequence, delivered, pending) = message
            .info()
            .map(|info| {
                (
                    info.stream_sequence,
                    u32::try_from(info.delivered).unwrap_or(u32::MAX),
                    info.pending,
                )
            })
            .unwrap_or((0, 1, 0));
        // Semantic conventions for messaging: the span lasts from receipt to the ack, so its
        // operation is `process`; its parent is the producer's `mesh.publish` span.
        let span = tracing::info_span!(
            "mesh.consume",
            otel.kind = "consumer",
            messaging.system = "nats",
            messaging.operation = "process",
            "messaging.operation.type" = "process",
            messaging.destination.name = %message.subject,
            messaging.consumer.group.name = consumer,
            messaging.message.id = tracing::field::Empty,
            delivered,
        );
        if let Some(headers) = &message.headers {
            headers::set_parent_from_headers(&span, headers);
            if let Some(id) = headers.get(headers::MSG_ID) {
                span.record("messaging.message.id", id.as_str());
            }
        }
        Self {
            message,
            span,
            stream_sequence,
            delivered,
            pending,
        }
    }

    /// Returns the subject it was published on.
    pub fn subject(&self) -> &str {
        self.message.subject.as_str()
    }

    /// Returns the payload.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// Returns a header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.message
            .headers
            .as_ref()
            .and_then(|h| h.get(name))
            .map(|v| v.as_str())
    }

    /// Returns the `Nats-Msg-Id`, the key for the inbox; falls back to the stream sequence for
    /// a message published without one.
    pub fn msg_id(&self) -> std::borrow::Cow<'_, str> {
        match self.header(headers::MSG_ID) {
            Some(id) => std::borrow::Cow::Borrowed(id),
            None => std::borrow::Cow::Owned(format!("seq:{}", self.stream_sequence)),
        }
    }

    /// Returns the `Mesh-Schema` header.
    pub fn schema(&self) -> Option<&str> {
        self.header(headers::SCHEMA)
    }

    /// Returns its sequence in the stream.
    pub fn stream_sequence(&self) -> u64 {
        self.stream_sequence
    }

    /// Returns how many times it has been delivered, this time included.
    pub fn delivered(&self) -> u32 {
        self.delivered
    }

    /// Returns the span of its processing, a child of the producer's span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Decodes the payload as `M`; a failure is [`HandlerError::Poison`].
    pub fn decode<M: prost::Message + Default>(&self) -> Result<M, HandlerError> {
        M::decode(self.payload()).map_err(|e| {
            HandlerError::poison(format!(
                "payload on {} is not a valid {}: {e}",
                self.subject(),
                std::any::type_name::<M>()
            ))
        })
    }

    /// Decodes the payload as the domain event `E`, checking every field; a failure is
    /// [`HandlerError::Poison`].
    pub fn decode_event<E: mesh_proto::WireEvent>(&self) -> Result<E, HandlerError> {
        E::from_wire(self.payload()).map_err(|e| {
            HandlerError::poison(format!(
                "payload on {} (stream sequence {}) is not a valid {}: {e}",
                self.subject(),
                self.stream_sequence,
                E::SCHEMA
            ))
        })
    }

    async fn ack(&self, kind: AckKind) {
        if let Err(error) = self.message.ack_with(kind).await {
            // The message will be redelivered; the inbox makes that harmless.
            tracing::warn!(error = %error, subject = %self.subject(), "ack not sent");
        }
    }
}

/// Runs the consume loop of `spec` with `handler` until `shutdown` is cancelled.
pub async fn run_consumer<H: BatchHandler>(
    bus: &Bus,
    spec: &ConsumerSpec,
    settings: &ConsumerSettings,
    handler: &H,
    shutdown: CancellationToken,
) -> Result<(), BusError> {
    let runner = |first: bool| Runner {
        bus,
        spec,
        settings,
        handler,
        shutdown: shutdown.clone(),
        first,
    };
    // The first loop opens the consumer and waits out what a dead instance holds; the others
    // start after it, so they neither pull early nor wait for the first one's pull requests.
    let first = runner(true);
    let Some(consumer) = first.open_and_wait(&shutdown).await? else {
        return Ok(());
    };
    let others = (1..settings.workers.max(1)).map(|_| {
        let runner = runner(false);
        let shutdown = shutdown.clone();
        async move { runner.run(shutdown).await }
    });
    let (first, others) = tokio::join!(
        first.consume(consumer, shutdown.clone()),
        futures::future::try_join_all(others)
    );
    first?;
    others?;
    Ok(())
}

struct Runner<'a, H> {
    bus: &'a Bus,
    spec: &'a ConsumerSpec,
    settings: &'a ConsumerSettings,
    handler: &'a H,
    shutdown: CancellationToken,
    /// Whether this loop waits out a dead instance's messages (only the first of a consumer).
    first: bool,
}

impl<H: BatchHandler> Runner<'_, H> {
    async fn run(&self, shutdown: CancellationToken) -> Result<(), BusError> {
        match self.open_and_wait(&shutdown).await? {
            Some(consumer) => self.consume(consumer, shutdown).await,
            None => Ok(()),
        }
    }

    /// Opens the consumer and, for the first loop, waits out what a dead instance holds.
    /// Returns None on shutdown.
    async fn open_and_wait(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<jetstream::consumer::PullConsumer>, BusError> {
        let Some(mut consumer) = self.open_until_ready(shutdown).await? else {
            return Ok(None);
        };
        if self.first && self.wait_for_held_messages(&mut consumer, shutdown).await {
            return Ok(None);
        }
        Ok(Some(consumer))
    }

    async fn consume(
        &self,
        mut consumer: jetstream::consumer::PullConsumer,
        shutdown: CancellationToken,
    ) -> Result<(), BusError> {
        tracing::info!(consumer = %self.spec.durable, stream = %self.spec.stream, "consuming");
        let mut lag_refresh = tokio::time::interval(LAG_REFRESH);
        lag_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        'pull: while !shutdown.is_cancelled() {
            let mut messages = match consumer
                .stream()
                .max_messages_per_batch(self.settings.batch_size.saturating_mul(2).max(1))
                .heartbeat(PULL_HEARTBEAT)
                .expires(PULL_EXPIRES)
                .messages()
                .await
            {
                Ok(messages) => messages,
                Err(source) => {
                    let error = BusError::Pull {
                        consumer: self.spec.durable.clone(),
                        source,
                    };
                    tracing::warn!(error = %error, "pull failed; retrying");
                    if sleep_or_cancel(Duration::from_millis(500), &shutdown).await {
                        break;
                    }
                    continue;
                }
            };
            loop {
                let first = tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break 'pull,
                    next = messages.next() => next,
                    // An idle or stalled stage still reports its lag from the server.
                    _ = lag_refresh.tick() => {
                        self.refresh_lag(&mut consumer).await;
                        continue;
                    }
                };
                let mut batch = Vec::with_capacity(self.settings.batch_size);
                let mut broken = false;
                match first {
                    Some(Ok(message)) => batch.push(Delivery::new(message, &self.spec.durable)),
                    Some(Err(error)) => {
                        tracing::warn!(error = %error, consumer = %self.spec.durable, "pull interrupted; reopening");
                        broken = true;
                    }
                    None => broken = true,
                }
                let deadline = Instant::now() + self.settings.batch_wait;
                while !broken && batch.len() < self.settings.batch_size {
                    match tokio::time::timeout_at(deadline, messages.next()).await {
                        Ok(Some(Ok(message))) => {
                            batch.push(Delivery::new(message, &self.spec.durable));
                        }
                        Ok(Some(Err(error))) => {
                            tracing::warn!(error = %error, consumer = %self.spec.durable, "pull interrupted; reopening");
                            broken = true;
                        }
                        Ok(None) => broken = true,
                        Err(_elapsed) => break,
                    }
                }
                if !batch.is_empty() {
                    self.process(batch).await;
                }
                if broken {
                    if sleep_or_cancel(Duration::from_millis(200), &shutdown).await {
                        break 'pull;
                    }
                    // Messages the interrupted pull had delivered and this loop never handled
                    // come back after the ack wait: wait for them, so that they keep their
                    // place before the messages behind them.
                    if self.wait_for_held_messages(&mut consumer, &shutdown).await {
                        break 'pull;
                    }
                    continue 'pull;
                }
            }
        }
        tracing::info!(consumer = %self.spec.durable, "consumer stopped");
        Ok(())
    }

    /// When messages were delivered and not acked (an instance died holding a batch), waits
    /// until JetStream makes them deliverable again (the ack wait), so that they are delivered
    /// before the messages behind them and changes keep their order. Returns true on shutdown.
    async fn wait_for_held_messages(
        &self,
        consumer: &mut jetstream::consumer::PullConsumer,
        shutdown: &CancellationToken,
    ) -> bool {
        let (held, waiting) = match consumer.info().await {
            Ok(info) => (info.num_ack_pending, info.num_waiting),
            Err(_) => return false,
        };
        if held == 0 && waiting == 0 {
            return false;
        }
        // Messages delivered and not acked, or pull requests still open (a dead client's keep
        // receiving messages until they expire): wait until all of those are deliverable
        // again, so that they are delivered first.
        let wait = PULL_EXPIRES + self.spec.ack_wait + HELD_GRACE;
        tracing::info!(
            consumer = %self.spec.durable,
            held,
            waiting,
            wait = ?wait,
            "another instance holds messages or pull requests; waiting so that order is kept"
        );
        sleep_or_cancel(wait, shutdown).await
    }

    /// Sets the lag gauge from the server's count of messages not yet delivered.
    async fn refresh_lag(&self, consumer: &mut jetstream::consumer::PullConsumer) {
        match consumer.info().await {
            Ok(info) => {
                let pending = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                self.bus
                    .metrics()
                    .pending
                    .get_or_create(&ConsumerLabels {
                        consumer: self.spec.durable.clone(),
                    })
                    .set(pending);
            }
            Err(error) => {
                tracing::debug!(error = %error, consumer = %self.spec.durable, "consumer info unavailable");
            }
        }
    }

    /// Opens the consumer, retrying while NATS is unreachable. Returns None on shutdown.
    async fn open_until_ready(
        &self,
        shutdown: &CancellationToken,
    ) -> Result<Option<jetstream::consumer::PullConsumer>, BusError> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.spec.open(self.bus.jetstream()).await {
                Ok(consumer) => return Ok(Some(consumer)),
                Err(error) => {
                    tracing::warn!(error = %error, consumer = %self.spec.durable, "consumer not available yet; retrying");
                }
            }
            if sleep_or_cancel(delay, shutdown).await {
                return Ok(None);
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    async fn process(&self, batch: Vec<Delivery>) {
        let labels = ConsumerLabels {
            consumer: self.spec.durable.clone(),
        };
        let metrics = self.bus.metrics();
        let started = std::time::Instant::now();
        metrics
            .consumed
            .get_or_create(&labels)
            .inc_by(batch.len() as u64);
        metrics
            .batch_size
            .get_or_create(&labels)
            .observe(batch.len() as f64);
        if let Some(last) = batch.last() {
            metrics
                .pending
                .get_or_create(&labels)
                .set(i64::try_from(last.pending).unwrap_or(i64::MAX));
        }
        self.process_batch(batch, &labels).await;
        metrics
            .batch_duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
    }

    async fn process_batch(&self, batch: Vec<Delivery>, labels: &ConsumerLabels) {
        let metrics = self.bus.metrics();
        let span = tracing::info_span!(
            "mesh.batch",
            consumer = %self.spec.durable,
            size = batch.len()
        );
        // The batch may hold messages of many traces: it links to each message's span (as the
        // messaging conventions do for batch processing) instead of joining one trace.
        for delivery in &batch {
            span.follows_from(delivery.span());
        }
        let mut result = self.call_handler(&batch).instrument(span.clone()).await;
        // A failing dependency is retried in place, holding the batch (and telling JetStream
        // it is in progress): naking it would let the messages behind it overtake it.
        let mut attempt = 0_u32;
        while let Err(HandlerError::Transient(error)) = &result {
            attempt = attempt.saturating_add(1);
            tracing::warn!(parent: &span, error = %error, consumer = %self.spec.durable, attempt, "dependency failed; retrying the batch");
            let delay = self
                .settings
                .backoff_for(attempt)
                .min(self.spec.ack_wait / 2);
            for delivery in &batch {
                delivery.ack(AckKind::Progress).await;
            }
            if sleep_or_cancel(delay, &self.shutdown).await {
                // Shutting down: hand the batch back for the next instance.
                for delivery in &batch {
                    delivery.ack(AckKind::Nak(None)).await;
                }
                metrics
                    .nacked
                    .get_or_create(labels)
                    .inc_by(batch.len() as u64);
                return;
            }
            result = self.call_handler(&batch).instrument(span.clone()).await;
        }
        match result {
            Ok(()) => {
                for delivery in &batch {
                    delivery.ack(AckKind::Ack).await;
                }
                metrics
                    .acked
                    .get_or_create(labels)
                    .inc_by(batch.len() as u64);
            }
            Err(HandlerError::Transient(_)) => {}
            Err(error) if batch.len() > 1 => {
                tracing::info!(parent: &span, error = %error.reason(), "batch failed; retrying each message alone");
                for delivery in batch {
                    Box::pin(self.process_batch(vec![delivery], labels)).await;
                }
            }
            Err(error) => {
                let Some(delivery) = batch.into_iter().next() else {
                    return;
                };
                let give_up = matches!(error, HandlerError::Poison(_))
                    || delivery.delivered >= self.settings.max_deliver;
                if give_up {
                    if self.dead_letter(&delivery, &error).await {
                        metrics.dead_lettered.get_or_create(labels).inc();
                    } else {
                        metrics.nacked.get_or_create(labels).inc();
                    }
                } else {
                    let delay = self.settings.backoff_for(delivery.delivered);
                    tracing::info!(parent: delivery.span(), error = %error.reason(), delivered = delivery.delivered, "message failed; will retry");
                    delivery.ack(AckKind::Nak(Some(delay))).await;
                    metrics.nacked.get_or_create(labels).inc();
                }
            }
        }
    }

    async fn call_handler(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        match AssertUnwindSafe(self.handler.handle(batch))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(HandlerError::failed(format!("handler panicked: {what}")))
            }
        }
    }

    /// Stores the message in MESH_DLQ, then terminates it. If the dead letter cannot be stored
    /// the message is naked instead, so nothing is lost. Returns whether it was dead-lettered.
    async fn dead_letter(&self, delivery: &Delivery, error: &HandlerError) -> bool {
        let reason = error.reason();
        let letter = mesh_model::DeadLetter {
            stage: self.spec.durable.clone(),
            subject: delivery.subject().to_owned(),
            stream: self.spec.stream.clone(),
            stream_sequence: delivery.stream_sequence,
            schema: delivery.schema().map(str::to_owned),
            headers: delivery
                .message
                .headers
                .as_ref()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|(name, values)| {
                            (
                                name.to_string(),
                                values.iter().map(|v| v.as_str().to_owned()).collect(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            payload: delivery.payload().to_vec(),
            reason: reason.clone(),
            attempts: delivery.delivered,
            failed_at: Utc::now(),
        };
        let mut outgoing = Outgoing::event(
            format!("mesh.dlq.{}", self.spec.durable),
            format!(
                "dlq:{}:{}:{}",
                self.spec.durable, self.spec.stream, delivery.stream_sequence
            ),
            letter,
        );
        outgoing.span = delivery.span.clone();
        match self.bus.publisher().publish(outgoing).await {
            Ok(_) => {
                tracing::warn!(parent: delivery.span(), reason = %reason, attempts = delivery.delivered, consumer = %self.spec.durable, "message dead-lettered");
                delivery.ack(AckKind::Term).await;
                true
            }
            Err(publish_error) => {
                tracing::error!(parent: delivery.span(), error = %publish_error, "dead letter not stored; retrying message");
                let delay = self.settings.backoff_for(delivery.delivered);
                delivery.ack(AckKind::Nak(Some(delay))).await;
                false
            }
        }
    }
}

/// How often an idle consume loop asks the server for its lag.
const LAG_REFRESH: Duration = Duration::from_secs(10);

/// Slack after the ack wait before held messages are surely deliverable again.
const HELD_GRACE: Duration = Duration::from_millis(500);

/// How long one pull request lives. Short, because the server keeps delivering to the pull
/// request of a client that died until it expires; a new instance waits that long (plus the
/// ack wait) before pulling, so those messages come back before the ones behind them.
const PULL_EXPIRES: Duration = Duration::from_secs(6);

/// Idle heartbeat on a pull request, to notice a lost connection (at most half the expiry; a
/// busy machine misses short ones, and every miss costs a wait for the held messages).
const PULL_HEARTBEAT: Duration = Duration::from_secs(3);

/// Sleeps for `duration`; returns true if `shutdown` was cancelled first.
async fn sleep_or_cancel(duration: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = shutdown.cancelled() => true,
        () = tokio::time::sleep(duration) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_repeats_its_last_step() {
        let settings = ConsumerSettings {
            backoff: vec![Duration::from_millis(1), Duration::from_millis(2)],
            ..ConsumerSettings::default()
        };
        assert_eq!(settings.backoff_for(1), Duration::from_millis(1));
        assert_eq!(settings.backoff_for(2), Duration::from_millis(2));
        assert_eq!(settings.backoff_for(9), Duration::from_millis(2));
        assert_eq!(settings.backoff_for(0), Duration::from_millis(1));
    }

    #[test]
    fn reason_includes_the_source_chain() {
        let io = std::io::Error::other("disk on fire");
        let error = HandlerError::failed(io);
        assert_eq!(error.reason(), "processing failed: disk on fire");
    }
}
