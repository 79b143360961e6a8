//! PreviewImpact: a candidate rule set against the current state, without writing.

use mesh_engine::RuleSet;
use mesh_proto::v1;
use tonic::Status;

use crate::Query;

/// Computes the candidate's impact.
pub async fn preview(
    query: &Query,
    candidate: &RuleSet,
    sample_limit: usize,
) -> Result<v1::PreviewImpactResponse, Status> {
    let _ = (query, candidate, sample_limit);
    Err(Status::unimplemented("PreviewImpact is not built yet"))
}
