//! The agent's metric beyond the stage's and the bus's: export commands by target connector,
//! operation and how they ended (`mesh_provisioning_exports_total`).

use mesh_model::{ConnectorId, ExportOperation, ExportStatus};
use mesh_runtime::metrics::{MetricsRegistry, names};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

/// Labels of [`ExportMetrics`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ExportLabels {
    /// The target connector.
    pub target_connector: String,
    /// `create`, `update`, `disable`, `enable` or `delete`.
    pub operation: String,
    /// `applied`, `already_applied`, `retryable_failure` or `permanent_failure`.
    pub status: String,
}

/// Export commands answered, by target connector, operation and status.
#[derive(Debug, Clone, Default)]
pub struct ExportMetrics {
    exports: Family<ExportLabels, Counter>,
}

impl ExportMetrics {
    /// Registers (or shares) the family in `registry`.
    pub fn new(registry: &MetricsRegistry) -> Self {
        Self {
            exports: registry.register_shared(&names::PROVISIONING_EXPORTS, Family::default()),
        }
    }

    /// Counts one answered command.
    pub fn count(&self, target: &ConnectorId, operation: ExportOperation, status: ExportStatus) {
        self.exports
            .get_or_create(&ExportLabels {
                target_connector: target.to_string(),
                operation: operation.as_str().to_owned(),
                status: crate::handler::status_name(status).to_owned(),
            })
            .inc();
    }

    /// Returns the count of one label set, for tests and reports.
    pub fn get(&self, target: &str, operation: ExportOperation, status: ExportStatus) -> u64 {
        self.exports
            .get_or_create(&ExportLabels {
                target_connector: target.to_owned(),
                operation: operation.as_str().to_owned(),
                status: crate::handler::status_name(status).to_owned(),
            })
            .get()
    }
}
