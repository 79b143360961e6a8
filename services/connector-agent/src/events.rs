//! Change events as the connector agent builds them, and the outbox rows that carry them.
//!
//! Every event id is derived, never random, so that the same change always yields the same
//! `Nats-Msg-Id`: a SCIM write from (connector, resource type, id, version), an HR change from
//! (import, object type, external id). A republish after a crash is then a duplicate that
//! JetStream and the consumers' inboxes drop.

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
        Self {
            msg_id: event.event_id.to_string(),
            subject: subject(&event.object.connector),
            payload: event.into_wire(),
            traceparent: mesh_runtime::telemetry::traceparent(&tracing::Span::current()),
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
