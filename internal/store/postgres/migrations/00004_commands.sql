-- +goose Up
CREATE TABLE commands (
    id            text PRIMARY KEY,
    session_id    text NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    project_id    text NOT NULL,
    spec          jsonb NOT NULL,
    status        text NOT NULL CHECK (status IN ('running', 'exited', 'killed', 'timeout', 'lost')),
    exit_code     integer,
    signal        text NOT NULL DEFAULT '',
    pid           integer NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL,
    ended_at      timestamptz,
    bytes         bigint NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    stored_bytes  bigint NOT NULL DEFAULT 0 CHECK (stored_bytes >= 0),
    dropped_bytes bigint NOT NULL DEFAULT 0 CHECK (dropped_bytes >= 0),
    last_event_id bigint NOT NULL DEFAULT 0,
    CHECK ((status = 'running') = (ended_at IS NULL))
);
CREATE INDEX commands_session_newest ON commands (session_id, started_at DESC, id DESC);
CREATE INDEX commands_running ON commands (session_id) WHERE status = 'running';

-- One row per event; output arrives in batched chunks.
CREATE TABLE command_events (
    command_id text NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
    id         bigint NOT NULL CHECK (id > 0),
    type       text NOT NULL CHECK (type IN ('start', 'stdout', 'stderr', 'exit', 'truncated')),
    data       bytea,
    meta       jsonb NOT NULL DEFAULT '{}',
    at         timestamptz NOT NULL,
    PRIMARY KEY (command_id, id)
);

-- +goose Down
DROP TABLE command_events;
DROP TABLE commands;
