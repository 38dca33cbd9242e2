package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/outbuf"
)

const taskCols = `id, kind, project_id, status, payload, attempts, max_attempts, lease_owner, lease_expires_at, run_after, result, error, created_at, updated_at, ended_at`

func scanTask(row pgx.Row) (*rdev.Task, error) {
	var t rdev.Task
	var payload, result []byte
	var owner *string
	if err := row.Scan(&t.ID, &t.Kind, &t.ProjectID, &t.Status, &payload, &t.Attempts, &t.MaxAttempts, &owner, &t.LeaseExpiresAt,
		&t.RunAfter, &result, &t.Error, &t.CreatedAt, &t.UpdatedAt, &t.EndedAt); err != nil {
		return nil, err
	}
	t.Payload = payload
	if result != nil {
		t.Result = result
	}
	if owner != nil {
		t.LeaseOwner = *owner
	}
	t.LeaseExpiresAt, t.RunAfter, t.CreatedAt, t.UpdatedAt, t.EndedAt = utcPtr(t.LeaseExpiresAt), utc(t.RunAfter), utc(t.CreatedAt), utc(t.UpdatedAt), utcPtr(t.EndedAt)
	return &t, nil
}

// oneTask runs a statement that returns at most one task; nil when none.
func oneTask(ctx context.Context, db interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, q string, args ...any) (*rdev.Task, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	ts, err := collect(rows, scanTask)
	if err != nil || len(ts) == 0 {
		return nil, err
	}
	return ts[0], nil
}

