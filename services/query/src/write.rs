//! MeshQuery's operator changes: each runs in one transaction with its audit entry (chain
//! `query`), and names the actor and the reason.

use mesh_proto::v1;
use tonic::Status;

use crate::Query;

/// `ResolveReviewEntry`.
pub async fn resolve_review_entry(
    query: &Query,
    request: v1::ResolveReviewEntryRequest,
) -> Result<v1::ResolveReviewEntryResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("ResolveReviewEntry is not built yet"))
}

/// `SetOverride`.
pub async fn set_override(
    query: &Query,
    request: v1::SetOverrideRequest,
) -> Result<v1::SetOverrideResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("SetOverride is not built yet"))
}

/// `RemoveOverride`.
pub async fn remove_override(
    query: &Query,
    request: v1::RemoveOverrideRequest,
) -> Result<v1::RemoveOverrideResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("RemoveOverride is not built yet"))
}

/// `ApproveExports`.
pub async fn approve_exports(
    query: &Query,
    request: v1::ApproveExportsRequest,
) -> Result<v1::ApproveExportsResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("ApproveExports is not built yet"))
}

/// `ReplayDeadLetter`.
pub async fn replay_dead_letter(
    query: &Query,
    request: v1::ReplayDeadLetterRequest,
) -> Result<v1::ReplayDeadLetterResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("ReplayDeadLetter is not built yet"))
}
