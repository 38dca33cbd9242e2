package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"rdev.dev/rdev/internal/rdev"
)

const checkoutCols = `id, project_id, branch, feature_slug, base_commit, status, token_hash, created_by, created_at, expires_at, ended_at, review_task_id`

func scanCheckout(row pgx.Row) (*rdev.Checkout, error) {
	var c rdev.Checkout
	var task *string
	if err := row.Scan(&c.ID, &c.ProjectID, &c.Branch, &c.FeatureSlug, &c.BaseCommit, &c.Status, &c.TokenHash, &c.CreatedBy,
		&c.CreatedAt, &c.ExpiresAt, &c.EndedAt, &task); err != nil {
		return nil, err
	}
	c.CreatedAt, c.ExpiresAt, c.EndedAt = utc(c.CreatedAt), utc(c.ExpiresAt), utcPtr(c.EndedAt)
	if task != nil {
		c.ReviewTaskID = *task
	}
	return &c, nil
}

// CreateCheckout inserts c; rdev.ErrCheckoutExists when its branch has an
// active checkout, rdev.ErrProjectNotFound when the project is gone.
func (s *Store) CreateCheckout(ctx context.Context, c *rdev.Checkout) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO checkouts (`+checkoutCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL)`,
		c.ID, c.ProjectID, c.Branch, c.FeatureSlug, c.BaseCommit, c.Status, c.TokenHash, c.CreatedBy, c.CreatedAt, c.ExpiresAt, c.EndedAt)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505":
			return rdev.ErrCheckoutExists
		case "23503":
			return rdev.ErrProjectNotFound
		}
	}
	return err
}

// DeleteCheckout removes a checkout record.
func (s *Store) DeleteCheckout(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM checkouts WHERE id = $1`, id)
	return oneRow(tag, err, rdev.ErrCheckoutNotFound)
}

// GetCheckout returns a checkout of the project, or rdev.ErrCheckoutNotFound.
func (s *Store) GetCheckout(ctx context.Context, projectID, id string) (*rdev.Checkout, error) {
	c, err := scanCheckout(s.pool.QueryRow(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE id = $1 AND project_id = $2`, id, projectID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrCheckoutNotFound
	}
	return c, err
}

// CheckoutByID returns a checkout, or rdev.ErrCheckoutNotFound.
func (s *Store) CheckoutByID(ctx context.Context, id string) (*rdev.Checkout, error) {
	c, err := scanCheckout(s.pool.QueryRow(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrCheckoutNotFound
	}
	return c, err
}

// ListCheckouts returns a page of the project's checkouts, newest first.
func (s *Store) ListCheckouts(ctx context.Context, projectID string, page rdev.Page) ([]*rdev.Checkout, string, error) {
	q := `SELECT ` + checkoutCols + ` FROM checkouts WHERE project_id = $1`
	args := []any{projectID, page.Limit + 1}
	if page.Cursor != "" {
		t, id, err := rdev.DecodeCursor(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (created_at, id) < ($3, $4)`
		args = append(args, t, id)
	}
	rows, err := s.pool.Query(ctx, q+` ORDER BY created_at DESC, id DESC LIMIT $2`, args...)
	if err != nil {
		return nil, "", err
	}
	out, err := collect(rows, scanCheckout)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.Checkout) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// EndCheckout ends an active checkout and queues task, in one transaction.
func (s *Store) EndCheckout(ctx context.Context, projectID, id string, status rdev.CheckoutStatus, at time.Time, task *rdev.Task) (*rdev.Checkout, error) {
	var out *rdev.Checkout
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		c, err := scanCheckout(tx.QueryRow(ctx, `SELECT `+checkoutCols+` FROM checkouts WHERE id = $1 AND project_id = $2 FOR UPDATE`, id, projectID))
		if errors.Is(err, pgx.ErrNoRows) {
			return rdev.ErrCheckoutNotFound
		}
		if err != nil {
			return err
		}
		if c.Status != rdev.CheckoutActive {
			return rdev.ErrCheckoutNotActive
		}
		taskID, err := insertTask(ctx, tx, task)
		if err != nil {
			return err
		}
		if task != nil {
			c.ReviewTaskID = task.ID
		}
		if _, err := tx.Exec(ctx, `UPDATE checkouts SET status = $1, ended_at = $2, review_task_id = $3 WHERE id = $4`, status, at, taskID, id); err != nil {
			return err
		}
		c.Status, c.EndedAt = status, &at
		out = c
		return nil
	})
	return out, err
}

// ExpireCheckouts marks overdue active checkouts expired and returns them.
func (s *Store) ExpireCheckouts(ctx context.Context, now time.Time, limit int) ([]*rdev.Checkout, error) {
	rows, err := s.pool.Query(ctx, `UPDATE checkouts SET status = 'expired', ended_at = $1
		WHERE id IN (SELECT id FROM checkouts WHERE status = 'active' AND expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)
		RETURNING `+checkoutCols, now, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanCheckout)
}

// insertTask stores task (when not nil) in tx and returns its id for a
// nullable column.
func insertTask(ctx context.Context, tx pgx.Tx, task *rdev.Task) (*string, error) {
	if task == nil {
		return nil, nil
	}
	_, err := tx.Exec(ctx, `INSERT INTO tasks (id, kind, project_id, status, payload, attempts, max_attempts, run_after, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, 0, $6, $7, $8, $9)`, task.ID, task.Kind, task.ProjectID, task.Status, string(task.Payload),
		task.MaxAttempts, task.RunAfter, task.CreatedAt, task.UpdatedAt)
	return &task.ID, err
}
