-- +goose Up
CREATE TABLE sessions (
    id             TEXT PRIMARY KEY CHECK (id NOT GLOB '*[^a-z0-9-]*' AND length(id) BETWEEN 1 AND 63),
    project_id     TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- Deferred: a session is inserted before its checkout, so that a race
    -- for the project is decided by the session index first.
    checkout_id    TEXT NOT NULL UNIQUE REFERENCES checkouts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    pod_name       TEXT NOT NULL,
    preview_port   INTEGER NOT NULL CHECK (preview_port BETWEEN 1 AND 65535),
    preview_url    TEXT NOT NULL,
    status         TEXT NOT NULL CHECK (status IN ('active', 'ended', 'expired', 'terminated')),
    created_by     TEXT NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    last_active_at INTEGER NOT NULL,
    ended_at       INTEGER,
    review_task_id TEXT,
    CHECK ((status = 'active') = (ended_at IS NULL))
) STRICT;
-- At most one active session per project: the database decides.
CREATE UNIQUE INDEX sessions_one_active ON sessions (project_id) WHERE status = 'active';
CREATE INDEX sessions_project_newest ON sessions (project_id, created_at DESC, id DESC);
CREATE INDEX sessions_active_expiry ON sessions (expires_at) WHERE status = 'active';

-- +goose Down
DROP TABLE sessions;
