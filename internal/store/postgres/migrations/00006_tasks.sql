-- +goose Up
-- The task queue proper: leases, results, errors and the invariants that
-- keep a task with one owner at most.
ALTER TABLE tasks ADD COLUMN error text NOT NULL DEFAULT '';
ALTER TABLE tasks ADD COLUMN ended_at timestamptz;
UPDATE tasks SET lease_owner = NULL WHERE status = 'queued';
UPDATE tasks SET ended_at = updated_at WHERE status NOT IN ('queued', 'claimed');
ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_max_attempts_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_max_attempts_range CHECK (max_attempts BETWEEN 1 AND 100);
ALTER TABLE tasks ADD CONSTRAINT tasks_attempts_bound CHECK (attempts <= max_attempts);
ALTER TABLE tasks ADD CONSTRAINT tasks_claimed_lease CHECK (status <> 'claimed' OR (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL AND attempts >= 1));
ALTER TABLE tasks ADD CONSTRAINT tasks_queued_unowned CHECK (status <> 'queued' OR lease_owner IS NULL);
ALTER TABLE tasks ADD CONSTRAINT tasks_ended CHECK ((status IN ('queued', 'claimed')) = (ended_at IS NULL));
DROP INDEX tasks_queue;
CREATE INDEX tasks_queue ON tasks (run_after, created_at) WHERE status = 'queued';
CREATE INDEX tasks_leases ON tasks (lease_expires_at) WHERE status = 'claimed';
CREATE INDEX tasks_owner ON tasks (lease_owner) WHERE status = 'claimed';
CREATE INDEX tasks_newest ON tasks (created_at DESC, id DESC);

-- A task's log: the same shape as a command's events.
CREATE TABLE task_events (
    task_id text NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    id      bigint NOT NULL CHECK (id > 0),
    type    text NOT NULL CHECK (type IN ('start', 'stdout', 'stderr', 'exit', 'truncated')),
    data    bytea,
    enc     smallint NOT NULL DEFAULT 0 CHECK (enc IN (0, 1)),
    size    bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    meta    jsonb NOT NULL DEFAULT '{}',
    at      timestamptz NOT NULL,
    PRIMARY KEY (task_id, id)
);
ALTER TABLE task_events ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE workers (
    id           text PRIMARY KEY,
    name         text NOT NULL CHECK (name <> ''),
    kinds        jsonb NOT NULL CHECK (jsonb_typeof(kinds) = 'array'),
    capacity     integer NOT NULL CHECK (capacity BETWEEN 1 AND 1024),
    built_in     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL,
    heartbeat_at timestamptz NOT NULL
);
CREATE INDEX workers_heartbeat ON workers (heartbeat_at);

-- +goose Down
DROP TABLE workers;
DROP TABLE task_events;
DROP INDEX tasks_newest;
DROP INDEX tasks_owner;
DROP INDEX tasks_leases;
DROP INDEX tasks_queue;
CREATE INDEX tasks_queue ON tasks (kind, run_after) WHERE status = 'queued';
ALTER TABLE tasks DROP CONSTRAINT tasks_ended;
ALTER TABLE tasks DROP CONSTRAINT tasks_queued_unowned;
ALTER TABLE tasks DROP CONSTRAINT tasks_claimed_lease;
ALTER TABLE tasks DROP CONSTRAINT tasks_attempts_bound;
ALTER TABLE tasks DROP CONSTRAINT tasks_max_attempts_range;
ALTER TABLE tasks ADD CONSTRAINT tasks_max_attempts_check CHECK (max_attempts >= 1);
ALTER TABLE tasks DROP COLUMN ended_at;
ALTER TABLE tasks DROP COLUMN error;
