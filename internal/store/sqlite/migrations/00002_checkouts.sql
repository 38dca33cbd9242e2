-- +goose Up
CREATE TABLE checkouts (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    branch         TEXT NOT NULL CHECK (branch <> ''),
    feature_slug   TEXT NOT NULL DEFAULT '',
    base_commit    TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL CHECK (status IN ('active', 'checked_in', 'expired', 'revoked')),
    token_hash     TEXT NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    created_by     TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    ended_at       INTEGER,
    review_task_id TEXT,
    CHECK ((status = 'active') = (ended_at IS NULL))
) STRICT;
-- At most one active checkout per (project, branch): the database decides.
CREATE UNIQUE INDEX checkouts_one_active ON checkouts (project_id, branch) WHERE status = 'active';
CREATE INDEX checkouts_project_newest ON checkouts (project_id, created_at DESC, id DESC);
CREATE INDEX checkouts_active_expiry ON checkouts (expires_at) WHERE status = 'active';

-- Queued work. The executor arrives with the tasks issue; check-in stores
-- review tasks here now.
CREATE TABLE tasks (
    id               TEXT PRIMARY KEY,
    kind             TEXT NOT NULL CHECK (kind <> ''),
    project_id       TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'claimed', 'succeeded', 'failed', 'dead', 'cancelled')),
    payload          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(payload)),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    run_after        INTEGER NOT NULL,
    result           TEXT CHECK (result IS NULL OR json_valid(result)),
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX tasks_queue ON tasks (kind, run_after) WHERE status = 'queued';

-- +goose Down
DROP TABLE tasks;
DROP TABLE checkouts;
