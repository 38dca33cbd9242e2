-- +goose Up
-- A project's sandbox settings: resource limits and egress policy (JSON
-- objects; see docs/security.md).
ALTER TABLE projects ADD COLUMN limits TEXT NOT NULL DEFAULT '{}' CHECK (json_type(limits) = 'object');
ALTER TABLE projects ADD COLUMN egress TEXT NOT NULL DEFAULT '{"mode":"public"}' CHECK (json_type(egress) = 'object');

-- +goose Down
ALTER TABLE projects DROP COLUMN egress;
ALTER TABLE projects DROP COLUMN limits;
