-- The projection service's state: what each target holds for each mesh object, the export
-- commands it issued and how they ended, and the mass-deletion guard of each target.
--
-- Ownership: projection writes every table here; `meshctl exports approve` releases a held
-- guard (exports.status 'held' -> 'queued', export_guards.held -> false).

-- The last mesh object version projected: a MeshObjectChanged of that version or older finds
-- nothing to do. The row is also the lock that serializes the consumer and the grace timer on
-- one mesh object.
CREATE TABLE projection_objects (
    mesh_object uuid   PRIMARY KEY,
    version     bigint NOT NULL
);

-- What each target holds for a mesh object once every issued command is applied
-- (mesh_engine::TargetState). No row: the target holds nothing.
CREATE TABLE projection_targets (
    mesh_object      uuid        NOT NULL,
    target           text        NOT NULL,
    -- provisioned | disabled
    status           text        NOT NULL,
    -- The target attributes last exported (tagged JSON).
    attributes       jsonb       NOT NULL,
    -- The object's id in the target, once a result told it.
    target_object_id text,
    -- disable-then-delete: when the grace timer deletes it.
    delete_after     timestamptz,
    PRIMARY KEY (mesh_object, target)
);

CREATE INDEX projection_targets_due ON projection_targets (delete_after)
    WHERE delete_after IS NOT NULL;

-- Every export command issued. Commands of one (mesh object, target) are sent one at a time in
-- `seq` order: the next waits until the one before is confirmed or has failed for good.
CREATE TABLE exports (
    seq              bigserial   PRIMARY KEY,
    idempotency_key  text        NOT NULL UNIQUE,
    mesh_object      uuid        NOT NULL,
    target           text        NOT NULL,
    -- create | update | disable | enable | delete
    operation        text        NOT NULL,
    mesh_object_version bigint   NOT NULL,
    rule             text        NOT NULL,
    -- The encoded ExportCommand as issued (attempt 1, no target object id).
    command          bytea       NOT NULL,
    -- queued (waiting to be sent at next_attempt_at) | held (mass-deletion guard) |
    -- sent (waiting for its result) | confirmed | failed (dead-lettered)
    status           text        NOT NULL,
    -- Sends so far; the next send is attempt `attempts + 1`.
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    -- The agent's last answer: applied | already-applied | retryable-failure | permanent-failure
    result           text,
    message          text,
    target_object_id text,
    -- W3C traceparent of the projection that issued it: each send continues that trace.
    traceparent      text,
    -- The command's issued_at (the causing event's time).
    issued_at        timestamptz NOT NULL,
    -- Wall clock: the guard's window counts deprovisions by it.
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Open commands per (mesh object, target), for the one-at-a-time rule.
CREATE INDEX exports_open ON exports (mesh_object, target, seq)
    WHERE status IN ('queued', 'held', 'sent');
-- What the dispatcher sends next.
CREATE INDEX exports_due ON exports (next_attempt_at, seq) WHERE status = 'queued';
-- Listing by target and status (meshctl exports) and the guard's window count.
CREATE INDEX exports_by_target ON exports (target, status, seq);
CREATE INDEX exports_deprovisions ON exports (target, created_at)
    WHERE operation IN ('disable', 'delete');

-- The mass-deletion guard of each target: while held, its deprovisions wait for approval.
CREATE TABLE export_guards (
    target      text        PRIMARY KEY,
    held        boolean     NOT NULL DEFAULT false,
    held_since  timestamptz,
    -- Deprovisions issued before this instant no longer count towards the threshold.
    approved_at timestamptz
);
