package sqlite

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"rdev.dev/rdev/internal/rdev"
)

// AppendAudit inserts e and sets e.ID.
func (s *Store) AppendAudit(ctx context.Context, e *rdev.AuditEntry) error {
	return s.w.QueryRowContext(ctx, `INSERT INTO audit_log (at, key_id, method, route, target, status, request_id, project_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		micros(e.At), e.KeyID, e.Method, e.Route, e.Target, e.Status, e.RequestID, e.ProjectID).Scan(&e.ID)
}

// ListAudit returns a page of matching entries, newest first.
func (s *Store) ListAudit(ctx context.Context, f rdev.AuditFilter) ([]*rdev.AuditEntry, string, error) {
	var where []string
	var args []any
	if f.KeyID != "" {
		where, args = append(where, "key_id = ?"), append(args, f.KeyID)
	}
	if f.Target != "" {
		where, args = append(where, "target = ?"), append(args, f.Target)
	}
	if len(f.Projects) > 0 {
		pj, _ := json.Marshal(f.Projects)
		where, args = append(where, "project_id IN (SELECT value FROM json_each(?))"), append(args, string(pj))
	}
	if !f.Since.IsZero() {
		where, args = append(where, "at >= ?"), append(args, micros(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "at < ?"), append(args, micros(f.Until))
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
		where, args = append(where, "id < ?"), append(args, n)
	}
	q := `SELECT id, at, key_id, method, route, target, status, request_id, project_id FROM audit_log`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, f.Limit+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	out := []*rdev.AuditEntry{}
	for rows.Next() {
		var e rdev.AuditEntry
		var at int64
		if err := rows.Scan(&e.ID, &at, &e.KeyID, &e.Method, &e.Route, &e.Target, &e.Status, &e.RequestID, &e.ProjectID); err != nil {
			return nil, "", err
		}
		e.At = fromMicros(at)
		out = append(out, &e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, f.Limit, func(last *rdev.AuditEntry) string { return rdev.EncodeCursor(last.At, strconv.FormatInt(last.ID, 10)) })
	return out, next, nil
}
