-- +goose Up
CREATE TABLE projects (
    id                 TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 40
                           AND id NOT GLOB '*[^a-z0-9-]*' AND id NOT GLOB '-*' AND id NOT GLOB '*-'),
    name               TEXT NOT NULL CHECK (name <> ''),
    default_branch     TEXT NOT NULL CHECK (default_branch <> ''),
    protected_branches TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(protected_branches)),
    review_command     TEXT NOT NULL DEFAULT '',
    components         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(components)),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL
) STRICT;
CREATE INDEX projects_newest ON projects (created_at DESC, id DESC);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL CHECK (name <> ''),
    scopes       TEXT NOT NULL CHECK (json_valid(scopes) AND json_array_length(scopes) > 0),
    projects     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(projects)),
    hash         TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),
    created_by   TEXT NOT NULL DEFAULT '',
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    deleted_at   INTEGER
) STRICT;
CREATE INDEX api_keys_newest ON api_keys (created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    key_id     TEXT NOT NULL,
    method     TEXT NOT NULL,
    route      TEXT NOT NULL,
    target     TEXT NOT NULL,
    status     INTEGER NOT NULL CHECK (status BETWEEN 100 AND 599),
    request_id TEXT NOT NULL
) STRICT;
CREATE INDEX audit_log_key ON audit_log (key_id, id);
CREATE INDEX audit_log_target ON audit_log (target, id);
CREATE INDEX audit_log_at ON audit_log (at);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE api_keys;
DROP TABLE projects;
