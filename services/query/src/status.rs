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

/// A time as a protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf timestamp as a time; INVALID_ARGUMENT names the field when out of range.
pub fn time(t: &prost_types::Timestamp, field: &str) -> Result<DateTime<Utc>, Status> {
    u32::try_from(t.nanos)
        .ok()
        .and_then(|nanos| DateTime::from_timestamp(t.seconds, nanos))
        .ok_or_else(|| Status::invalid_argument(format!("{field} is not a valid time")))
}

/// A required mesh object id: a UUID, or INVALID_ARGUMENT naming the field.
pub fn uuid(value: &str, field: &str) -> Result<uuid::Uuid, Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!("{field} is required")));
    }
    uuid::Uuid::parse_str(value.trim())
        .map_err(|e| Status::invalid_argument(format!("{field} {value:?} is not a UUID: {e}")))
}
