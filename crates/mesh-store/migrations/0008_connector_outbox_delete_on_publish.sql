-- The outbox relay deletes each row in the transaction that publishes it
-- (services/connector-agent/src/outbox.rs): every row left in connector_outbox is pending,
-- and the primary key is the relay's order. A published row used to be marked and pruned an
-- hour later, which wrote every event three times; the published events are kept by
-- MESH_CHANGES instead.
--
-- A bulk writer (an HR import batch) writes one *framed* row holding `events` change events
-- (services/connector-agent/src/events.rs); the relay publishes each as its own message. Its
-- payload is stored uncompressed: it is written once and read once.
--
-- `published_at` stays, unused by this release, so that a relay of the previous release still
-- running during a rolling update keeps working: rows it marks are published again by the new
-- relay with the same Nats-Msg-Id, which JetStream and the consumers' inboxes drop. Framed
-- rows are written with published_at = 'infinity', which that relay neither publishes (it
-- could not read them) nor prunes.
DELETE FROM connector_outbox WHERE published_at IS NOT NULL;
DROP INDEX connector_outbox_pending;
DROP INDEX connector_outbox_published;
ALTER TABLE connector_outbox
    ADD COLUMN events integer NOT NULL DEFAULT 1,
    ADD COLUMN framed boolean NOT NULL DEFAULT false,
    ALTER COLUMN payload SET STORAGE EXTERNAL;
