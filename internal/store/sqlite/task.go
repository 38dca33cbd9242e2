package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/outbuf"
)

const taskCols = `id, kind, project_id, status, payload, attempts, max_attempts, lease_owner, lease_expires_at, run_after, result, error, created_at, updated_at, ended_at`

func scanTask(row scanner) (*rdev.Task, error) {
	var t rdev.Task
	var payload string
	var owner, result sql.NullString
	var lease, ended sql.NullInt64
	var runAfter, created, updated int64
	if err := row.Scan(&t.ID, &t.Kind, &t.ProjectID, &t.Status, &payload, &t.Attempts, &t.MaxAttempts, &owner, &lease,
		&runAfter, &result, &t.Error, &created, &updated, &ended); err != nil {
		return nil, err
	}
	t.Payload, t.LeaseOwner, t.LeaseExpiresAt = json.RawMessage(payload), owner.String, fromNullMicros(lease)
	if result.Valid {
		t.Result = json.RawMessage(result.String)
	}
	t.RunAfter, t.CreatedAt, t.UpdatedAt, t.EndedAt = fromMicros(runAfter), fromMicros(created), fromMicros(updated), fromNullMicros(ended)
	return &t, nil
}

// one runs a statement that returns at most one task; missing when none.
func (s *Store) one(ctx context.Context, db querier, missing error, q string, args ...any) (*rdev.Task, error) {
	ts, err := queryAll(ctx, db, q, args, scanTask)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, missing
	}
	return ts[0], nil
}

// CreateTask inserts a queued task.
func (s *Store) CreateTask(ctx context.Context, t *rdev.Task) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO tasks (id, kind, project_id, status, payload, attempts, max_attempts, run_after, created_at, updated_at)
		VALUES (?, ?, ?, 'queued', ?, 0, ?, ?, ?, ?)`, t.ID, t.Kind, t.ProjectID, string(t.Payload), t.MaxAttempts,
		micros(t.RunAfter), micros(t.CreatedAt), micros(t.UpdatedAt))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
		return rdev.ErrProjectNotFound
	}
	return err
}

// GetTask returns a task, or rdev.ErrTaskNotFound.
func (s *Store) GetTask(ctx context.Context, id string) (*rdev.Task, error) {
	return s.one(ctx, s.r, rdev.ErrTaskNotFound, `SELECT `+taskCols+` FROM tasks WHERE id = ?`, id)
}

// ListTasks returns a page of tasks, newest first.
func (s *Store) ListTasks(ctx context.Context, f rdev.TaskFilter, page rdev.Page) ([]*rdev.Task, string, error) {
	q := `SELECT ` + taskCols + ` FROM tasks WHERE 1 = 1`
	var args []any
	for col, v := range map[string]string{"kind": f.Kind, "status": f.Status, "project_id": f.ProjectID} {
		if v != "" {
			q += ` AND ` + col + ` = ?`
			args = append(args, v)
		}
	}
	if f.Projects != nil {
		q += ` AND project_id IN (SELECT value FROM json_each(?))`
		b, _ := json.Marshal(f.Projects)
		args = append(args, string(b))
	}
	if page.Cursor != "" {
		t, id, err := rdev.DecodeCursor(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (created_at, id) < (?, ?)`
		args = append(args, micros(t), id)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, page.Limit+1)
	out, err := queryAll(ctx, s.r, q, args, scanTask)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.Task) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// ClaimTask gives the oldest runnable task of the kinds to the worker. One
// statement on the single writer connection: no task gets two owners.
func (s *Store) ClaimTask(ctx context.Context, c rdev.Claim) (*rdev.Task, error) {
	t, err := s.one(ctx, s.w, nil, claimQuery, claimArgs(c)...)
	if t == nil && err == nil {
		return nil, nil
	}
	return t, err
}

const claimQuery = `UPDATE tasks SET status = 'claimed', lease_owner = ?1, lease_expires_at = ?2, attempts = attempts + 1, updated_at = ?3
		WHERE id = (SELECT id FROM tasks WHERE status = 'queued' AND run_after <= ?3 AND kind IN (SELECT value FROM json_each(?4))
			AND (?5 = '[]' OR project_id IN (SELECT value FROM json_each(?5)))
			ORDER BY run_after, created_at LIMIT 1)
		RETURNING ` + taskCols

