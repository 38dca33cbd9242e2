package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"rdev.dev/rdev/internal/rdev"
)

const checkoutCols = `id, project_id, branch, feature_slug, base_commit, status, token_hash, created_by, created_at, expires_at, ended_at, review_task_id`

func scanCheckout(row scanner) (*rdev.Checkout, error) {
	var c rdev.Checkout
	var created, expires int64
	var ended sql.NullInt64
	var task sql.NullString
	if err := row.Scan(&c.ID, &c.ProjectID, &c.Branch, &c.FeatureSlug, &c.BaseCommit, &c.Status, &c.TokenHash, &c.CreatedBy,
		&created, &expires, &ended, &task); err != nil {
		return nil, err
	}
	c.CreatedAt, c.ExpiresAt, c.EndedAt, c.ReviewTaskID = fromMicros(created), fromMicros(expires), fromNullMicros(ended), task.String
	return &c, nil
}

// CreateCheckout inserts c; rdev.ErrCheckoutExists when its branch has an
// active checkout, rdev.ErrProjectNotFound when the project is gone.
func (s *Store) CreateCheckout(ctx context.Context, c *rdev.Checkout) error {
	_, err := s.w.ExecContext(ctx, `INSERT INTO checkouts (`+checkoutCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`,
		c.ID, c.ProjectID, c.Branch, c.FeatureSlug, c.BaseCommit, c.Status, c.TokenHash, c.CreatedBy,
		micros(c.CreatedAt), micros(c.ExpiresAt), nullMicros(c.EndedAt))
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return rdev.ErrCheckoutExists
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return rdev.ErrProjectNotFound
	}
	return err
}

// DeleteCheckout removes a checkout record.
func (s *Store) DeleteCheckout(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM checkouts WHERE id = ?`, id)
	return oneRow(res, err, rdev.ErrCheckoutNotFound)
}

// GetCheckout returns a checkout of the project, or rdev.ErrCheckoutNotFound.
func (s *Store) GetCheckout(ctx context.Context, projectID, id string) (*rdev.Checkout, error) {
	c, err := scanCheckout(s.r.QueryRowContext(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE id = ? AND project_id = ?`, id, projectID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrCheckoutNotFound
	}
	return c, err
}

// CheckoutByID returns a checkout, or rdev.ErrCheckoutNotFound.
func (s *Store) CheckoutByID(ctx context.Context, id string) (*rdev.Checkout, error) {
	c, err := scanCheckout(s.r.QueryRowContext(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrCheckoutNotFound
	}
	return c, err
}

// ListCheckouts returns a page of the project's checkouts, newest first.
func (s *Store) ListCheckouts(ctx context.Context, projectID string, page rdev.Page) ([]*rdev.Checkout, string, error) {
	q := `SELECT ` + checkoutCols + ` FROM checkouts WHERE project_id = ?`
	args := []any{projectID}
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
	out, err := queryAll(ctx, s.r, q, args, scanCheckout)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.Checkout) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// EndCheckout ends an active checkout and queues task, in one transaction.
func (s *Store) EndCheckout(ctx context.Context, projectID, id string, status rdev.CheckoutStatus, at time.Time, task *rdev.Task) (*rdev.Checkout, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	c, err := scanCheckout(tx.QueryRowContext(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE id = ? AND project_id = ?`, id, projectID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrCheckoutNotFound
	}
	if err != nil {
		return nil, err
	}
	if c.Status != rdev.CheckoutActive {
		return nil, rdev.ErrCheckoutNotActive
	}
	taskID, err := insertTask(ctx, tx, task)
	if err != nil {
		return nil, err
	}
	if task != nil {
		c.ReviewTaskID = task.ID
	}
	if _, err := tx.ExecContext(ctx, `UPDATE checkouts SET status = ?, ended_at = ?, review_task_id = ? WHERE id = ?`,
		status, micros(at), taskID, id); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	c.Status, c.EndedAt = status, &at
	return c, nil
}

// ExpireCheckouts marks overdue active checkouts expired and returns them.
func (s *Store) ExpireCheckouts(ctx context.Context, now time.Time, limit int) ([]*rdev.Checkout, error) {
	return queryAll(ctx, s.w, `UPDATE checkouts SET status = 'expired', ended_at = ?
		WHERE id IN (SELECT id FROM checkouts WHERE status = 'active' AND expires_at <= ? ORDER BY expires_at LIMIT ?)
		RETURNING `+checkoutCols, []any{micros(now), micros(now), limit}, scanCheckout)
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryAll runs a query and scans every row.
func queryAll[T any](ctx context.Context, db querier, q string, args []any, scan func(scanner) (*T, error)) ([]*T, error) {
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// insertTask stores task (when not nil) in tx and returns its id for a
// nullable column.
func insertTask(ctx context.Context, tx *sql.Tx, task *rdev.Task) (any, error) {
	if task == nil {
		return nil, nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO tasks (id, kind, project_id, status, payload, attempts, max_attempts, run_after, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, 0, ?, ?, ?, ?)`, task.ID, task.Kind, task.ProjectID, task.Status, string(task.Payload),
		task.MaxAttempts, micros(task.RunAfter), micros(task.CreatedAt), micros(task.UpdatedAt))
	return task.ID, err
}
