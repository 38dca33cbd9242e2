-- +goose Up
-- A project's sandbox settings: resource limits and egress policy (see
-- docs/security.md).
ALTER TABLE projects ADD COLUMN limits jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(limits) = 'object');
ALTER TABLE projects ADD COLUMN egress jsonb NOT NULL DEFAULT '{"mode":"public"}'
    CHECK (jsonb_typeof(egress) = 'object' AND egress->>'mode' IN ('public', 'none', 'allow'));

-- +goose Down
ALTER TABLE projects DROP COLUMN egress;
ALTER TABLE projects DROP COLUMN limits;
