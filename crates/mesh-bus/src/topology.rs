//! The streams and durable consumers of the mesh, as one declarative table.
//!
//! [`Topology::mesh`] is DESIGN.md §2 in code. [`Topology::ensure`] creates what is missing and
//! updates what differs, so every service can call it at start without coordination; it never
//! deletes anything.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};

use crate::BusError;

/// One JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// The stream's name, e.g. `MESH_CHANGES`.
    pub name: String,
    /// The subjects it captures, e.g. `mesh.change.>`.
    pub subjects: Vec<String>,
    /// What it carries, for `nats stream info`.
    pub description: String,
    /// How long messages are kept.
    pub max_age: Duration,
    /// The window in which a repeated `Nats-Msg-Id` is dropped.
    pub duplicate_window: Duration,
}

/// One durable pull consumer: a stage reading a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerSpec {
    /// The stream it reads.
    pub stream: String,
    /// Its durable name, which is also the stage name in dead letters (`mesh.dlq.<durable>`)
    /// and the inbox's consumer column.
    pub durable: String,
    /// The subjects it reads, e.g. `mesh.change.>`.
    pub filter_subject: String,
    /// How long the server waits for an ack before redelivering.
    pub ack_wait: Duration,
    /// How many messages may be delivered and not yet acked.
    pub max_ack_pending: i64,
}

/// The streams and consumers of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Every stream.
    pub streams: Vec<StreamSpec>,
    /// Every durable consumer.
    pub consumers: Vec<ConsumerSpec>,
}

/// Stream names, as constants so that code never spells them twice.
pub mod streams {
    /// Change events from connector agents.
    pub const CHANGES: &str = "MESH_CHANGES";
    /// Correlated changes from the correlation service.
    pub const JOINED: &str = "MESH_JOINED";
    /// Mesh object changes from the flow service.
    pub const OBJECTS: &str = "MESH_OBJECTS";
    /// Export commands from the projection service.
    pub const EXPORTS: &str = "MESH_EXPORTS";
    /// Export results from provisioning agents.
    pub const RESULTS: &str = "MESH_RESULTS";
    /// Risk signals from anywhere.
    pub const SIGNALS: &str = "MESH_SIGNALS";
    /// Dead letters from every stage.
    pub const DLQ: &str = "MESH_DLQ";
}

/// Durable consumer names: one per stage.
pub mod consumers {
    /// correlation reads change events.
    pub const CORRELATION: &str = "correlation";
    /// correlation re-tries disconnectors when mesh objects change.
    pub const CORRELATION_REJOIN: &str = "correlation-rejoin";
    /// flow reads correlated changes.
    pub const FLOW: &str = "flow";
    /// projection reads mesh object changes.
    pub const PROJECTION: &str = "projection";
    /// projection reads export results.
    pub const PROJECTION_RESULTS: &str = "projection-results";
    /// provisioning agents read export commands.
    pub const PROVISIONING: &str = "provisioning";
    /// risk reads signals.
    pub const RISK_SIGNALS: &str = "risk-signals";
    /// risk reads lifecycle changes of mesh objects.
    pub const RISK_LIFECYCLE: &str = "risk-lifecycle";
}

const DAY: Duration = Duration::from_secs(86_400);

impl StreamSpec {
    /// A stream with the mesh's defaults: file storage, limits retention, 7 days, a 2-minute
    /// duplicate window.
    pub fn new(name: &str, subject: &str, description: &str) -> Self {
        Self {
            name: name.to_owned(),
            subjects: vec![subject.to_owned()],
            description: description.to_owned(),
            max_age: 7 * DAY,
            duplicate_window: Duration::from_secs(120),
        }
    }

    fn config(&self) -> stream::Config {
        stream::Config {
            name: self.name.clone(),
            subjects: self.subjects.clone(),
            description: Some(self.description.clone()),
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            discard: stream::DiscardPolicy::Old,
            max_age: self.max_age,
            duplicate_window: self.duplicate_window,
            allow_direct: true,
            ..Default::default()
        }
    }
}

impl ConsumerSpec {
    /// A consumer with the mesh's defaults: 30 s ack wait, 10,000 messages in flight.
    pub fn new(stream: &str, durable: &str, filter_subject: &str) -> Self {
        Self {
            stream: stream.to_owned(),
            durable: durable.to_owned(),
            filter_subject: filter_subject.to_owned(),
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 10_000,
        }
    }

