//! The one place metric names and help strings live.
//!
//! Names follow Prometheus conventions: `mesh_<area>_<what>` in snake case, base units
//! (`_seconds`, `_bytes`). Counters are declared **without** `_total`: the OpenMetrics encoder
//! appends it, so [`BUS_MESSAGES_ACKED`] is scraped as `mesh_bus_messages_acked_total`
//! ([`MetricDef::exposed_name`]). A name, once published, is never reused for another meaning.

use prometheus_client::encoding::EncodeMetric;
use prometheus_client::metrics::MetricType;

/// The type of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Monotonic count; scraped with a `_total` suffix.
    Counter,
    /// Value that goes up and down.
    Gauge,
    /// Distribution over buckets.
    Histogram,
}

impl MetricKind {
    /// Returns whether `metric` is of this kind.
    pub fn matches(&self, metric: &impl EncodeMetric) -> bool {
        matches!(
            (self, metric.metric_type()),
            (MetricKind::Counter, MetricType::Counter)
                | (MetricKind::Gauge, MetricType::Gauge)
                | (MetricKind::Histogram, MetricType::Histogram)
        )
    }
}

/// A metric's registration name, help string and type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricDef {
    /// Registration name (counters without `_total`).
    pub name: &'static str,
    /// One-line help shown by Prometheus.
    pub help: &'static str,
    /// Type of the metric.
    pub kind: MetricKind,
}

impl MetricDef {
    const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Counter,
        }
    }

    const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Gauge,
        }
    }

    const fn histogram(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            kind: MetricKind::Histogram,
        }
    }

    /// Returns the name as scraped (`_total` appended for counters).
    pub fn exposed_name(&self) -> String {
        match self.kind {
            MetricKind::Counter => format!("{}_total", self.name),
            MetricKind::Gauge | MetricKind::Histogram => self.name.to_owned(),
        }
    }
}

/// Messages fetched from a JetStream consumer and handed to a stage.
pub const BUS_MESSAGES_CONSUMED: MetricDef = MetricDef::counter(
    "mesh_bus_messages_consumed",
    "Messages received from JetStream consumers.",
);

/// Messages acknowledged after their effect was committed.
pub const BUS_MESSAGES_ACKED: MetricDef = MetricDef::counter(
    "mesh_bus_messages_acked",
    "Messages acknowledged after their effect committed.",
);

/// Messages negatively acknowledged for redelivery after a transient error.
pub const BUS_MESSAGES_NACKED: MetricDef = MetricDef::counter(
    "mesh_bus_messages_nacked",
    "Messages negatively acknowledged for redelivery after a transient error.",
);

/// Messages moved to MESH_DLQ after their bounded deliveries.
pub const BUS_MESSAGES_DEAD_LETTERED: MetricDef = MetricDef::counter(
    "mesh_bus_messages_dead_lettered",
    "Messages moved to the dead-letter stream after exhausting their deliveries.",
);

/// Messages in each batch handed to a handler.
pub const BUS_BATCH_SIZE: MetricDef = MetricDef::histogram(
    "mesh_bus_batch_size",
    "Messages per batch handed to a handler.",
);

/// Time to handle one batch, from fetch to the last ack.
pub const BUS_BATCH_DURATION_SECONDS: MetricDef = MetricDef::histogram(
    "mesh_bus_batch_duration_seconds",
    "Time to handle one batch, from fetch to the last acknowledgement.",
);

/// Messages published and accepted by JetStream.
pub const BUS_PUBLISHED: MetricDef = MetricDef::counter(
    "mesh_bus_published",
    "Messages published and accepted by JetStream.",
);

/// Messages in a consumer's stream not yet delivered to it: the consumer's lag, updated with
/// every batch and from the server every 10 s while the consume loop waits.
pub const BUS_CONSUMER_PENDING: MetricDef = MetricDef::gauge(
    "mesh_bus_consumer_pending",
    "Messages not yet delivered to the consumer (its lag), updated per batch and every 10 s while idle.",
);

/// SCIM requests answered by the connector agent, by resource type, method and status.
pub const CONNECTOR_SCIM_REQUESTS: MetricDef = MetricDef::counter(
    "mesh_connector_scim_requests",
    "SCIM requests answered by the connector agent, by method and status.",
);

/// Change events the connector agent's outbox relay published to JetStream.
pub const CONNECTOR_OUTBOX_PUBLISHED: MetricDef = MetricDef::counter(
    "mesh_connector_outbox_published",
    "Change events published from the connector agent's outbox.",
);

/// Change events committed to the outbox and not yet published.
pub const CONNECTOR_OUTBOX_PENDING: MetricDef = MetricDef::gauge(
    "mesh_connector_outbox_pending",
    "Change events committed to the connector agent's outbox and not yet published.",
);

/// HR extract records processed, by connector and outcome (joiner, mover, leaver, unchanged,
/// malformed).
pub const CONNECTOR_HR_RECORDS: MetricDef = MetricDef::counter(
    "mesh_connector_hr_records",
    "HR extract records processed, by connector and outcome.",
);

/// Requests the connector agent refused (429) because their bearer token was over its rate
/// limit (`connector_agent.rate_limit_per_second`), by connector (SCIM endpoint or HR feed).
pub const CONNECTOR_RATE_LIMITED: MetricDef = MetricDef::counter(
    "mesh_connector_rate_limited",
    "Requests refused with 429 because their bearer token exceeded its rate limit, by connector.",
);

/// Events through a pipeline stage, by stage and direction: `in` (handled), `out`
/// (published), `duplicate` (already processed: inbox), `stale` (overtaken by a newer change).
pub const STAGE_EVENTS: MetricDef = MetricDef::counter(
    "mesh_stage_events",
    "Events through a pipeline stage, by stage and direction (in, out, duplicate, stale).",
);

