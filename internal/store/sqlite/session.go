package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"rdev.dev/rdev/internal/rdev"
)

const sessionCols = `id, project_id, checkout_id, pod_name, preview_port, preview_url, status, created_by, created_at, expires_at, last_active_at, ended_at, review_task_id`

func scanSession(row scanner) (*rdev.Session, error) {
	var s rdev.Session
	var created, expires, active int64
	var ended sql.NullInt64
	var task sql.NullString
	if err := row.Scan(&s.ID, &s.ProjectID, &s.CheckoutID, &s.PodName, &s.PreviewPort, &s.PreviewURL, &s.Status, &s.CreatedBy,
		&created, &expires, &active, &ended, &task); err != nil {
		return nil, err
	}
	s.CreatedAt, s.ExpiresAt, s.LastActiveAt, s.EndedAt = fromMicros(created), fromMicros(expires), fromMicros(active), fromNullMicros(ended)
	s.ReviewTaskID = task.String
	return &s, nil
}

// CreateSession inserts the session, then its checkout, in one transaction.
func (s *Store) CreateSession(ctx context.Context, sess *rdev.Session, c *rdev.Checkout) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
		sess.ID, sess.ProjectID, sess.CheckoutID, sess.PodName, sess.PreviewPort, sess.PreviewURL, sess.Status, sess.CreatedBy,
		micros(sess.CreatedAt), micros(sess.ExpiresAt), micros(sess.LastActiveAt))
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return rdev.ErrSessionExists
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return rdev.ErrProjectNotFound
	case err != nil:
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO checkouts (`+checkoutCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
		c.ID, c.ProjectID, c.Branch, c.FeatureSlug, c.BaseCommit, c.Status, c.TokenHash, c.CreatedBy, micros(c.CreatedAt), micros(c.ExpiresAt))
	switch {
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE):
		return rdev.ErrCheckoutExists
	case isConstraint(err, sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY):
		return rdev.ErrProjectNotFound
	case err != nil:
		return err
	}
	return tx.Commit()
}

// DeleteSession removes a session and its checkout.
func (s *Store) DeleteSession(ctx context.Context, id string) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var checkout string
	if err := tx.QueryRowContext(ctx, `DELETE FROM sessions WHERE id = ? RETURNING checkout_id`, id).Scan(&checkout); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return rdev.ErrSessionNotFound
		}
		return err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM checkouts WHERE id = ?`, checkout); err != nil {
		return err
	}
	return tx.Commit()
}

// GetSession returns a session of the project, or rdev.ErrSessionNotFound.
func (s *Store) GetSession(ctx context.Context, projectID, id string) (*rdev.Session, error) {
	sess, err := scanSession(s.r.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ? AND project_id = ?`, id, projectID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrSessionNotFound
	}
	return sess, err
}

// ListSessions returns a page of the project's sessions, newest first.
func (s *Store) ListSessions(ctx context.Context, projectID string, page rdev.Page) ([]*rdev.Session, string, error) {
	q := `SELECT ` + sessionCols + ` FROM sessions WHERE project_id = ?`
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
	out, err := queryAll(ctx, s.r, q, args, scanSession)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.Session) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// EndSession ends an active session and its checkout, storing task.
func (s *Store) EndSession(ctx context.Context, projectID, id string, status rdev.SessionStatus, at time.Time, task *rdev.Task) (*rdev.Session, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	sess, err := scanSession(tx.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ? AND project_id = ?`, id, projectID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrSessionNotFound
	}
	if err != nil {
		return nil, err
	}
	if sess.Status != rdev.SessionActive {
		return nil, rdev.ErrSessionNotActive
	}
	taskID, err := insertTask(ctx, tx, task)
	if err != nil {
		return nil, err
	}
	if task != nil {
		sess.ReviewTaskID = task.ID
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sessions SET status = ?, ended_at = ?, review_task_id = ? WHERE id = ?`, status, micros(at), taskID, id); err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE checkouts SET status = ?, ended_at = ?, review_task_id = ? WHERE id = ? AND status = 'active'`,
		checkoutStatusFor(status), micros(at), taskID, sess.CheckoutID); err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	sess.Status, sess.EndedAt = status, &at
	return sess, nil
}

// checkoutStatusFor is what a session's end does to its checkout.
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
	_, err := s.w.ExecContext(ctx, `UPDATE sessions SET last_active_at = max(last_active_at, ?) WHERE id = ? AND status = 'active'`, micros(at), id)
	return err
}

// DueSessions returns active sessions past their expiry or idle since before idleBefore.
func (s *Store) DueSessions(ctx context.Context, now, idleBefore time.Time, limit int) ([]*rdev.Session, error) {
	return queryAll(ctx, s.r, `SELECT `+sessionCols+` FROM sessions WHERE status = 'active' AND (expires_at <= ? OR last_active_at < ?)
		ORDER BY expires_at LIMIT ?`, []any{micros(now), micros(idleBefore), limit}, scanSession)
}

// ActiveSessions returns every active session.
func (s *Store) ActiveSessions(ctx context.Context) ([]*rdev.Session, error) {
	return queryAll(ctx, s.r, `SELECT `+sessionCols+` FROM sessions WHERE status = 'active' ORDER BY created_at`, nil, scanSession)
}

// ActiveSession returns the project's active session, or rdev.ErrSessionNotFound.
func (s *Store) ActiveSession(ctx context.Context, projectID string) (*rdev.Session, error) {
	sess, err := scanSession(s.r.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE project_id = ? AND status = 'active'`, projectID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrSessionNotFound
	}
	return sess, err
}

// SessionByID returns a session, or rdev.ErrSessionNotFound.
func (s *Store) SessionByID(ctx context.Context, id string) (*rdev.Session, error) {
	sess, err := scanSession(s.r.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrSessionNotFound
	}
	return sess, err
}
