-- +goose Up
CREATE TABLE sessions (
    id             text PRIMARY KEY CHECK (id ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
    project_id     text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- Deferred: a session is inserted before its checkout, so that a race
    -- for the project is decided by the session index first.
    checkout_id    text NOT NULL UNIQUE REFERENCES checkouts (id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    pod_name       text NOT NULL,
    preview_port   integer NOT NULL CHECK (preview_port BETWEEN 1 AND 65535),
    preview_url    text NOT NULL,
    status         text NOT NULL CHECK (status IN ('active', 'ended', 'expired', 'terminated')),
    created_by     text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    last_active_at timestamptz NOT NULL,
    ended_at       timestamptz,
    review_task_id text,
    CHECK ((status = 'active') = (ended_at IS NULL))
);
-- At most one active session per project: the database decides.
CREATE UNIQUE INDEX sessions_one_active ON sessions (project_id) WHERE status = 'active';
CREATE INDEX sessions_project_newest ON sessions (project_id, created_at DESC, id DESC);
CREATE INDEX sessions_active_expiry ON sessions (expires_at) WHERE status = 'active';

-- +goose Down
DROP TABLE sessions;