/// Outcomes of a pipeline stage: join outcomes of correlation (matched, projected, existing,
/// disconnector, ambiguous, deleted, rejoined), flow's changed and unchanged mesh objects.
pub const STAGE_OUTCOMES: MetricDef = MetricDef::counter(
    "mesh_stage_outcomes",
    "Outcomes of a pipeline stage (join outcomes, mesh objects changed), by stage and outcome.",
);

/// Transform scripts that failed at run time, by stage and rule.
pub const STAGE_TRANSFORM_ERRORS: MetricDef = MetricDef::counter(
    "mesh_stage_transform_errors",
    "Transform scripts that failed at run time (contribution skipped), by stage and rule.",
);

/// Export commands the provisioning agent answered, by target connector, operation and status
/// (`applied`, `already_applied`, `retryable_failure`, `permanent_failure`).
pub const PROVISIONING_EXPORTS: MetricDef = MetricDef::counter(
    "mesh_provisioning_exports",
    "Export commands applied to targets by the provisioning agent, by target connector, operation and status.",
);

/// Export commands the projection service issued, by target connector, operation and state
/// (`queued`, or `held` by the mass-deletion guard).
pub const PROJECTION_EXPORTS: MetricDef = MetricDef::counter(
    "mesh_projection_exports",
    "Export commands issued by the projection service, by target connector, operation and state (queued or held).",
);

/// Export results the projection service recorded, by target connector and outcome
/// (`confirmed`, `retry`, `failed`, `stale`).
pub const PROJECTION_RESULTS: MetricDef = MetricDef::counter(
    "mesh_projection_results",
    "Export results recorded by the projection service, by target connector and outcome (confirmed, retry, failed, stale).",
);

/// Open export commands, by target connector and state (`queued`, `held`, `sent`).
pub const PROJECTION_EXPORTS_OPEN: MetricDef = MetricDef::gauge(
    "mesh_projection_exports_open",
    "Export commands not yet confirmed or failed, by target connector and state (queued, held, sent).",
);

/// Deprovisions the mass-deletion guard holds, by target connector (above 0: waiting for
/// `meshctl exports approve`).
pub const PROJECTION_EXPORTS_HELD: MetricDef = MetricDef::gauge(
    "mesh_projection_exports_held",
    "Deprovisions the mass-deletion guard holds until `meshctl exports approve`, by target connector.",
);

/// Access decisions the risk service made, by decision (`allow`, `deny`, `require_mfa`,
/// `limit`) and whether the safe default applied because Redis was unavailable.
pub const RISK_DECISIONS: MetricDef = MetricDef::counter(
    "mesh_risk_decisions",
    "Access decisions made by the risk service, by decision and degraded (true when Redis was unavailable and the safe default applied).",
);

/// Risk signals the risk service took in, by kind (`signin`, `posture`) and outcome
/// (`applied`, `duplicate`).
pub const RISK_SIGNALS: MetricDef = MetricDef::counter(
    "mesh_risk_signals",
    "Risk signals taken in by the risk service, by kind and outcome (applied or duplicate).",
);

/// 1 while the risk service reaches Redis, 0 while its decisions fall back to the safe
/// default.
pub const RISK_REDIS_UP: MetricDef = MetricDef::gauge(
    "mesh_risk_redis_up",
    "1 while the risk service reaches Redis; 0 while decisions fall back to the safe default.",
);

/// Every metric declared here, for docs and uniqueness checks.
pub const ALL: &[MetricDef] = &[
    BUS_MESSAGES_CONSUMED,
    BUS_MESSAGES_ACKED,
    BUS_MESSAGES_NACKED,
    BUS_MESSAGES_DEAD_LETTERED,
    BUS_BATCH_SIZE,
    BUS_BATCH_DURATION_SECONDS,
    BUS_PUBLISHED,
    BUS_CONSUMER_PENDING,
    CONNECTOR_SCIM_REQUESTS,
    CONNECTOR_OUTBOX_PUBLISHED,
    CONNECTOR_OUTBOX_PENDING,
    CONNECTOR_HR_RECORDS,
    CONNECTOR_RATE_LIMITED,
    STAGE_EVENTS,
    STAGE_OUTCOMES,
    STAGE_TRANSFORM_ERRORS,
    PROJECTION_EXPORTS,
    PROJECTION_RESULTS,
    PROJECTION_EXPORTS_OPEN,
    PROJECTION_EXPORTS_HELD,
    PROVISIONING_EXPORTS,
    RISK_DECISIONS,
    RISK_SIGNALS,
    RISK_REDIS_UP,
];

/// Buckets for [`BUS_BATCH_SIZE`]: powers of two up to 1024.
pub const BATCH_SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// Buckets for durations in seconds, 1 ms to 10 s.
pub const DURATION_SECONDS_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn names_are_unique_prefixed_snake_case_and_counters_lack_total() {
        let mut seen = BTreeSet::new();
        for def in ALL {
            assert!(seen.insert(def.name), "duplicate metric name {}", def.name);
            assert!(def.name.starts_with("mesh_"), "{}", def.name);
            assert!(
                def.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                def.name
            );
            assert!(
                !def.name.ends_with("_total"),
                "{} must not end in _total",
                def.name
            );
            assert!(!def.help.is_empty());
        }
        assert_eq!(
            BUS_MESSAGES_CONSUMED.exposed_name(),
            "mesh_bus_messages_consumed_total"
        );
        assert_eq!(BUS_BATCH_SIZE.exposed_name(), "mesh_bus_batch_size");
    }
}
