-- Connector agent (services/connector-agent): SCIM resources, the transactional outbox of
-- change events, and the state of HR feeds.

-- SCIM resources served by inbound SCIM connectors, one row per resource. `data` is the
-- resource as stored (canonical attribute names, no password, no computed attributes);
-- `unique_key` is the lowercased userName (User) or name (ServiceAccount), unique per
-- connector and resource type; `version` backs meta.version and the ETag.
CREATE TABLE scim_resources (
    connector     text        NOT NULL,
    resource_type text        NOT NULL,
    id            uuid        NOT NULL,
    unique_key    text,
    external_id   text,
    data          jsonb       NOT NULL,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    modified_at   timestamptz NOT NULL,
    PRIMARY KEY (connector, resource_type, id)
);

CREATE UNIQUE INDEX scim_resources_unique_key
    ON scim_resources (connector, resource_type, unique_key) WHERE unique_key IS NOT NULL;
CREATE INDEX scim_resources_external_id
    ON scim_resources (connector, resource_type, external_id) WHERE external_id IS NOT NULL;
CREATE INDEX scim_resources_order ON scim_resources (connector, resource_type, created_at, id);
CREATE INDEX scim_resources_members ON scim_resources USING gin ((data -> 'members') jsonb_path_ops)
    WHERE resource_type = 'Group';

-- The transactional outbox: a change event is written here in the transaction that makes the
-- change durable, and the relay publishes it to MESH_CHANGES afterwards, then marks it sent.
-- Nothing is lost while NATS is down; a crash between publish and mark republishes the same
-- Nats-Msg-Id, which JetStream and the consumers' inboxes drop.
CREATE TABLE connector_outbox (
    seq          bigserial   PRIMARY KEY,
    msg_id       text        NOT NULL,
    subject      text        NOT NULL,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);

CREATE INDEX connector_outbox_pending ON connector_outbox (seq) WHERE published_at IS NULL;
CREATE INDEX connector_outbox_published ON connector_outbox (published_at)
    WHERE published_at IS NOT NULL;

-- The last applied extract of each HR feed: one row per record, with a digest of its mapped
-- attributes so that an unchanged record costs no event.
CREATE TABLE hr_records (
    connector   text        NOT NULL,
    object_type text        NOT NULL,
    external_id text        NOT NULL,
    digest      bytea       NOT NULL,
    attributes  jsonb       NOT NULL,
    import_id   uuid        NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (connector, object_type, external_id)
);

-- External ids seen by an import in progress (its first pass); leavers are the records of
-- hr_records that are not here. Unlogged: it is rebuilt by re-running the import.
CREATE UNLOGGED TABLE hr_import_seen (
    import_id   uuid NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (import_id, external_id)
);

-- Every import and its outcome (applied, held, failed), with its report.
CREATE TABLE hr_imports (
    import_id   uuid        PRIMARY KEY,
    connector   text        NOT NULL,
    source      text        NOT NULL,
    status      text        NOT NULL,
    report      jsonb       NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL
);

CREATE INDEX hr_imports_connector ON hr_imports (connector, started_at);
