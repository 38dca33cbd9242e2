package postgres

import (
	"context"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"rdev.dev/rdev/internal/rdev"
)

// AppendAudit inserts e and sets e.ID.
func (s *Store) AppendAudit(ctx context.Context, e *rdev.AuditEntry) error {
	return s.pool.QueryRow(ctx, `INSERT INTO audit_log (at, key_id, method, route, target, status, request_id, project_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id`,
		e.At, e.KeyID, e.Method, e.Route, e.Target, e.Status, e.RequestID, e.ProjectID).Scan(&e.ID)
}

func scanAudit(row pgx.Row) (*rdev.AuditEntry, error) {
	var e rdev.AuditEntry
	if err := row.Scan(&e.ID, &e.At, &e.KeyID, &e.Method, &e.Route, &e.Target, &e.Status, &e.RequestID, &e.ProjectID); err != nil {
		return nil, err
	}
	e.At = utc(e.At)
	return &e, nil
}

// ListAudit returns a page of matching entries, newest first.
func (s *Store) ListAudit(ctx context.Context, f rdev.AuditFilter) ([]*rdev.AuditEntry, string, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if f.KeyID != "" {
		where = append(where, "key_id = "+arg(f.KeyID))
	}
	if f.Target != "" {
		where = append(where, "target = "+arg(f.Target))
	}
	if len(f.Projects) > 0 {
		where = append(where, "project_id = ANY("+arg(f.Projects)+")")
	}
	if !f.Since.IsZero() {
		where = append(where, "at >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		where = append(where, "at < "+arg(f.Until))
	}
	if f.Cursor != "" {
		_, id, err := rdev.DecodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		n, err := strconv.ParseInt(id, 10, 64)
		if err != nil {
			return nil, "", rdev.Invalid("cursor", "invalid cursor")
		}
		where = append(where, "id < "+arg(n))
	}
	q := `SELECT id, at, key_id, method, route, target, status, request_id, project_id FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT " + arg(f.Limit+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	out, err := collect(rows, scanAudit)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, f.Limit, func(last *rdev.AuditEntry) string { return rdev.EncodeCursor(last.At, strconv.FormatInt(last.ID, 10)) })
	return out, next, nil
}
