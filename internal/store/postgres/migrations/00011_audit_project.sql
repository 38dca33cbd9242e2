-- +goose Up
-- The project an audited request acted on ('' when it named none), so
-- that a key restricted to some projects reads only their entries.
ALTER TABLE audit_log ADD COLUMN project_id text NOT NULL DEFAULT '';
CREATE INDEX audit_log_project ON audit_log (project_id, id);

-- +goose Down
DROP INDEX audit_log_project;
ALTER TABLE audit_log DROP COLUMN project_id;
