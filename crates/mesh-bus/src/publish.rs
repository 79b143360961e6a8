//! Publishing mesh messages with their headers, and waiting until the stream has them.
//!
//! Every message is published under its own `mesh.publish` span (kind producer, OpenTelemetry
//! messaging attributes), a child of [`Outgoing::span`] that lasts until the stream
//! acknowledged it; the message carries that span's context, so the consumer's `mesh.consume`
//! span is its child and one change stays one trace across the stages.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use tracing::Instrument;

use crate::metrics::{BusMetrics, StreamLabels};
use crate::{BusError, headers};

/// A message ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The subject, e.g. `mesh.joined.corporate-ad`.
    pub subject: String,
    /// The deterministic message id: derived from the input event id and the stage, so a
    /// redelivered input republishes the same id.
    pub msg_id: String,
    /// The payload's protobuf type, e.g. `identitymesh.v1.CorrelatedChange`.
    pub schema: String,
    /// The encoded payload.
    pub payload: Bytes,
    /// The span the message is published from: the parent of its `mesh.publish` span, whose
    /// trace context the message carries.
    pub span: tracing::Span,
}

impl Outgoing {
    /// Encodes `message` for `subject`, carrying the current span's trace context.
    pub fn encode<M: prost::Message>(
        subject: impl Into<String>,
        msg_id: impl Into<String>,
        schema: impl Into<String>,
        message: &M,
    ) -> Self {
        Self {
            subject: subject.into(),
            msg_id: msg_id.into(),
            schema: schema.into(),
            payload: Bytes::from(message.encode_to_vec()),
            span: tracing::Span::current(),
        }
    }

    /// Wraps an already encoded payload, carrying the current span's trace context.
    pub fn encode_raw(
        subject: impl Into<String>,
        msg_id: impl Into<String>,
        schema: impl Into<String>,
        payload: impl Into<Bytes>,
    ) -> Self {
        Self {
            subject: subject.into(),
            msg_id: msg_id.into(),
            schema: schema.into(),
            payload: payload.into(),
            span: tracing::Span::current(),
        }
    }

    /// Encodes a domain event for `subject` with its `Mesh-Schema`, carrying the current span's
    /// trace context.
    pub fn event<E: mesh_proto::WireEvent>(
        subject: impl Into<String>,
        msg_id: impl Into<String>,
        event: E,
    ) -> Self {
        Self {
            subject: subject.into(),
            msg_id: msg_id.into(),
            schema: E::SCHEMA.to_owned(),
            payload: Bytes::from(event.into_wire()),
            span: tracing::Span::current(),
        }
    }

    /// The producer span of publishing this message, a child of [`Outgoing::span`] (a root
    /// when that span is not traced, e.g. an outbox row left by a crash).
    fn publish_span(&self) -> tracing::Span {
        tracing::info_span!(
            parent: &self.span,
            "mesh.publish",
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            messaging.system = "nats",
            messaging.operation = "publish",
            "messaging.operation.type" = "send",
            messaging.destination.name = %self.subject,
            messaging.message.id = %self.msg_id,
            messaging.message.body.size = self.payload.len(),
        )
    }

    fn headers(&self, publish_span: &tracing::Span) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(headers::MSG_ID, self.msg_id.as_str());
        headers.insert(headers::SCHEMA, self.schema.as_str());
        headers::inject_trace_context(publish_span, &mut headers);
        headers
    }
}

/// Publishes to JetStream and waits for the stream's acknowledgement.
#[derive(Debug, Clone)]
pub struct Publisher {
    jetstream: jetstream::Context,
    metrics: BusMetrics,
}

impl Publisher {
    /// Wraps a JetStream context.
    pub fn new(jetstream: jetstream::Context, metrics: BusMetrics) -> Self {
        Self { jetstream, metrics }
    }

    /// Publishes one message and waits until the stream stored it. Returns true if the stream
    /// saw the message id before (a duplicate it dropped).
    pub async fn publish(&self, message: Outgoing) -> Result<bool, BusError> {
        let acks = self.publish_all(std::iter::once(message)).await?;
        Ok(acks.first().copied().unwrap_or(false))
    }

    /// Publishes every message without waiting in between, then waits until the stream stored
    /// each one; this pipelining is what makes batch publishing fast. Returns, in order,
    /// whether each was a duplicate. On error some of the messages may be stored: publishing
    /// the same batch again is safe because the message ids are deterministic.
    pub async fn publish_all(
        &self,
        messages: impl IntoIterator<Item = Outgoing>,
    ) -> Result<Vec<bool>, BusError> {
        let mut pending = FuturesOrdered::new();
        for message in messages {
            let span = message.publish_span();
            let publish = PublishMessage::build()
                .headers(message.headers(&span))
                .payload(message.payload.clone());
            let ack = match self
                .jetstream
                .send_publish(message.subject.clone(), publish)
                .instrument(span.clone())
                .await
            {
                Ok(ack) => ack,
                Err(source) => {
                    span.record("otel.status_code", "ERROR");
                    return Err(BusError::Publish {
                        subject: message.subject.clone(),
                        source,
                    });
                }
            };
            let published = &self.metrics.published;
            // The span ends when the stream acknowledged the message.
            pending.push_back(async move {
                let acked = ack.await;
                if acked.is_err() {
                    span.record("otel.status_code", "ERROR");
                }
                acked
                    .map(|ack| {
                        published
                            .get_or_create(&StreamLabels { stream: ack.stream })
                            .inc();
                        ack.duplicate
                    })
                    .map_err(|source| BusError::Publish {
                        subject: message.subject,
                        source,
                    })
            });
        }
        let mut duplicates = Vec::with_capacity(pending.len());
        while let Some(result) = pending.next().await {
            duplicates.push(result?);
        }
        Ok(duplicates)
    }
}
