-- The inbox: ids of messages whose effect a consumer has committed.
--
-- A handler claims a message id in the same transaction as its effect; a redelivery (after a
-- crash, a lost ack, or beyond JetStream's duplicate window) finds the id claimed and skips the
-- effect. Rows older than the longest replay horizon are pruned by `inbox::prune`.
CREATE TABLE inbox (
    consumer     text        NOT NULL,
    message_id   text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, message_id)
);

CREATE INDEX inbox_processed_at ON inbox (processed_at);
