-- The provisioning agent's state: which export commands it has applied, and which object in
-- each target holds each mesh object.
--
-- Ownership: provisioning-agent writes both tables; projection may read them. Every row is
-- written in the transaction that claims the command's message id in the inbox and writes its
-- ExportResult to the stage outbox, so a recorded command always has a published result.

-- Export commands applied (or found already applied) in their target, by idempotency key
-- (`<mesh object>/<target>/<version>/<operation>`). A command whose key is here is answered
-- ALREADY_APPLIED without touching the target. Failures are never recorded: a retry with the
-- next attempt reaches the target again.
CREATE TABLE provisioning_applied (
    idempotency_key  text        PRIMARY KEY,
    target           text        NOT NULL,
    mesh_object      uuid        NOT NULL,
    -- create | update | disable | enable | delete
    operation        text        NOT NULL,
    mesh_object_version bigint   NOT NULL,
    -- applied | already_applied: how the first application ended.
    status           text        NOT NULL,
    -- The object's id in the target after the command (a SCIM id, a key value, a DN).
    target_object_id text,
    -- The attempt that applied it.
    attempt          integer     NOT NULL,
    applied_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX provisioning_applied_object ON provisioning_applied (target, mesh_object);
CREATE INDEX provisioning_applied_at ON provisioning_applied (applied_at);

-- The object each target holds for a mesh object, learned from a create (or an adoption) and
-- kept current by updates that rename it (a new key value or RDN). Update, disable, enable and
-- delete find their object here when the command carries no target object id. A delete
-- removes the row.
CREATE TABLE provisioning_objects (
    target           text        NOT NULL,
    mesh_object      uuid        NOT NULL,
    target_object_id text        NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, mesh_object)
);
