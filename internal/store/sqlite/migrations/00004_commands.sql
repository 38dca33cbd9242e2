-- +goose Up
CREATE TABLE commands (
    id            TEXT PRIMARY KEY,
    session_id    TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    project_id    TEXT NOT NULL,
    spec          TEXT NOT NULL CHECK (json_valid(spec)),
    status        TEXT NOT NULL CHECK (status IN ('running', 'exited', 'killed', 'timeout', 'lost')),
    exit_code     INTEGER,
    signal        TEXT NOT NULL DEFAULT '',
    pid           INTEGER NOT NULL DEFAULT 0,
    started_at    INTEGER NOT NULL,
    ended_at      INTEGER,
    bytes         INTEGER NOT NULL DEFAULT 0 CHECK (bytes >= 0),
    stored_bytes  INTEGER NOT NULL DEFAULT 0 CHECK (stored_bytes >= 0),
    dropped_bytes INTEGER NOT NULL DEFAULT 0 CHECK (dropped_bytes >= 0),
    last_event_id INTEGER NOT NULL DEFAULT 0,
    CHECK ((status = 'running') = (ended_at IS NULL))
) STRICT;
CREATE INDEX commands_session_newest ON commands (session_id, started_at DESC, id DESC);
CREATE INDEX commands_running ON commands (session_id) WHERE status = 'running';

-- One row per event; output arrives in batched chunks.
CREATE TABLE command_events (
    command_id TEXT NOT NULL REFERENCES commands (id) ON DELETE CASCADE,
    id         INTEGER NOT NULL CHECK (id > 0),
    type       TEXT NOT NULL CHECK (type IN ('start', 'stdout', 'stderr', 'exit', 'truncated')),
    data       BLOB,
    meta       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(meta)),
    at         INTEGER NOT NULL,
    PRIMARY KEY (command_id, id)
) STRICT;

-- +goose Down
DROP TABLE command_events;
DROP TABLE commands;