// claimArgs are claimQuery's arguments.
func claimArgs(c rdev.Claim) []any {
	kinds, _ := json.Marshal(c.Kinds)
	projects, _ := json.Marshal(nonNil(c.Projects))
	return []any{c.WorkerID, micros(c.Now.Add(c.Lease)), micros(c.Now), string(kinds), string(projects)}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// held runs an update of a task that the worker holds; when it matches no
// row it tells why.
func (s *Store) held(ctx context.Context, id, workerID, q string, args ...any) (*rdev.Task, error) {
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
	return queryAll(ctx, s.w, q, args, scanTask)
}

// HeartbeatTask extends the lease of a task the worker holds.
func (s *Store) HeartbeatTask(ctx context.Context, id, workerID string, now time.Time, lease time.Duration) (*rdev.Task, error) {
	return s.held(ctx, id, workerID, `UPDATE tasks SET lease_expires_at = CASE WHEN status = 'claimed' THEN ? ELSE lease_expires_at END, updated_at = ?
		WHERE id = ? AND lease_owner = ? AND status IN ('claimed', 'cancelled') RETURNING `+taskCols,
		micros(now.Add(lease)), micros(now), id, workerID)
}

// CompleteTask marks a held task succeeded.
func (s *Store) CompleteTask(ctx context.Context, id, workerID string, result json.RawMessage, now time.Time) (*rdev.Task, error) {
	return s.held(ctx, id, workerID, `UPDATE tasks SET status = 'succeeded', result = ?, updated_at = ?, ended_at = ?
		WHERE id = ? AND lease_owner = ? AND status = 'claimed' RETURNING `+taskCols,
		nullJSON(result), micros(now), micros(now), id, workerID)
}

// CompleteAndClaim completes a held task and claims the next one in one
// transaction on the writer connection.
func (s *Store) CompleteAndClaim(ctx context.Context, id string, result json.RawMessage, c rdev.Claim) (*rdev.Task, *rdev.Task, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback()
	done, err := queryAll(ctx, tx, `UPDATE tasks SET status = 'succeeded', result = ?, updated_at = ?, ended_at = ?
		WHERE id = ? AND lease_owner = ? AND status = 'claimed' RETURNING `+taskCols,
		[]any{nullJSON(result), micros(c.Now), micros(c.Now), id, c.WorkerID}, scanTask)
	if err != nil {
		return nil, nil, err
	}
	if len(done) == 0 {
		tx.Rollback()
		if _, err := s.GetTask(ctx, id); err != nil {
			return nil, nil, err
		}
		return nil, nil, rdev.ErrLeaseNotHeld
	}
	next, err := queryAll(ctx, tx, claimQuery, claimArgs(c), scanTask)
	if err != nil {
		return nil, nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, nil, err
	}
	if len(next) == 0 {
		return done[0], nil, nil
	}
	return done[0], next[0], nil
}

// FailTask ends a held attempt.
func (s *Store) FailTask(ctx context.Context, id, workerID, msg string, retry bool, retryAt, now time.Time) (*rdev.Task, error) {
	return s.held(ctx, id, workerID, `UPDATE tasks SET
			status = CASE WHEN NOT ? THEN 'failed' WHEN attempts < max_attempts THEN 'queued' ELSE 'dead' END,
			lease_owner = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE lease_owner END,
			lease_expires_at = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE lease_expires_at END,
			run_after = CASE WHEN ? AND attempts < max_attempts THEN ? ELSE run_after END,
			ended_at = CASE WHEN ? AND attempts < max_attempts THEN NULL ELSE ? END,
			error = ?, updated_at = ?
		WHERE id = ? AND lease_owner = ? AND status = 'claimed' RETURNING `+taskCols,
		retry, retry, retry, retry, micros(retryAt), retry, micros(now), msg, micros(now), id, workerID)
}

// CancelTask cancels a queued or claimed task. A claimed one keeps its
// owner, whose next heartbeat learns of it.
func (s *Store) CancelTask(ctx context.Context, id string, now time.Time) (*rdev.Task, error) {
	ts, err := s.finishing(ctx, `UPDATE tasks SET status = 'cancelled', updated_at = ?, ended_at = ?
		WHERE id = ? AND status IN ('queued', 'claimed') RETURNING `+taskCols, micros(now), micros(now), id)
	if err != nil || len(ts) == 1 {
		if len(ts) == 1 {
			return ts[0], nil
		}
		return nil, err
	}
	if _, err := s.GetTask(ctx, id); err != nil {
		return nil, err
	}
	return nil, rdev.ErrTaskFinished
}

// ReapTasks re-queues claimed tasks whose lease lapsed, or marks them dead.
func (s *Store) ReapTasks(ctx context.Context, now time.Time, limit int) ([]*rdev.Task, error) {
	n := micros(now)
	return s.finishing(ctx, `UPDATE tasks SET
			status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'dead' END,
			lease_owner = CASE WHEN attempts < max_attempts THEN NULL ELSE lease_owner END,
			lease_expires_at = CASE WHEN attempts < max_attempts THEN NULL ELSE lease_expires_at END,
			run_after = CASE WHEN attempts < max_attempts THEN ? ELSE run_after END,
			ended_at = CASE WHEN attempts < max_attempts THEN NULL ELSE ? END,
			error = 'lease expired', updated_at = ?
		WHERE id IN (SELECT id FROM tasks WHERE status = 'claimed' AND lease_expires_at <= ? ORDER BY lease_expires_at LIMIT ?)
		RETURNING `+taskCols, n, n, n, n, limit)
}

// AppendTaskLog stores log events of a task, numbering them after the
// stored ones.
func (s *Store) AppendTaskLog(ctx context.Context, taskID string, events []rdev.Event) error {
	if len(events) == 0 {
		return nil
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var last int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM task_events WHERE task_id = ?`, taskID).Scan(&last); err != nil {
		return err
	}
	for i, e := range events {
		meta, _ := json.Marshal(eventMeta{ExitCode: e.ExitCode, Signal: e.Signal, Reason: e.Reason, PID: e.PID})
		data, enc := outbuf.Pack(e.Data)
		if _, err := tx.ExecContext(ctx, `INSERT INTO task_events (task_id, id, type, data, enc, size, meta, at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			taskID, last+int64(i)+1, e.Type, data, enc, len(e.Data), string(meta), micros(e.At)); err != nil {
			if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY) {
				return rdev.ErrTaskNotFound
			}
			return err
		}
	}
	return tx.Commit()
}

