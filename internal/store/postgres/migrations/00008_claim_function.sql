-- +goose Up
-- The claim as a function whose plan does not depend on statistics. A
-- queue table's statistics are stale by nature (a burst of tasks arrives
-- between two autovacuum analyses); with none, the planner expects a
-- handful of queued rows and picks a bitmap scan that sorts every queued
-- task on each claim. With bitmap scans and sorts priced out for this
-- statement, the claim reads the queue's index from its head, whatever
-- the estimates.
-- +goose StatementBegin
CREATE FUNCTION rdev_claim_task(worker text, lease_until timestamptz, now_at timestamptz, wanted text[])
RETURNS SETOF tasks LANGUAGE sql
SET enable_bitmapscan = off SET enable_sort = off
AS $$
    UPDATE tasks SET status = 'claimed', lease_owner = worker, lease_expires_at = lease_until,
        attempts = attempts + 1, updated_at = now_at
    WHERE id = (SELECT id FROM tasks WHERE status = 'queued' AND run_after <= now_at AND kind = ANY(wanted)
        ORDER BY run_after, created_at LIMIT 1 FOR UPDATE SKIP LOCKED)
    RETURNING *;
$$;
-- +goose StatementEnd

-- +goose Down
DROP FUNCTION rdev_claim_task(text, timestamptz, timestamptz, text[]);
