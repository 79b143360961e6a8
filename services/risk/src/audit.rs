//! Decisions into the audit log, off the request path.
//!
//! A decision is queued and answered at once; a writer task appends the queue to the audit
//! chain `risk` in batches (up to 500 rows, one transaction). When PostgreSQL is down the
//! writer keeps its batch and retries, and once the queue is full `record` waits: decisions
//! slow down rather than lose a deny. On shutdown the writer empties the queue first.

use std::time::Duration;

use chrono::Utc;
use mesh_engine::risk::AccessRequest;
use mesh_store::audit::{AuditEntry, append};
use serde_json::json;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Decided;

/// The audit chain's writer name.
pub const WRITER: &str = "risk";
const QUEUE: usize = 20_000;
const BATCH: usize = 500;

/// Queues decisions for the audit log.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<AuditEntry>,
}

impl AuditWriter {
    /// Starts the writer task on `pool`; it ends once `shutdown` fired and the queue is empty.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Self {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_loop(pool, receiver, shutdown));
        Self { queue }
    }

    /// Queues one decision.
    pub async fn record(&self, request: &AccessRequest, decided: &Decided) {
        let outcome = &decided.outcome;
        let reasons: Vec<_> = outcome
            .reasons
            .iter()
            .map(|r| json!({"code": r.code, "message": r.message, "weight": r.weight}))
            .collect();
        let entry = AuditEntry {
            at: Utc::now(),
            kind: "decision",
            event_id: Some(decided.decision_id),
            mesh_object: decided
                .mesh_object
                .as_deref()
                .and_then(|id| uuid::Uuid::parse_str(id).ok()),
            connector_object: None,
            rule: Some(outcome.policy.clone()),
            detail: json!({
                "subject": request.subject,
                "resource": request.resource,
                "action": request.action,
                "sensitivity": request.sensitivity.as_str(),
                "decision": outcome.verdict.as_str(),
                "scope": outcome.scope,
                "score": outcome.assessment.score,
                "reasons": reasons,
                "degraded": decided.degraded,
                "errors": outcome.errors,
            }),
        };
        if self.queue.send(entry).await.is_err() {
            tracing::error!(decision = %decided.decision_id, "audit writer stopped; decision not audited");
        }
    }
}

async fn write_loop(
    pool: PgPool,
    mut receiver: mpsc::Receiver<AuditEntry>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if batch.is_empty() {
            tokio::select! {
                n = receiver.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        return;
                    }
                }
                () = shutdown.cancelled() => {
                    receiver.close();
                    if receiver.recv_many(&mut batch, BATCH).await == 0 {
                        return;
                    }
                }
            }
        }
        match write(&pool, &batch).await {
            Ok(()) => batch.clear(),
            Err(error) => {
                tracing::warn!(error = %error, rows = batch.len(), "audit write failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

async fn write(pool: &PgPool, entries: &[AuditEntry]) -> Result<(), mesh_store::StoreError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(mesh_store::StoreError::query("beginning an audit batch"))?;
    append(&mut tx, WRITER, entries).await?;
    tx.commit()
        .await
        .map_err(mesh_store::StoreError::query("committing an audit batch"))
}
