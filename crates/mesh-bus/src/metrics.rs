//! The bus's metrics, labelled by consumer (stage) or stream. Names live in
//! `mesh_runtime::metrics::names`.

use mesh_runtime::metrics::{MetricsRegistry, names};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

/// Labels of per-consumer metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// The durable consumer (stage), e.g. `correlation`.
    pub consumer: String,
}

/// Labels of publish metrics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StreamLabels {
    /// The stream that stored the message, e.g. `MESH_JOINED`.
    pub stream: String,
}

fn batch_size_histogram() -> Histogram {
    Histogram::new(names::BATCH_SIZE_BUCKETS)
}

fn duration_histogram() -> Histogram {
    Histogram::new(names::DURATION_SECONDS_BUCKETS)
}

/// Handles to the bus metrics. Cloning shares them. [`BusMetrics::default`] gives handles
/// registered nowhere, for tests and tools.
#[derive(Debug, Clone)]
pub struct BusMetrics {
    pub(crate) consumed: Family<ConsumerLabels, Counter>,
    pub(crate) acked: Family<ConsumerLabels, Counter>,
    pub(crate) nacked: Family<ConsumerLabels, Counter>,
    pub(crate) dead_lettered: Family<ConsumerLabels, Counter>,
    pub(crate) pending: Family<ConsumerLabels, Gauge>,
    pub(crate) batch_size: Family<ConsumerLabels, Histogram, fn() -> Histogram>,
    pub(crate) batch_duration: Family<ConsumerLabels, Histogram, fn() -> Histogram>,
    pub(crate) published: Family<StreamLabels, Counter>,
}

impl Default for BusMetrics {
    fn default() -> Self {
        Self {
            consumed: Family::default(),
            acked: Family::default(),
            nacked: Family::default(),
            dead_lettered: Family::default(),
            pending: Family::default(),
            batch_size: Family::new_with_constructor(batch_size_histogram),
            batch_duration: Family::new_with_constructor(duration_histogram),
            published: Family::default(),
        }
    }
}

impl BusMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &MetricsRegistry) -> Self {
        let metrics = Self::default();
        registry.register(&names::BUS_MESSAGES_CONSUMED, metrics.consumed.clone());
        registry.register(&names::BUS_MESSAGES_ACKED, metrics.acked.clone());
        registry.register(&names::BUS_MESSAGES_NACKED, metrics.nacked.clone());
        registry.register(
            &names::BUS_MESSAGES_DEAD_LETTERED,
            metrics.dead_lettered.clone(),
        );
        registry.register(&names::BUS_CONSUMER_PENDING, metrics.pending.clone());
        registry.register(&names::BUS_BATCH_SIZE, metrics.batch_size.clone());
        registry.register(
            &names::BUS_BATCH_DURATION_SECONDS,
            metrics.batch_duration.clone(),
        );
        registry.register(&names::BUS_PUBLISHED, metrics.published.clone());
        metrics
    }
}
