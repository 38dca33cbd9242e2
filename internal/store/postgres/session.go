package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"rdev.dev/rdev/internal/rdev"
)

const sessionCols = `id, project_id, checkout_id, pod_name, preview_port, preview_url, status, created_by, created_at, expires_at, last_active_at, ended_at, review_task_id`

func scanSession(row pgx.Row) (*rdev.Session, error) {
	var s rdev.Session
	var task *string
	if err := row.Scan(&s.ID, &s.ProjectID, &s.CheckoutID, &s.PodName, &s.PreviewPort, &s.PreviewURL, &s.Status, &s.CreatedBy,
		&s.CreatedAt, &s.ExpiresAt, &s.LastActiveAt, &s.EndedAt, &task); err != nil {
		return nil, err
	}
	s.CreatedAt, s.ExpiresAt, s.LastActiveAt, s.EndedAt = utc(s.CreatedAt), utc(s.ExpiresAt), utc(s.LastActiveAt), utcPtr(s.EndedAt)
	if task != nil {
		s.ReviewTaskID = *task
	}
	return &s, nil
}

func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// CreateSession inserts the session, then its checkout, in one transaction.
func (s *Store) CreateSession(ctx context.Context, sess *rdev.Session, c *rdev.Checkout) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL)`,
			sess.ID, sess.ProjectID, sess.CheckoutID, sess.PodName, sess.PreviewPort, sess.PreviewURL, sess.Status, sess.CreatedBy,
			sess.CreatedAt, sess.ExpiresAt, sess.LastActiveAt)
		switch pgCode(err) {
		case "23505":
			return rdev.ErrSessionExists
		case "23503":
			return rdev.ErrProjectNotFound
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO checkouts (`+checkoutCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL)`,
			c.ID, c.ProjectID, c.Branch, c.FeatureSlug, c.BaseCommit, c.Status, c.TokenHash, c.CreatedBy, c.CreatedAt, c.ExpiresAt)
		switch pgCode(err) {
		case "23505":
			return rdev.ErrCheckoutExists
		case "23503":
			return rdev.ErrProjectNotFound
		}
		return err
	})
}

// DeleteSession removes a session and its checkout.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var checkout string
		if err := tx.QueryRow(ctx, `DELETE FROM sessions WHERE id = $1 RETURNING checkout_id`, id).Scan(&checkout); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return rdev.ErrSessionNotFound
			}
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM checkouts WHERE id = $1`, checkout)
		return err
	})
}

// GetSession returns a session of the project, or rdev.ErrSessionNotFound.
func (s *Store) GetSession(ctx context.Context, projectID, id string) (*rdev.Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1 AND project_id = $2`, id, projectID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrSessionNotFound
	}
	return sess, err
}

// ListSessions returns a page of the project's sessions, newest first.
func (s *Store) ListSessions(ctx context.Context, projectID string, page rdev.Page) ([]*rdev.Session, string, error) {
	q := `SELECT ` + sessionCols + ` FROM sessions WHERE project_id = $1`
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
	out, err := collect(rows, scanSession)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.Session) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// EndSession ends an active session and its checkout, storing task.
func (s *Store) EndSession(ctx context.Context, projectID, id string, status rdev.SessionStatus, at time.Time, task *rdev.Task) (*rdev.Session, error) {
	var out *rdev.Session
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		sess, err := scanSession(tx.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1 AND project_id = $2 FOR UPDATE`, id, projectID))
		if errors.Is(err, pgx.ErrNoRows) {
			return rdev.ErrSessionNotFound
		}
		if err != nil {
			return err
		}
		if sess.Status != rdev.SessionActive {
			return rdev.ErrSessionNotActive
		}
		taskID, err := insertTask(ctx, tx, task)
		if err != nil {
			return err
		}
		if task != nil {
			sess.ReviewTaskID = task.ID
		}
		if _, err := tx.Exec(ctx, `UPDATE sessions SET status = $1, ended_at = $2, review_task_id = $3 WHERE id = $4`, status, at, taskID, id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE checkouts SET status = $1, ended_at = $2, review_task_id = $3 WHERE id = $4 AND status = 'active'`,
			checkoutStatusFor(status), at, taskID, sess.CheckoutID); err != nil {
			return err
		}
		sess.Status, sess.EndedAt = status, &at
		out = sess
		return nil
	})
	return out, err
}

func checkoutStatusFor(s rdev.SessionStatus) rdev.CheckoutStatus {
	switch s {
	case rdev.SessionEnded:
		return rdev.CheckoutCheckedIn
	case rdev.SessionExpired:
		return rdev.CheckoutExpired
	}
	return rdev.CheckoutRevoked
}

// TouchSession records activity.
func (s *Store) TouchSession(ctx context.Context, id string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE sessions SET last_active_at = greatest(last_active_at, $1) WHERE id = $2 AND status = 'active'`, at, id)
	return err
}

// DueSessions returns active sessions past their expiry or idle since before idleBefore.
func (s *Store) DueSessions(ctx context.Context, now, idleBefore time.Time, limit int) ([]*rdev.Session, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE status = 'active' AND (expires_at <= $1 OR last_active_at < $2)
		ORDER BY expires_at LIMIT $3`, now, idleBefore, limit)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSession)
}

// ActiveSessions returns every active session.
func (s *Store) ActiveSessions(ctx context.Context) ([]*rdev.Session, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+sessionCols+` FROM sessions WHERE status = 'active' ORDER BY created_at`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanSession)
}

// ActiveSession returns the project's active session, or rdev.ErrSessionNotFound.
func (s *Store) ActiveSession(ctx context.Context, projectID string) (*rdev.Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE project_id = $1 AND status = 'active'`, projectID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrSessionNotFound
	}
	return sess, err
}

// SessionByID returns a session, or rdev.ErrSessionNotFound.
func (s *Store) SessionByID(ctx context.Context, id string) (*rdev.Session, error) {
	sess, err := scanSession(s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrSessionNotFound
	}
	return sess, err
}
