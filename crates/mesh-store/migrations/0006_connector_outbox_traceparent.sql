-- The W3C traceparent of the SCIM request or HR import that wrote an outbox row: the relay
-- publishes the change event in that trace, so one change is one trace from the connector
-- agent on. NULL for rows written before this column existed, or while tracing is off.
ALTER TABLE connector_outbox ADD COLUMN traceparent text;
