-- +goose Up
CREATE TABLE projects (
    id                 text PRIMARY KEY CHECK (id ~ '^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$'),
    name               text NOT NULL CHECK (name <> ''),
    default_branch     text NOT NULL CHECK (default_branch <> ''),
    protected_branches jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(protected_branches) = 'array'),
    review_command     text NOT NULL DEFAULT '',
    components         jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(components) = 'array'),
    created_at         timestamptz NOT NULL,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX projects_newest ON projects (created_at DESC, id DESC);

CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    name         text NOT NULL CHECK (name <> ''),
    scopes       jsonb NOT NULL CHECK (jsonb_typeof(scopes) = 'array' AND jsonb_array_length(scopes) > 0),
    projects     jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(projects) = 'array'),
    hash         text NOT NULL UNIQUE CHECK (length(hash) = 64),
    created_by   text NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    last_used_at timestamptz,
    deleted_at   timestamptz
);
CREATE INDEX api_keys_newest ON api_keys (created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE audit_log (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL,
    key_id     text NOT NULL,
    method     text NOT NULL,
    route      text NOT NULL,
    target     text NOT NULL,
    status     integer NOT NULL CHECK (status BETWEEN 100 AND 599),
    request_id text NOT NULL
);
CREATE INDEX audit_log_key ON audit_log (key_id, id);
CREATE INDEX audit_log_target ON audit_log (target, id);
CREATE INDEX audit_log_at ON audit_log (at);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE api_keys;
DROP TABLE projects;
