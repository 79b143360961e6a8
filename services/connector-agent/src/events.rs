//! Change events as the connector agent builds them, and the outbox rows that carry them.
//!
//! Every event id is derived, never random, so that the same change always yields the same
//! `Nats-Msg-Id`: a SCIM write from (connector, resource type, id, version), an HR change from
//! (import, object type, external id). A republish after a crash is then a duplicate that
//! JetStream and the consumers' inboxes drop.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mesh_model::{
    Attributes, ChangeEvent, ChangeOperation, ConnectorId, ConnectorObjectRef, EventId, ExternalId,
    ObjectType, ParseError,
};
use mesh_proto::WireEvent;
use sqlx::PgConnection;

/// Why an event could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build a change event for {what}")]
pub struct EventError {
    what: String,
    #[source]
    source: ParseError,
}

/// The subject of a connector's change events: `mesh.change.<connector>`.
pub fn subject(connector: &ConnectorId) -> String {
    format!("mesh.change.{connector}")
}

/// Builds a change event.
pub fn change_event(
    connector: &ConnectorId,
    object_type: &str,
    external_id: &str,
    event_key: &str,
    operation: ChangeOperation,
    attributes: Attributes,
    source_time: DateTime<Utc>,
) -> Result<ChangeEvent, EventError> {
    let err = |source| EventError {
        what: format!("{connector}/{object_type}/{external_id}"),
        source,
    };
    Ok(ChangeEvent {
        event_id: EventId::derive(
            "connector-agent",
            format!("{connector}\u{0}{event_key}").as_bytes(),
        ),
        object: ConnectorObjectRef {
            connector: connector.clone(),
            object_type: ObjectType::parse(object_type).map_err(err)?,
            external_id: ExternalId::parse(external_id).map_err(err)?,
        },
        operation,
        attributes,
        source_time,
    })
}

/// An encoded change event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// `Nats-Msg-Id`: the event id.
    pub msg_id: String,
    /// `mesh.change.<connector>`.
    pub subject: String,
    /// The protobuf `ChangeEvent`.
    pub payload: Vec<u8>,
    /// The W3C traceparent of the request or import that made the change; the relay publishes
    /// the event in that trace.
    pub traceparent: Option<String>,
}

impl OutboxRow {
    /// Encodes `event` for the outbox, in the trace of the current span.
    pub fn new(event: ChangeEvent) -> Self {
        let traceparent = mesh_runtime::telemetry::traceparent(&tracing::Span::current());
        Self::with_traceparent(event, traceparent)
    }

    /// Encodes `event` for the outbox in the trace `traceparent` names (an import writes many
    /// rows in one trace).
    pub fn with_traceparent(event: ChangeEvent, traceparent: Option<String>) -> Self {
        Self {
            msg_id: event.event_id.to_string(),
            subject: subject(&event.object.connector),
            payload: event.into_wire(),
            traceparent,
        }
    }
}

/// Inserts outbox rows in the caller's transaction, in order.
pub async fn insert_outbox(conn: &mut PgConnection, rows: &[OutboxRow]) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let msg_ids: Vec<&str> = rows.iter().map(|r| r.msg_id.as_str()).collect();
    let subjects: Vec<&str> = rows.iter().map(|r| r.subject.as_str()).collect();
    let payloads: Vec<&[u8]> = rows.iter().map(|r| r.payload.as_slice()).collect();
    let traceparents: Vec<Option<&str>> = rows.iter().map(|r| r.traceparent.as_deref()).collect();
    sqlx::query(
        "INSERT INTO connector_outbox (msg_id, subject, payload, traceparent) \
         SELECT m, s, p, t FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) \
         WITH ORDINALITY AS u(m, s, p, t, n) ORDER BY n",
    )
    .bind(&msg_ids)
    .bind(&subjects)
    .bind(&payloads)
    .bind(&traceparents)
    .execute(conn)
    .await?;
    Ok(())
}

/// Inserts `rows`, all for one subject, as one framed outbox row: a bulk writer (an HR import
/// batch) then costs PostgreSQL one row, one index entry and one delete, not thousands. The
/// relay publishes each event as its own message with its own `Nats-Msg-Id`, in order, under
/// the first row's traceparent.
pub async fn insert_outbox_framed(
    conn: &mut PgConnection,
    rows: &[OutboxRow],
) -> Result<(), sqlx::Error> {
    let Some(first) = rows.first() else {
        return Ok(());
    };
    debug_assert!(rows.iter().all(|r| r.subject == first.subject));
    let size = rows
        .iter()
        .map(|r| 8 + r.msg_id.len() + r.payload.len())
        .sum();
    let mut payload = Vec::with_capacity(size);
    for row in rows {
        push_frame(&mut payload, row.msg_id.as_bytes());
        push_frame(&mut payload, &row.payload);
    }
    sqlx::query(
        // `published_at` keeps a relay of the previous release away from it (migration 0008).
        "INSERT INTO connector_outbox \
         (msg_id, subject, payload, traceparent, events, framed, published_at) \
         VALUES ($1, $2, $3, $4, $5, true, 'infinity')",
    )
    .bind(&first.msg_id)
    .bind(&first.subject)
    .bind(payload)
    .bind(first.traceparent.as_deref())
    .bind(i32::try_from(rows.len()).unwrap_or(i32::MAX))
    .execute(conn)
    .await?;
    Ok(())
}

fn push_frame(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Splits a framed outbox payload into (msg_id, event payload) pairs, sharing its buffer.
/// `None` when the payload is not a whole number of frames.
pub fn read_frames(payload: &Bytes) -> Option<Vec<(String, Bytes)>> {
    let mut out = Vec::new();
    let mut at = 0;
    let next = |at: &mut usize| -> Option<Bytes> {
        let len = payload.get(*at..*at + 4)?;
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let start = *at + 4;
        let end = start.checked_add(len).filter(|&end| end <= payload.len())?;
        *at = end;
        Some(payload.slice(start..end))
    };
    while at < payload.len() {
        let msg_id = String::from_utf8(next(&mut at)?.to_vec()).ok()?;
        out.push((msg_id, next(&mut at)?));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, payload: &[u8]) -> OutboxRow {
        OutboxRow {
            msg_id: id.to_owned(),
            subject: "mesh.change.hr".to_owned(),
            payload: payload.to_vec(),
            traceparent: None,
        }
    }

    #[test]
    fn frames_round_trip_in_order() {
        let rows = [row("a", b"one"), row("bb", b""), row("c", &[0, 1, 2, 255])];
        let mut payload = Vec::new();
        for r in &rows {
            push_frame(&mut payload, r.msg_id.as_bytes());
            push_frame(&mut payload, &r.payload);
        }
        let frames = read_frames(&Bytes::from(payload)).expect("frames");
        let got: Vec<(&str, &[u8])> = frames.iter().map(|(i, p)| (i.as_str(), &p[..])).collect();
        assert_eq!(
            got,
            [
                ("a", &b"one"[..]),
                ("bb", &b""[..]),
                ("c", &[0, 1, 2, 255][..])
            ]
        );
    }

    #[test]
    fn a_truncated_frame_is_refused() {
        let mut payload = Vec::new();
        push_frame(&mut payload, b"id");
        push_frame(&mut payload, b"payload");
        payload.pop();
        assert!(read_frames(&Bytes::from(payload.clone())).is_none());
        // A msg id without its payload.
        payload.truncate(6);
        assert!(read_frames(&Bytes::from(payload)).is_none());
    }
}
