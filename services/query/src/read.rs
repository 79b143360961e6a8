//! MeshQuery's queries: nothing here writes.

use mesh_proto::v1;
use tonic::Status;

use crate::Query;

/// `GetMeshObject`.
pub async fn get_mesh_object(
    query: &Query,
    request: v1::GetMeshObjectRequest,
) -> Result<v1::GetMeshObjectResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("GetMeshObject is not built yet"))
}

/// `FindMeshObjects`.
pub async fn find_mesh_objects(
    query: &Query,
    request: v1::FindMeshObjectsRequest,
) -> Result<v1::FindMeshObjectsResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("FindMeshObjects is not built yet"))
}

/// `GetConnectorObject`.
pub async fn get_connector_object(
    query: &Query,
    request: v1::GetConnectorObjectRequest,
) -> Result<v1::GetConnectorObjectResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("GetConnectorObject is not built yet"))
}

/// `ListReviewQueue`.
pub async fn list_review_queue(
    query: &Query,
    request: v1::ListReviewQueueRequest,
) -> Result<v1::ListReviewQueueResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("ListReviewQueue is not built yet"))
}

/// `GetExportStatus`.
pub async fn get_export_status(
    query: &Query,
    request: v1::GetExportStatusRequest,
) -> Result<v1::GetExportStatusResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("GetExportStatus is not built yet"))
}

/// `ListExports`.
pub async fn list_exports(
    query: &Query,
    request: v1::ListExportsRequest,
) -> Result<v1::ListExportsResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("ListExports is not built yet"))
}

/// `SearchAudit`.
pub async fn search_audit(
    query: &Query,
    request: v1::SearchAuditRequest,
) -> Result<v1::SearchAuditResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("SearchAudit is not built yet"))
}

/// `VerifyAuditChain`.
pub async fn verify_audit_chain(
    query: &Query,
    request: v1::VerifyAuditChainRequest,
) -> Result<v1::VerifyAuditChainResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("VerifyAuditChain is not built yet"))
}

/// `ListDeadLetters`.
pub async fn list_dead_letters(
    query: &Query,
    request: v1::ListDeadLettersRequest,
) -> Result<v1::ListDeadLettersResponse, Status> {
    let _ = (query, request);
    Err(Status::unimplemented("ListDeadLetters is not built yet"))
}
