//! Dead letters: the messages MESH_DLQ holds, read with JetStream's direct get.
//!
//! A page asks for the next message on `mesh.dlq.>` (or `mesh.dlq.<stage>`) at or after a
//! stream sequence, one message at a time, so paging by sequence needs no consumer and leaves
//! nothing behind on the server. The page token is the last sequence returned.

use async_nats::jetstream::stream::DirectGetErrorKind;
use mesh_bus::topology::streams;
use mesh_proto::v1;
use mesh_store::query as stored;
use prost::Message as _;
use tonic::Status;

use super::filter;
use crate::{AUDIT_WRITER, Query, page, status};

/// `ListDeadLetters`, oldest first (by MESH_DLQ sequence).
///
/// `replayed_at` comes from the audit entries of ReplayDeadLetter
/// ([`mesh_store::query::DEAD_LETTER_REPLAYED`]). A stored message that does not decode as a
/// DeadLetter is still listed, with its raw bytes as the payload and the decoding error as
/// the reason, so that nothing in the queue is hidden.
pub async fn list_dead_letters(
    query: &Query,
    request: v1::ListDeadLettersRequest,
) -> Result<v1::ListDeadLettersResponse, Status> {
    let subject = match filter(&request.stage) {
        None => "mesh.dlq.>".to_owned(),
        Some(stage) if is_token(stage) => format!("mesh.dlq.{stage}"),
        Some(stage) => {
            return Err(Status::invalid_argument(format!(
                "stage {stage:?} is not a stage name (such as `correlation` or `flow`)"
            )));
        }
    };
    let after = page::parse(&request.page_token, "dlq", 1)?
        .map(|key| page::number::<u64>(key[0]))
        .transpose()?;
    let size = query.page_size(request.page_size);
    let stream = query
        .bus
        .jetstream()
        .get_stream_no_info(streams::DLQ)
        .await
        .map_err(|e| unavailable(&e))?;
    let mut entries = Vec::new();
    let mut next = after.map_or(1, |seq| seq + 1);
    while entries.len() <= usize::try_from(size).unwrap_or(usize::MAX) {
        let message = match stream
            .direct_get_next_for_subject(subject.as_str(), Some(next))
            .await
        {
            Ok(message) => message,
            Err(e) if matches!(e.kind(), DirectGetErrorKind::NotFound) => break,
            Err(e) => return Err(unavailable(&e)),
        };
        next = message.sequence + 1;
        entries.push(entry(&message));
    }
    let (mut entries, next_page_token) =
        page::finish(entries, size, "dlq", |e| e.dlq_sequence.to_string());
    let sequences: Vec<u64> = entries.iter().map(|e| e.dlq_sequence).collect();
    let mut conn = query.pool.acquire().await.map_err(status::sql)?;
    let replays = stored::dead_letter_replays(&mut conn, AUDIT_WRITER, &sequences)
        .await
        .map_err(|e| status::store(&e))?;
    for entry in &mut entries {
        entry.replayed_at = replays
            .get(&entry.dlq_sequence)
            .copied()
            .map(status::timestamp);
    }
    Ok(v1::ListDeadLettersResponse {
        entries,
        next_page_token,
    })
}

/// True for a NATS subject token (a consumer's durable name).
fn is_token(stage: &str) -> bool {
    !stage
        .chars()
        .any(|c| c == '.' || c == '*' || c == '>' || c.is_whitespace())
}

fn unavailable(error: &dyn std::fmt::Display) -> Status {
    Status::unavailable(format!(
        "cannot read {} from JetStream: {error}",
        streams::DLQ
    ))
}

fn entry(message: &async_nats::jetstream::message::StreamMessage) -> v1::DeadLetterEntry {
    let dead_letter =
        v1::DeadLetter::decode(message.payload.as_ref()).unwrap_or_else(|error| v1::DeadLetter {
            subject: message.subject.to_string(),
            stream: streams::DLQ.to_owned(),
            stream_sequence: message.sequence,
            payload: message.payload.to_vec(),
            reason: format!("this MESH_DLQ message is not a DeadLetter: {error}"),
            ..Default::default()
        });
    v1::DeadLetterEntry {
        dlq_sequence: message.sequence,
        dead_letter: Some(dead_letter),
        replayed_at: None,
    }
}
