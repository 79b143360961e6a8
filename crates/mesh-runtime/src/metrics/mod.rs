//! A process-wide Prometheus registry that every crate registers its metrics in at startup.
//!
//! [`MetricsRegistry`] is a cheap clone of one `prometheus_client` [`Registry`] behind a lock:
//! adapters take a clone, register their counters and histograms once while the service is
//! built, and keep the metric handles (which are themselves cheap clones) for the hot path; the
//! lock is only taken again when `/metrics` is scraped.
//!
//! Metric names and help strings live in [`names`] and nowhere else, so dashboards and alerts
//! have one list to follow.

pub mod names;

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use prometheus_client::registry::{Metric, Registry};

pub use names::{MetricDef, MetricKind};

/// Content type of [`MetricsRegistry::encode`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A shareable Prometheus registry.
#[derive(Clone, Default)]
pub struct MetricsRegistry {
    inner: Arc<RwLock<Registry>>,
    /// Metrics registered with [`MetricsRegistry::register_shared`], by name.
    shared: Arc<Mutex<HashMap<&'static str, Box<dyn Any + Send>>>>,
}

impl fmt::Debug for MetricsRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRegistry").finish_non_exhaustive()
    }
}

impl MetricsRegistry {
    /// Creates an empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wraps an existing registry (one created with a prefix or constant labels, say).
    pub fn from_registry(registry: Registry) -> Self {
        Self {
            inner: Arc::new(RwLock::new(registry)),
            shared: Arc::default(),
        }
    }

    /// Registers `metric` under the name and help of `def` and returns it, so that the caller
    /// keeps the handle:
    /// `let acked = registry.register(&names::BUS_MESSAGES_ACKED, Counter::default());`
    ///
    /// In debug builds, panics if the metric's type is not `def.kind`.
    pub fn register<M: Metric + Clone>(&self, def: &MetricDef, metric: M) -> M {
        debug_assert!(
            def.kind.matches(&metric),
            "metric {} registered with a type other than {:?}",
            def.name,
            def.kind
        );
        self.with_registry(|r| r.register(def.name, def.help, metric.clone()));
        metric
    }

    /// Like [`MetricsRegistry::register`], for a metric (usually a family) that several
    /// components of one process share, such as the stages `meshd run all` runs together: the
    /// first call registers `metric`, later calls with the same `def` return that one.
    ///
    /// In debug builds, panics if a later call asks for another type.
    pub fn register_shared<M: Metric + Clone + Send + 'static>(
        &self,
        def: &MetricDef,
        metric: M,
    ) -> M {
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(existing) = shared.get(def.name) {
            if let Some(existing) = existing.downcast_ref::<M>() {
                return existing.clone();
            }
            debug_assert!(false, "metric {} shared with two types", def.name);
        }
        let metric = self.register(def, metric);
        shared.insert(def.name, Box::new(metric.clone()));
        metric
    }

    /// Gives mutable access to the registry, for collectors and sub-registries.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        // A panic while registering leaves a registry that is still usable; keep serving it.
        let mut registry = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut registry)
    }

    /// Encodes every registered metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let registry = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::histogram::Histogram;

    use super::*;

    #[test]
    fn registers_and_encodes_named_metrics() {
        let registry = MetricsRegistry::new();
        let acked = registry.register(&names::BUS_MESSAGES_ACKED, Counter::<u64>::default());
        let batch = registry.register(
            &names::BUS_BATCH_SIZE,
            Histogram::new(names::BATCH_SIZE_BUCKETS.iter().copied()),
        );
        acked.inc_by(3);
        batch.observe(17.0);
        let text = registry.encode().unwrap_or_default();
        assert!(text.contains("# HELP mesh_bus_messages_acked "), "{text}");
        assert!(
            text.contains(&format!("{} 3", names::BUS_MESSAGES_ACKED.exposed_name())),
            "{text}"
        );
        assert!(text.contains("mesh_bus_batch_size_count 1"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "registered with a type other than")]
    fn rejects_a_metric_of_the_wrong_kind() {
        let registry = MetricsRegistry::new();
        registry.register(&names::BUS_BATCH_SIZE, Counter::<u64>::default());
    }
}
