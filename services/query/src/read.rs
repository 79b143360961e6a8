//! MeshQuery's queries: nothing here writes, and nothing locks a row the pipeline writes.
//!
//! - [`get_mesh_object`], [`find_mesh_objects`], [`get_connector_object`]: the mesh and the
//!   management space ([`objects`], the lineage in [`lineage`]).
//! - [`list_review_queue`]: disconnectors and ambiguous matches ([`review`]).
//! - [`get_export_status`], [`list_exports`]: the projection tables ([`exports`]).
//! - [`search_audit`], [`verify_audit_chain`]: the audit log ([`audit`]).
//! - [`list_dead_letters`]: MESH_DLQ ([`dead_letters`]).
//!
//! A call that reads several tables reads them in one read-only, repeatable-read transaction
//! ([`snapshot`]), so that what it shows is one state of the mesh. Lists are keyset-paged
//! ([`crate::page`]).

mod audit;
mod dead_letters;
mod exports;
mod lineage;
mod objects;
mod review;

use sqlx::{PgPool, Postgres, Transaction};
use tonic::Status;

use crate::status;

pub use audit::{search_audit, verify_audit_chain};
pub use dead_letters::list_dead_letters;
pub use exports::{get_export_status, list_exports};
pub use objects::{find_mesh_objects, get_connector_object, get_mesh_object};
pub use review::list_review_queue;

/// Opens a read-only transaction on one snapshot of the database.
async fn snapshot(pool: &PgPool) -> Result<Transaction<'static, Postgres>, Status> {
    let mut tx = pool.begin().await.map_err(status::sql)?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(status::sql)?;
    Ok(tx)
}

/// Ends a read-only transaction.
async fn done(tx: Transaction<'static, Postgres>) -> Result<(), Status> {
    tx.commit().await.map_err(status::sql)
}

/// An optional text filter: `None` when empty.
fn filter(text: &str) -> Option<&str> {
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}
