//! The MeshQuery gRPC service: each call is answered by [`crate::read`] (queries) or
//! [`crate::write`] (operator changes, audited).

use mesh_proto::v1;
use mesh_proto::v1::mesh_query_server::MeshQuery;
use tonic::{Request, Response, Status};

use crate::{Query, read, write};

/// MeshQuery over the mesh database and JetStream.
#[derive(Debug, Clone)]
pub struct MeshQueryService {
    query: Query,
}

impl MeshQueryService {
    /// Answers from `query`'s pool and bus.
    pub fn new(query: Query) -> Self {
        Self { query }
    }
}

#[tonic::async_trait]
impl MeshQuery for MeshQueryService {
    async fn get_mesh_object(
        &self,
        request: Request<v1::GetMeshObjectRequest>,
    ) -> Result<Response<v1::GetMeshObjectResponse>, Status> {
        read::get_mesh_object(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn find_mesh_objects(
        &self,
        request: Request<v1::FindMeshObjectsRequest>,
    ) -> Result<Response<v1::FindMeshObjectsResponse>, Status> {
        read::find_mesh_objects(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_connector_object(
        &self,
        request: Request<v1::GetConnectorObjectRequest>,
    ) -> Result<Response<v1::GetConnectorObjectResponse>, Status> {
        read::get_connector_object(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_review_queue(
        &self,
        request: Request<v1::ListReviewQueueRequest>,
    ) -> Result<Response<v1::ListReviewQueueResponse>, Status> {
        read::list_review_queue(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn resolve_review_entry(
        &self,
        request: Request<v1::ResolveReviewEntryRequest>,
    ) -> Result<Response<v1::ResolveReviewEntryResponse>, Status> {
        write::resolve_review_entry(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_override(
        &self,
        request: Request<v1::SetOverrideRequest>,
    ) -> Result<Response<v1::SetOverrideResponse>, Status> {
        write::set_override(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn remove_override(
        &self,
        request: Request<v1::RemoveOverrideRequest>,
    ) -> Result<Response<v1::RemoveOverrideResponse>, Status> {
        write::remove_override(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_export_status(
        &self,
        request: Request<v1::GetExportStatusRequest>,
    ) -> Result<Response<v1::GetExportStatusResponse>, Status> {
        read::get_export_status(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_exports(
        &self,
        request: Request<v1::ListExportsRequest>,
    ) -> Result<Response<v1::ListExportsResponse>, Status> {
        read::list_exports(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn approve_exports(
        &self,
        request: Request<v1::ApproveExportsRequest>,
    ) -> Result<Response<v1::ApproveExportsResponse>, Status> {
        write::approve_exports(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn search_audit(
        &self,
        request: Request<v1::SearchAuditRequest>,
    ) -> Result<Response<v1::SearchAuditResponse>, Status> {
        read::search_audit(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn verify_audit_chain(
        &self,
        request: Request<v1::VerifyAuditChainRequest>,
    ) -> Result<Response<v1::VerifyAuditChainResponse>, Status> {
        read::verify_audit_chain(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>, Status> {
        read::list_dead_letters(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn replay_dead_letter(
        &self,
        request: Request<v1::ReplayDeadLetterRequest>,
    ) -> Result<Response<v1::ReplayDeadLetterResponse>, Status> {
        write::replay_dead_letter(&self.query, request.into_inner())
            .await
            .map(Response::new)
    }
}
