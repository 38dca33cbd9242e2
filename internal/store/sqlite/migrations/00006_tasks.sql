-- +goose Up
-- The task queue proper: leases, results, errors and the invariants that
-- keep a task with one owner at most. SQLite cannot add CHECKs to a table,
-- so it is rebuilt (nothing references it by foreign key).
CREATE TABLE tasks_new (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind <> ''),
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'claimed', 'succeeded', 'failed', 'dead', 'cancelled')),
    payload          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(payload)),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 100),
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    run_after        INTEGER NOT NULL,
    result           TEXT CHECK (result IS NULL OR json_valid(result)),
    error            TEXT NOT NULL DEFAULT '',
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    CHECK (attempts <= max_attempts),
    CHECK (status <> 'claimed' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL AND attempts >= 1)),
    CHECK (status <> 'queued' OR lease_owner IS NULL),
    CHECK ((status IN ('queued', 'claimed')) = (ended_at IS NULL))
) STRICT;
INSERT INTO tasks_new (id, kind, project_id, status, payload, attempts, max_attempts, lease_owner, lease_expires_at,
    run_after, result, created_at, updated_at, ended_at)
    SELECT id, kind, project_id, status, payload, attempts, max_attempts,
        CASE WHEN status = 'queued' THEN NULL ELSE lease_owner END, lease_expires_at, run_after, result,
        created_at, updated_at, CASE WHEN status IN ('queued', 'claimed') THEN NULL ELSE updated_at END
    FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_new RENAME TO tasks;
CREATE INDEX tasks_queue ON tasks (run_after, created_at) WHERE status = 'queued';
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'claimed';
CREATE INDEX tasks_owner ON tasks (lease_owner) WHERE status = 'claimed';
CREATE INDEX tasks_newest ON tasks (created_at DESC, id DESC);

-- A task's log: the same shape as a command's events.
CREATE TABLE task_events (
    task_id TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    id      INTEGER NOT NULL CHECK (id > 0),
    type    TEXT NOT NULL CHECK (type IN ('start', 'stdout', 'stderr', 'exit', 'truncated')),
    data    BLOB,
    enc     INTEGER NOT NULL DEFAULT 0 CHECK (enc IN (0, 1)),
    size    INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),
    meta    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),
    at      INTEGER NOT NULL,
    PRIMARY KEY (task_id, id)
) STRICT;

CREATE TABLE workers (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL CHECK (name <> ''),
    kinds        TEXT NOT NULL CHECK (json_valid(kinds) AND json_type(kinds) = 'array'),
    capacity     INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 1024),
    built_in     INTEGER NOT NULL DEFAULT 0 CHECK (built_in IN (0, 1)),
    created_at   INTEGER NOT NULL,
    heartbeat_at INTEGER NOT NULL
) STRICT;
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);

-- +goose Down
DROP TABLE workers;
DROP TABLE task_events;
DROP INDEX tasks_newest;
DROP INDEX tasks_owner;
DROP INDEX tasks_leases;
DROP INDEX tasks_queue;
CREATE INDEX tasks_queue ON tasks (kind, run_after) WHERE status = 'queued';