    fn config(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(self.durable.clone()),
            filter_subject: self.filter_subject.clone(),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            // Unlimited on the server: the consume loop bounds deliveries itself so that it can
            // tell a failing message (dead-lettered after `max_deliver`) from a failing
            // dependency (retried until it recovers).
            max_deliver: -1,
            max_ack_pending: self.max_ack_pending,
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        }
    }

    /// Opens this consumer, creating or updating it first.
    pub async fn open(
        &self,
        jetstream: &jetstream::Context,
    ) -> Result<consumer::PullConsumer, BusError> {
        jetstream
            .create_consumer_on_stream(self.config(), self.stream.as_str())
            .await
            .map_err(|source| BusError::Consumer {
                stream: self.stream.clone(),
                consumer: self.durable.clone(),
                source,
            })
    }
}

impl Topology {
    /// The mesh's streams and consumers (DESIGN.md §2).
    pub fn mesh() -> Self {
        use consumers as c;
        use streams as s;
        let mut dlq = StreamSpec::new(
            s::DLQ,
            "mesh.dlq.>",
            "messages a stage gave up on, with the reason (DeadLetter)",
        );
        dlq.max_age = 30 * DAY;
        Self {
            streams: vec![
                StreamSpec::new(
                    s::CHANGES,
                    "mesh.change.>",
                    "connector object changes from connector agents (ChangeEvent)",
                ),
                StreamSpec::new(
                    s::JOINED,
                    "mesh.joined.>",
                    "correlated changes from correlation (CorrelatedChange)",
                ),
                StreamSpec::new(
                    s::OBJECTS,
                    "mesh.object.>",
                    "resolved mesh object changes from flow (MeshObjectChanged)",
                ),
                StreamSpec::new(
                    s::EXPORTS,
                    "mesh.export.>",
                    "export commands from projection (ExportCommand)",
                ),
                StreamSpec::new(
                    s::RESULTS,
                    "mesh.result.>",
                    "export results from provisioning agents (ExportResult)",
                ),
                StreamSpec::new(s::SIGNALS, "mesh.signal.>", "risk signals (RiskSignal)"),
                dlq,
            ],
            consumers: vec![
                ConsumerSpec::new(s::CHANGES, c::CORRELATION, "mesh.change.>"),
                ConsumerSpec::new(s::OBJECTS, c::CORRELATION_REJOIN, "mesh.object.>"),
                ConsumerSpec::new(s::JOINED, c::FLOW, "mesh.joined.>"),
                ConsumerSpec::new(s::OBJECTS, c::PROJECTION, "mesh.object.>"),
                ConsumerSpec::new(s::RESULTS, c::PROJECTION_RESULTS, "mesh.result.>"),
                ConsumerSpec::new(s::EXPORTS, c::PROVISIONING, "mesh.export.>"),
                ConsumerSpec::new(s::SIGNALS, c::RISK_SIGNALS, "mesh.signal.>"),
                ConsumerSpec::new(s::OBJECTS, c::RISK_LIFECYCLE, "mesh.object.>"),
            ],
        }
    }

    /// Sets every consumer's ack wait: how long JetStream waits for an ack before redelivering
    /// (`bus.ack_wait`). A batch must be handled well within it.
    pub fn with_ack_wait(mut self, ack_wait: Duration) -> Self {
        for consumer in &mut self.consumers {
            consumer.ack_wait = ack_wait;
        }
        self
    }

    /// Returns the consumer with durable name `durable`.
    pub fn consumer(&self, durable: &str) -> Option<&ConsumerSpec> {
        self.consumers.iter().find(|c| c.durable == durable)
    }

    /// Creates every stream and consumer that is missing and updates those whose configuration
    /// differs. Idempotent.
    pub async fn ensure(&self, jetstream: &jetstream::Context) -> Result<(), BusError> {
        for spec in &self.streams {
            jetstream
                .create_or_update_stream(spec.config())
                .await
                .map_err(|source| BusError::Stream {
                    stream: spec.name.clone(),
                    source,
                })?;
            tracing::debug!(stream = %spec.name, "stream ensured");
        }
        for spec in &self.consumers {
            spec.open(jetstream).await?;
            tracing::debug!(stream = %spec.stream, consumer = %spec.durable, "consumer ensured");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_consumer_reads_a_declared_stream_and_subjects_do_not_overlap() {
        let topology = Topology::mesh();
        for consumer in &topology.consumers {
            let stream = topology
                .streams
                .iter()
                .find(|s| s.name == consumer.stream)
                .unwrap();
            assert_eq!(stream.subjects, vec![consumer.filter_subject.clone()]);
        }
        let mut prefixes: Vec<_> = topology
            .streams
            .iter()
            .map(|s| s.subjects[0].clone())
            .collect();
        prefixes.sort();
        prefixes.dedup();
        assert_eq!(prefixes.len(), topology.streams.len());
    }
}
