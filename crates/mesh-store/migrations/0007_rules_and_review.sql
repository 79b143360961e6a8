-- Rule set versions (RuleAdmin), and the review queue's "ignore".
--
-- A rule set is applied atomically as a new, numbered version; versions start at 1 and only
-- grow (a rollback is a new version with an old content). The highest version is the one in
-- force. Services read it at start and again when the query service announces a change on
-- `mesh.rules.changed`, and stamp it on every outcome as `rule_version`.
CREATE TABLE rule_versions (
    version       bigint      PRIMARY KEY CHECK (version > 0),
    actor         text        NOT NULL,
    reason        text        NOT NULL,
    applied_at    timestamptz NOT NULL DEFAULT now(),
    -- Hex SHA-256 over the files (paths and contents, in path order).
    digest        text        NOT NULL,
    -- Rule kind -> count.
    summary       jsonb       NOT NULL,
    restored_from bigint      REFERENCES rule_versions (version),
    -- [{"path": ..., "content": ...}] in path order.
    files         jsonb       NOT NULL
);

-- An operator's "ignore" of a review entry holds while the connector object has not changed:
-- it names the MESH_CHANGES sequence it was given for.
ALTER TABLE connector_objects ADD COLUMN review_ignored_sequence bigint;

-- Which stage has re-evaluated its whole state under which rule version (flow resolves every
-- mesh object again, projection projects every one again): a stage that was down when a
-- version was applied catches up at start.
CREATE TABLE rule_sweeps (
    stage    text        NOT NULL,
    version  bigint      NOT NULL,
    swept_at timestamptz NOT NULL DEFAULT now(),
    -- How many objects changed.
    changed  bigint      NOT NULL,
    PRIMARY KEY (stage, version)
);

-- Who pinned an override (the query service's SetOverride names an actor).
ALTER TABLE mesh_overrides ADD COLUMN actor text NOT NULL DEFAULT '';

-- The rule set version flow last resolved each mesh object under.
ALTER TABLE mesh_objects ADD COLUMN rule_version bigint NOT NULL DEFAULT 0;
