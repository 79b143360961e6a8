//! The review queue: connector objects correlation left unjoined (disconnectors) or could not
//! place (ambiguous matches), oldest first, except those an operator ignored since their last
//! change.

use mesh_model::{ConnectorId, JoinState};
use mesh_proto::v1;
use mesh_store::query::{self as stored, ConnectorObjectRecord, ReviewCursor, ReviewFilter};
use tonic::Status;

use super::filter;
use crate::{Query, page, review, status};

/// `ListReviewQueue`, oldest first: by when correlation last wrote the connector object (it
/// entered the queue then, or changed while in it), then by key.
pub async fn list_review_queue(
    query: &Query,
    request: v1::ListReviewQueueRequest,
) -> Result<v1::ListReviewQueueResponse, Status> {
    let connector = filter(&request.connector)
        .map(|c| {
            ConnectorId::parse(c).map_err(|e| Status::invalid_argument(format!("connector: {e}")))
        })
        .transpose()?;
    let states: &[&str] = match v1::ReviewReason::try_from(request.reason) {
        Ok(v1::ReviewReason::Unspecified) => &[],
        Ok(v1::ReviewReason::Disconnector) => &["disconnector"],
        Ok(v1::ReviewReason::Ambiguous) => &["ambiguous"],
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "reason {} is not a ReviewReason",
                request.reason
            )));
        }
    };
    let after = page::parse(&request.page_token, "review", 4)?
        .map(|key| {
            Ok::<_, Status>(ReviewCursor {
                queued_at: page::time(key[0])?,
                connector: key[1].to_owned(),
                object_type: key[2].to_owned(),
                external_id: key[3].to_owned(),
            })
        })
        .transpose()?;
    let size = query.page_size(request.page_size);
    let mut conn = query.pool.acquire().await.map_err(status::sql)?;
    let rows = stored::review_queue(
        &mut conn,
        &ReviewFilter {
            connector: connector.as_ref().map(ConnectorId::as_str),
            states,
            after: after.as_ref(),
            limit: page::fetch_limit(size),
        },
    )
    .await
    .map_err(|e| status::store(&e))?;
    let (rows, next_page_token) = page::finish(rows, size, "review", |row| {
        let object = &row.object;
        format!(
            "{}/{}/{}/{}",
            page::micros(row.updated_at),
            object.connector,
            object.object_type,
            object.external_id
        )
    });
    Ok(v1::ListReviewQueueResponse {
        entries: rows.iter().map(entry).collect(),
        next_page_token,
    })
}

/// One queued connector object as a review entry.
fn entry(row: &ConnectorObjectRecord) -> v1::ReviewEntry {
    let object = &row.object;
    let (reason, rule, candidates, message) = match &row.stored.join {
        JoinState::Ambiguous { rule, candidates } => (
            v1::ReviewReason::Ambiguous,
            rule.to_string(),
            candidates.iter().map(ToString::to_string).collect(),
            format!(
                "join rule {rule} matched {} mesh objects, so {object} was not joined; join it \
                 to the right one or ignore the entry",
                candidates.len()
            ),
        ),
        _ => (
            v1::ReviewReason::Disconnector,
            String::new(),
            Vec::new(),
            format!(
                "no join rule of {} matched a mesh object for {object} and no anchor rule \
                 applies; it is tried again whenever a mesh attribute its join rules search \
                 changes",
                object.connector
            ),
        ),
    };
    let event = row.stored.last_event.as_uuid();
    v1::ReviewEntry {
        id: review::entry_id(object, event).to_string(),
        object: Some(object.clone().into()),
        reason: reason.into(),
        rule,
        candidates,
        message,
        event_id: event.to_string(),
        queued_at: Some(status::timestamp(row.updated_at)),
    }
}
