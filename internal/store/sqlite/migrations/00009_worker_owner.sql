-- +goose Up
-- A worker belongs to the API key that registered it ('' for the
-- built-in one) and claims only the projects of that key's allow-list
-- ('[]': every project).
ALTER TABLE workers ADD COLUMN key_id TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN projects TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(projects) AND json_type(projects) = 'array');

-- +goose Down
ALTER TABLE workers DROP COLUMN projects;
ALTER TABLE workers DROP COLUMN key_id;