// CreateTask inserts a queued task.
func (s *Store) CreateTask(ctx context.Context, t *rdev.Task) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO tasks (id, kind, project_id, status, payload, attempts, max_attempts, run_after, created_at, updated_at)
		VALUES ($1, $2, $3, 'queued', $4, 0, $5, $6, $7, $8)`, t.ID, t.Kind, t.ProjectID, string(t.Payload), t.MaxAttempts,
		t.RunAfter, t.CreatedAt, t.UpdatedAt)
	if pgCode(err) == "23503" {
		return rdev.ErrProjectNotFound
	}
	return err
}

// GetTask returns a task, or rdev.ErrTaskNotFound.
func (s *Store) GetTask(ctx context.Context, id string) (*rdev.Task, error) {
	t, err := oneTask(ctx, s.pool, `SELECT `+taskCols+` FROM tasks WHERE id = $1`, id)
	if err == nil && t == nil {
		err = rdev.ErrTaskNotFound
	}
	return t, err
}

// ListTasks returns a page of tasks, newest first.
func (s *Store) ListTasks(ctx context.Context, f rdev.TaskFilter, page rdev.Page) ([]*rdev.Task, string, error) {
	q := `SELECT ` + taskCols + ` FROM tasks WHERE true`
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	for _, c := range []struct{ col, v string }{{"kind", f.Kind}, {"status", f.Status}, {"project_id", f.ProjectID}} {
		if c.v != "" {
			q += ` AND ` + c.col + ` = ` + arg(c.v)
		}
	}
	if f.Projects != nil {
		q += ` AND project_id = ANY(` + arg(f.Projects) + `)`
	}
	if page.Cursor != "" {
		t, id, err := rdev.DecodeCursor(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (created_at, id) < (` + arg(t) + `, ` + arg(id) + `)`
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ` + arg(page.Limit+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	out, err := collect(rows, scanTask)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.Task) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// ClaimTask gives the oldest runnable task of the kinds to the worker in one
// statement (the rdev_claim_task function, migration 00008): UPDATE … WHERE
// id = (SELECT … FOR UPDATE SKIP LOCKED) lets concurrent claims pass each
// other instead of queueing on the same row, and no row gets two owners.
func (s *Store) ClaimTask(ctx context.Context, c rdev.Claim) (*rdev.Task, error) {
	return oneTask(ctx, s.pool, `SELECT `+taskCols+` FROM rdev_claim_task($1, $2, $3, $4, $5)`,
		c.WorkerID, c.Now.Add(c.Lease), c.Now, c.Kinds, allowed(c.Projects))
}

// held runs an update of a task the worker holds; when it matches no row
// it tells why.
func (s *Store) held(ctx context.Context, id, q string, args ...any) (*rdev.Task, error) {
	ts, err := s.finishing(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	if len(ts) == 1 {
		return ts[0], nil
	}
	if _, err := s.GetTask(ctx, id); err != nil {
		return nil, err
	}
	return nil, rdev.ErrLeaseNotHeld
}

// finishing runs an update of tasks that returns their columns.
func (s *Store) finishing(ctx context.Context, q string, args ...any) ([]*rdev.Task, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanTask)
}

// HeartbeatTask extends the lease of a task the worker holds.
func (s *Store) HeartbeatTask(ctx context.Context, id, workerID string, now time.Time, lease time.Duration) (*rdev.Task, error) {
	return s.held(ctx, id, `UPDATE tasks SET lease_expires_at = CASE WHEN status = 'claimed' THEN $1 ELSE lease_expires_at END, updated_at = $2
		WHERE id = $3 AND lease_owner = $4 AND status IN ('claimed', 'cancelled') RETURNING `+taskCols,
		now.Add(lease), now, id, workerID)
}

// CompleteTask marks a held task succeeded.
func (s *Store) CompleteTask(ctx context.Context, id, workerID string, result json.RawMessage, now time.Time) (*rdev.Task, error) {
	var res any
	if len(result) > 0 {
		res = string(result)
	}
	return s.held(ctx, id, `UPDATE tasks SET status = 'succeeded', result = $1, updated_at = $2, ended_at = $2
		WHERE id = $3 AND lease_owner = $4 AND status = 'claimed' RETURNING `+taskCols, res, now, id, workerID)
}

// CompleteAndClaim completes a held task and claims the next one in one
// statement: the claim runs only when the completion matched (a one-time
// filter on the completed row).
func (s *Store) CompleteAndClaim(ctx context.Context, id string, result json.RawMessage, c rdev.Claim) (*rdev.Task, *rdev.Task, error) {
	var res any
	if len(result) > 0 {
		res = string(result)
	}
	rows, err := s.pool.Query(ctx, `WITH done AS (
			UPDATE tasks SET status = 'succeeded', result = $1, updated_at = $2, ended_at = $2
			WHERE id = $3 AND lease_owner = $4 AND status = 'claimed' RETURNING `+taskCols+`)
		SELECT true, `+taskCols+` FROM done
		UNION ALL
		SELECT false, `+taskCols+` FROM rdev_claim_task($4, $5, $2, $6, $7) WHERE (SELECT count(*) FROM done) = 1`,
		res, c.Now, id, c.WorkerID, c.Now.Add(c.Lease), c.Kinds, allowed(c.Projects))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var done, next *rdev.Task
	for rows.Next() {
		var first bool
		t, err := scanTask(prefixed{rows, &first})
		if err != nil {
			return nil, nil, err
		}
		if first {
			done = t
		} else {
			next = t
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if done == nil {
		if _, err := s.GetTask(ctx, id); err != nil {
			return nil, nil, err
		}
		return nil, nil, rdev.ErrLeaseNotHeld
	}
	return done, next, nil
}

// prefixed scans one leading column into v, then the rest as row would.
type prefixed struct {
	row pgx.Row
	v   any
}

func (p prefixed) Scan(dest ...any) error { return p.row.Scan(append([]any{p.v}, dest...)...) }

// FailTask ends a held attempt.
func (s *Store) FailTask(ctx context.Context, id, workerID, msg string, retry bool, retryAt, now time.Time) (*rdev.Task, error) {
	return s.held(ctx, id, `UPDATE tasks SET
			status = CASE WHEN NOT $1::boolean THEN 'failed' WHEN attempts < max_attempts THEN 'queued' ELSE 'dead' END,
			lease_owner = CASE WHEN $1 AND attempts < max_attempts THEN NULL ELSE lease_owner END,
			lease_expires_at = CASE WHEN $1 AND attempts < max_attempts THEN NULL ELSE lease_expires_at END,
			run_after = CASE WHEN $1 AND attempts < max_attempts THEN $2 ELSE run_after END,
			ended_at = CASE WHEN $1 AND attempts < max_attempts THEN NULL ELSE $3::timestamptz END,
			error = $4, updated_at = $3
		WHERE id = $5 AND lease_owner = $6 AND status = 'claimed' RETURNING `+taskCols,
		retry, retryAt, now, msg, id, workerID)
}

// CancelTask cancels a queued or claimed task.
func (s *Store) CancelTask(ctx context.Context, id string, now time.Time) (*rdev.Task, error) {
	ts, err := s.finishing(ctx, `UPDATE tasks SET status = 'cancelled', updated_at = $1, ended_at = $1
		WHERE id = $2 AND status IN ('queued', 'claimed') RETURNING `+taskCols, now, id)
	if err != nil {
		return nil, err
	}
	if len(ts) == 1 {
		return ts[0], nil
	}
	if _, err := s.GetTask(ctx, id); err != nil {
		return nil, err
	}
	return nil, rdev.ErrTaskFinished
}

// ReapTasks re-queues claimed tasks whose lease lapsed, or marks them dead.
func (s *Store) ReapTasks(ctx context.Context, now time.Time, limit int) ([]*rdev.Task, error) {
	return s.finishing(ctx, `UPDATE tasks SET
			status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'dead' END,
			lease_owner = CASE WHEN attempts < max_attempts THEN NULL ELSE lease_owner END,
			lease_expires_at = CASE WHEN attempts < max_attempts THEN NULL ELSE lease_expires_at END,
			run_after = CASE WHEN attempts < max_attempts THEN $1 ELSE run_after END,
			ended_at = CASE WHEN attempts < max_attempts THEN NULL ELSE $1::timestamptz END,
			error = 'lease expired', updated_at = $1
		WHERE id IN (SELECT id FROM tasks WHERE status = 'claimed' AND lease_expires_at <= $1
			ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING `+taskCols, now, limit)
}

// AppendTaskLog stores log events of a task, numbering them after the
// stored ones. Two appends racing for the same ids: the loser tries again.
func (s *Store) AppendTaskLog(ctx context.Context, taskID string, events []rdev.Event) error {
	if len(events) == 0 {
		return nil
	}
	var err error
	for range 5 {
		err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var last int64
			if err := tx.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM task_events WHERE task_id = $1`, taskID).Scan(&last); err != nil {
				return err
			}
			batch := &pgx.Batch{}
			for i, e := range events {
				meta, _ := json.Marshal(eventMeta{ExitCode: e.ExitCode, Signal: e.Signal, Reason: e.Reason, PID: e.PID})
				data, enc := outbuf.Pack(e.Data)
				batch.Queue(`INSERT INTO task_events (task_id, id, type, data, enc, size, meta, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
					taskID, last+int64(i)+1, e.Type, data, enc, len(e.Data), string(meta), e.At)
			}
			return tx.SendBatch(ctx, batch).Close()
		})
		if pgCode(err) != "23505" {
			break
		}
	}
	if pgCode(err) == "23503" {
		return rdev.ErrTaskNotFound
	}
	return err
}

// ListTaskLog returns at most limit log events after the id after.
func (s *Store) ListTaskLog(ctx context.Context, taskID string, after int64, limit int) ([]rdev.Event, error) {
	return s.listEvents(ctx, "task_events", "task_id", taskID, after, limit)
}

const workerCols = `id, name, kinds, capacity, built_in, created_at, heartbeat_at, key_id, projects`

func scanWorker(row pgx.Row) (*rdev.Worker, error) {
	var w rdev.Worker
	if err := row.Scan(&w.ID, &w.Name, &w.Kinds, &w.Capacity, &w.BuiltIn, &w.CreatedAt, &w.HeartbeatAt, &w.KeyID, &w.Projects); err != nil {
		return nil, err
	}
	w.CreatedAt, w.HeartbeatAt = utc(w.CreatedAt), utc(w.HeartbeatAt)
	return &w, nil
}

// RegisterWorker inserts a worker.
func (s *Store) RegisterWorker(ctx context.Context, w *rdev.Worker) error {
	kinds, _ := json.Marshal(w.Kinds)
	projects := w.Projects
	if projects == nil {
		projects = []string{}
	}
	pj, _ := json.Marshal(projects)
	_, err := s.pool.Exec(ctx, `INSERT INTO workers (`+workerCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		w.ID, w.Name, string(kinds), w.Capacity, w.BuiltIn, w.CreatedAt, w.HeartbeatAt, w.KeyID, string(pj))
	return err
}

func (s *Store) oneWorker(ctx context.Context, q string, args ...any) (*rdev.Worker, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	ws, err := collect(rows, scanWorker)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, rdev.ErrWorkerNotFound
	}
	return ws[0], nil
}

// HeartbeatWorker records that the worker is alive.
func (s *Store) HeartbeatWorker(ctx context.Context, id string, now time.Time) (*rdev.Worker, error) {
	return s.oneWorker(ctx, `UPDATE workers SET heartbeat_at = greatest(heartbeat_at, $1) WHERE id = $2 RETURNING `+workerCols, now, id)
}

// GetWorker returns a worker.
func (s *Store) GetWorker(ctx context.Context, id string) (*rdev.Worker, error) {
	return s.oneWorker(ctx, `SELECT `+workerCols+` FROM workers WHERE id = $1`, id)
}

// DeleteWorker removes a worker record.
func (s *Store) DeleteWorker(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM workers WHERE id = $1`, id)
	return oneRow(tag, err, rdev.ErrWorkerNotFound)
}

// PoolStats aggregates online workers and the queue.
func (s *Store) PoolStats(ctx context.Context, now, onlineSince time.Time) (*rdev.Pool, error) {
	p := &rdev.Pool{QueueDepthByKind: map[string]int{}}
	err := s.pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(capacity), 0),
			(SELECT count(*) FROM tasks WHERE status = 'claimed' AND lease_owner IN (SELECT id FROM workers WHERE heartbeat_at >= $1))
		FROM workers WHERE heartbeat_at >= $1`, onlineSince).Scan(&p.WorkersOnline, &p.Capacity, &p.Busy)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, `SELECT kind, count(*) FROM tasks WHERE status = 'queued' GROUP BY kind`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var kind string
		var n int
		if err := rows.Scan(&kind, &n); err != nil {
			return nil, err
		}
		p.QueueDepthByKind[kind] = n
		p.QueueDepth += n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT min(run_after) FROM tasks WHERE status = 'queued' AND run_after <= $1`, now).Scan(&oldest); err != nil {
		return nil, err
	}
	if oldest != nil {
		p.OldestQueuedAgeSeconds = now.Sub(*oldest).Seconds()
	}
	p.Idle = max(p.Capacity-p.Busy, 0)
	return p, nil
}

// LastTaskLogID returns the id of the task's newest log event (0).
func (s *Store) LastTaskLogID(ctx context.Context, taskID string) (int64, error) {
	var id int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM task_events WHERE task_id = $1`, taskID).Scan(&id)
	return id, err
}

// allowed is a claim's project filter for rdev_claim_task: NULL for every
// project.
func allowed(projects []string) []string {
	if len(projects) == 0 {
		return nil
	}
	return projects
}
