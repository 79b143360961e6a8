-- The pipeline's state: the management space (correlation), mesh objects and their
-- contributions (flow), overrides, the hash-chained audit log, and the stage outbox.
--
-- Ownership: correlation writes connector_objects, connector_object_join_values and creates
-- mesh_objects rows (version 0); flow writes the rest of mesh_objects, mesh_attributes,
-- mesh_links; both append to audit_log and stage_outbox. Values are stored as tagged JSON
-- (mesh_store::json) so that a timestamp stays a timestamp.

-- The management space: every connector object correlation has seen, deleted ones included
-- (a tombstone keeps the stream sequence, so a stale redelivery cannot resurrect it).
CREATE TABLE connector_objects (
    connector     text        NOT NULL,
    object_type   text        NOT NULL,
    external_id   text        NOT NULL,
    attributes    jsonb       NOT NULL,
    -- joined | disconnector | ambiguous | deleted
    state         text        NOT NULL,
    -- The whole JoinState (rule, method, ambiguous candidates).
    join_state    jsonb       NOT NULL,
    mesh_object   uuid,
    last_event    uuid        NOT NULL,
    last_event_time timestamptz NOT NULL,
    -- MESH_CHANGES stream sequence of the change applied last: older deliveries are stale.
    last_sequence bigint      NOT NULL,
    rule_version  bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, object_type, external_id)
);

CREATE INDEX connector_objects_mesh_object ON connector_objects (mesh_object)
    WHERE mesh_object IS NOT NULL;
CREATE INDEX connector_objects_review ON connector_objects (connector, state)
    WHERE state IN ('disconnector', 'ambiguous');

-- The values the join rules of an unjoined connector object read (raw source attribute, folded
-- name, join key), indexed so that a mesh attribute change finds the objects it may now join.
-- Rows exist only while the object is a disconnector or ambiguous.
CREATE TABLE connector_object_join_values (
    connector        text NOT NULL,
    object_type      text NOT NULL,
    external_id      text NOT NULL,
    source_attribute text NOT NULL,
    join_key         text NOT NULL,
    PRIMARY KEY (connector, object_type, external_id, source_attribute)
);

CREATE INDEX connector_object_join_values_search
    ON connector_object_join_values (connector, object_type, source_attribute, join_key);

-- Mesh objects. Correlation inserts a row when an anchor rule projects one (version 0, no
-- state yet); the unique anchor index turns two concurrent projections into one object (their
-- ids are derived from the anchor, so both sides agree on it).
CREATE TABLE mesh_objects (
    id               uuid        PRIMARY KEY,
    object_type      text        NOT NULL,
    anchor           text,
    anchor_attribute text,
    version          bigint      NOT NULL DEFAULT 0,
    lifecycle        text        NOT NULL DEFAULT 'active',
    authority_seen   boolean     NOT NULL DEFAULT false,
    -- Resolved attributes (tagged JSON object) and the winner of each (lineage).
    attributes       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    lineage          jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX mesh_objects_anchor ON mesh_objects (object_type, anchor)
    WHERE anchor IS NOT NULL;

-- Resolved scalar attributes by join key, for join search and attribute queries.
CREATE TABLE mesh_attributes (
    mesh_object uuid NOT NULL REFERENCES mesh_objects (id) ON DELETE CASCADE,
    object_type text NOT NULL,
    -- Folded (case-insensitive) attribute name.
    name        text NOT NULL,
    join_key    text NOT NULL,
    PRIMARY KEY (mesh_object, name)
);

CREATE INDEX mesh_attributes_search ON mesh_attributes (object_type, name, join_key);

-- Flow's view of each connector object joined to a mesh object: its raw attributes and the
-- event they came from, from which its contributions are computed (with the rules in force). A row with linked = false
-- is a withdrawal tombstone that keeps the stream sequence.
CREATE TABLE mesh_links (
    mesh_object     uuid        NOT NULL REFERENCES mesh_objects (id) ON DELETE CASCADE,
    connector       text        NOT NULL,
    object_type     text        NOT NULL,
    external_id     text        NOT NULL,
    linked          boolean     NOT NULL,
    attributes      jsonb       NOT NULL,
    event_id        uuid        NOT NULL,
    event_time      timestamptz NOT NULL,
    -- MESH_CHANGES stream sequence of the change these attributes come from (carried by the
    -- correlated change): an older one arriving late is stale.
    source_sequence bigint      NOT NULL,
    PRIMARY KEY (mesh_object, connector, object_type, external_id)
);

-- Per-object overrides: one attribute pinned above every rule until removed.
CREATE TABLE mesh_overrides (
    mesh_object uuid        NOT NULL REFERENCES mesh_objects (id) ON DELETE CASCADE,
    name        text        NOT NULL,
    value       jsonb       NOT NULL,
    reason      text        NOT NULL,
    set_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (mesh_object, name)
);

-- The audit log: append-only and hash-chained. A batch appends to a chain of its stage that no
-- other transaction holds (its head row locked with SKIP LOCKED; a new chain when all are
-- busy), so concurrent workers and replicas never wait for each other and each chain has one
-- writer at a time. hash = sha256(prev_hash || canonical row); the head holds the last seq and
-- hash, so deleting the newest rows is detected too.
CREATE TABLE audit_log (
    chain            text        NOT NULL,
    seq              bigint      NOT NULL,
    at               timestamptz NOT NULL,
    kind             text        NOT NULL,
    event_id         uuid,
    mesh_object      uuid,
    connector_object text,
    rule             text,
    detail           jsonb       NOT NULL,
    prev_hash        bytea       NOT NULL,
    hash             bytea       NOT NULL,
    PRIMARY KEY (chain, seq)
);

CREATE INDEX audit_log_mesh_object ON audit_log (mesh_object, at) WHERE mesh_object IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE audit_heads (
    chain  text   PRIMARY KEY,
    -- The stage whose batches append to it (`correlation`, `flow`, ...).
    writer text   NOT NULL,
    seq    bigint NOT NULL,
    hash   bytea  NOT NULL
);

CREATE INDEX audit_heads_writer ON audit_heads (writer);

-- Messages a stage committed and has not yet seen JetStream accept: written in the batch's
-- transaction, published after the commit, deleted once acknowledged.
CREATE TABLE stage_outbox (
    stage    text   NOT NULL,
    id       bigserial,
    subject  text   NOT NULL,
    msg_id   text   NOT NULL,
    schema   text   NOT NULL,
    payload  bytea  NOT NULL,
    PRIMARY KEY (stage, id)
);
