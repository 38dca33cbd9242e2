-- +goose Up
-- A worker belongs to the API key that registered it ('' for the
-- built-in one) and claims only the projects of that key's allow-list
-- ('[]': every project).
ALTER TABLE workers ADD COLUMN key_id text NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN projects jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(projects) = 'array');

-- The claim of 00008 with the worker's projects (NULL: every project).
-- The old signature stays for servers of the previous version.
-- +goose StatementBegin
CREATE FUNCTION rdev_claim_task(worker text, lease_until timestamptz, now_at timestamptz, wanted text[], allowed text[])
RETURNS SETOF tasks LANGUAGE sql
SET enable_bitmapscan = off SET enable_sort = off
AS $$
    UPDATE tasks SET status = 'claimed', lease_owner = worker, lease_expires_at = lease_until,
        attempts = attempts + 1, updated_at = now_at
    WHERE id = (SELECT id FROM tasks WHERE status = 'queued' AND run_after <= now_at AND kind = ANY(wanted)
        AND (allowed IS NULL OR project_id = ANY(allowed))
        ORDER BY run_after, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING *;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION rdev_claim_task(text, timestamptz, timestamptz, text[], text[]);
ALTER TABLE workers DROP COLUMN projects;
ALTER TABLE workers DROP COLUMN key_id;
