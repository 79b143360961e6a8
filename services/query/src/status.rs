//! Errors and values shared by both services' answers.

use chrono::{DateTime, Utc};
use mesh_store::StoreError;
use tonic::Status;

/// A store failure as a gRPC status: UNAVAILABLE when retrying may help (the database is
/// down or busy), INTERNAL otherwise; the message names what failed.
pub fn store(error: &StoreError) -> Status {
    let message = mesh_runtime::error_chain(error);
    if error.is_transient() {
        Status::unavailable(format!(
            "the mesh database is unavailable, retry later: {message}"
        ))
    } else {
        tracing::error!(error = %message, "query failed");
        Status::internal(message)
    }
}

/// A driver failure outside a repository call (begin, commit).
pub fn sql(error: sqlx::Error) -> Status {
    store(&StoreError::Query {
        what: "a query service transaction",
        source: error,
    })
}

pub use mesh_proto::timestamp_to_pb as timestamp;

/// A protobuf timestamp as a time; INVALID_ARGUMENT names the field when out of range.
pub fn time(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>, Status> {
    mesh_proto::timestamp_to_time(t)
        .ok_or_else(|| Status::invalid_argument(format!("{field} is not a valid time")))
}

/// A required text field, trimmed; INVALID_ARGUMENT names it when empty.
pub fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    let value = value.trim();
    if value.is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    Ok(value)
}

/// A required mesh object id: a UUID, or INVALID_ARGUMENT naming the field.
pub fn uuid(value: &str, field: &str) -> Result<uuid::Uuid, Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    uuid::Uuid::parse_str(value.trim())
        .map_err(|e| Status::invalid_argument(format!("{field} {value:?} is not a UUID: {e}")))
}