// ListTaskLog returns at most limit log events after the id after.
func (s *Store) ListTaskLog(ctx context.Context, taskID string, after int64, limit int) ([]rdev.Event, error) {
	return s.listEvents(ctx, "task_events", "task_id", taskID, after, limit)
}

const workerCols = `id, name, kinds, capacity, built_in, created_at, heartbeat_at, key_id, projects`

func scanWorker(row scanner) (*rdev.Worker, error) {
	var w rdev.Worker
	var kinds, projects string
	var created, beat int64
	if err := row.Scan(&w.ID, &w.Name, &kinds, &w.Capacity, &w.BuiltIn, &created, &beat, &w.KeyID, &projects); err != nil {
		return nil, err
	}
	json.Unmarshal([]byte(kinds), &w.Kinds)
	json.Unmarshal([]byte(projects), &w.Projects)
	w.CreatedAt, w.HeartbeatAt = fromMicros(created), fromMicros(beat)
	return &w, nil
}

// RegisterWorker inserts a worker.
func (s *Store) RegisterWorker(ctx context.Context, w *rdev.Worker) error {
	kinds, _ := json.Marshal(w.Kinds)
	projects, _ := json.Marshal(nonNil(w.Projects))
	_, err := s.w.ExecContext(ctx, `INSERT INTO workers (`+workerCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		w.ID, w.Name, string(kinds), w.Capacity, w.BuiltIn, micros(w.CreatedAt), micros(w.HeartbeatAt), w.KeyID, string(projects))
	return err
}

// HeartbeatWorker records that the worker is alive.
func (s *Store) HeartbeatWorker(ctx context.Context, id string, now time.Time) (*rdev.Worker, error) {
	ws, err := queryAll(ctx, s.w, `UPDATE workers SET heartbeat_at = max(heartbeat_at, ?) WHERE id = ? RETURNING `+workerCols,
		[]any{micros(now), id}, scanWorker)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, rdev.ErrWorkerNotFound
	}
	return ws[0], nil
}

// GetWorker returns a worker.
func (s *Store) GetWorker(ctx context.Context, id string) (*rdev.Worker, error) {
	ws, err := queryAll(ctx, s.r, `SELECT `+workerCols+` FROM workers WHERE id = ?`, []any{id}, scanWorker)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, rdev.ErrWorkerNotFound
	}
	return ws[0], nil
}

// DeleteWorker removes a worker record.
func (s *Store) DeleteWorker(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM workers WHERE id = ?`, id)
	return oneRow(res, err, rdev.ErrWorkerNotFound)
}

// PoolStats aggregates online workers and the queue.
func (s *Store) PoolStats(ctx context.Context, now, onlineSince time.Time) (*rdev.Pool, error) {
	p := &rdev.Pool{QueueDepthByKind: map[string]int{}}
	err := s.r.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(capacity), 0),
			(SELECT count(*) FROM tasks WHERE status = 'claimed' AND lease_owner IN (SELECT id FROM workers WHERE heartbeat_at >= ?))
		FROM workers WHERE heartbeat_at >= ?`, micros(onlineSince), micros(onlineSince)).Scan(&p.WorkersOnline, &p.Capacity, &p.Busy)
	if err != nil {
		return nil, err
	}
	rows, err := s.r.QueryContext(ctx, `SELECT kind, count(*) FROM tasks WHERE status = 'queued' GROUP BY kind`)
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
	var oldest sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT min(run_after) FROM tasks WHERE status = 'queued' AND run_after <= ?`, micros(now)).Scan(&oldest); err != nil {
		return nil, err
	}
	if oldest.Valid {
		p.OldestQueuedAgeSeconds = now.Sub(fromMicros(oldest.Int64)).Seconds()
	}
	p.Idle = max(p.Capacity-p.Busy, 0)
	return p, nil
}

func nullJSON(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// LastTaskLogID returns the id of the task's newest log event (0).
func (s *Store) LastTaskLogID(ctx context.Context, taskID string) (int64, error) {
	var id int64
	err := s.r.QueryRowContext(ctx, `SELECT coalesce(max(id), 0) FROM task_events WHERE task_id = ?`, taskID).Scan(&id)
	return id, err
}
