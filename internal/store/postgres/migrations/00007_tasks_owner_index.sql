-- +goose Up
-- Busy workers are counted from the claimed tasks (tasks_leases covers
-- them); one index fewer to update at every claim and completion.
DROP INDEX tasks_owner;

-- +goose Down
CREATE INDEX tasks_owner ON tasks (lease_owner) WHERE status = 'claimed';
