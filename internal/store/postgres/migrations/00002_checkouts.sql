-- +goose Up
CREATE TABLE checkouts (
    id             text PRIMARY KEY,
    project_id     text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    branch         text NOT NULL CHECK (branch <> ''),
    feature_slug   text NOT NULL DEFAULT '',
    base_commit    text NOT NULL DEFAULT '',
    status         text NOT NULL CHECK (status IN ('active', 'checked_in', 'expired', 'revoked')),
    token_hash     text NOT NULL UNIQUE CHECK (length(token_hash) = 64),
    created_by     text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL,
    ended_at       timestamptz,
    review_task_id text,
    CHECK ((status = 'active') = (ended_at IS NULL))
);
-- At most one active checkout per (project, branch): the database decides.
CREATE UNIQUE INDEX checkouts_one_active ON checkouts (project_id, branch) WHERE status = 'active';
CREATE INDEX checkouts_project_newest ON checkouts (project_id, created_at DESC, id DESC);
CREATE INDEX checkouts_active_expiry ON checkouts (expires_at) WHERE status = 'active';

-- Queued work. The executor arrives with the tasks issue; check-in stores
-- review tasks here now.
CREATE TABLE tasks (
    id               text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind <> ''),
    project_id       text NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    status           text NOT NULL CHECK (status IN ('queued', 'claimed', 'succeeded', 'failed', 'dead', 'cancelled')),
    payload          jsonb NOT NULL DEFAULT '{}',
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    lease_owner      text,
    lease_expires_at timestamptz,
    run_after        timestamptz NOT NULL,
    result           jsonb,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX tasks_queue ON tasks (kind, run_after) WHERE status = 'queued';

-- +goose Down
DROP TABLE tasks;
DROP TABLE checkouts;
