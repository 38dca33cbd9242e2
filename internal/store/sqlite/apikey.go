package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	sqlite3 "modernc.org/sqlite/lib"

	"rdev.dev/rdev/internal/rdev"
)

const keyCols = `id, name, scopes, projects, hash, created_by, created_at, expires_at, last_used_at, deleted_at`

func scanKey(row scanner) (*rdev.APIKey, error) {
	var k rdev.APIKey
	var scopes, projects string
	var created int64
	var expires, used, deleted sql.NullInt64
	if err := row.Scan(&k.ID, &k.Name, &scopes, &projects, &k.Hash, &k.CreatedBy, &created, &expires, &used, &deleted); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(scopes), &k.Scopes); err != nil {
		return nil, fmt.Errorf("key %s: scopes: %w", k.ID, err)
	}
	if err := json.Unmarshal([]byte(projects), &k.Projects); err != nil {
		return nil, fmt.Errorf("key %s: projects: %w", k.ID, err)
	}
	k.CreatedAt = fromMicros(created)
	k.ExpiresAt, k.LastUsedAt, k.DeletedAt = fromNullMicros(expires), fromNullMicros(used), fromNullMicros(deleted)
	return &k, nil
}

func keyJSON(k *rdev.APIKey) (scopes, projects string) {
	p := k.Projects
	if p == nil {
		p = []string{}
	}
	b1, _ := json.Marshal(k.Scopes)
	b2, _ := json.Marshal(p)
	return string(b1), string(b2)
}

// CreateKey inserts k. rdev.ErrConflict if the id or hash is taken.
func (s *Store) CreateKey(ctx context.Context, k *rdev.APIKey) error {
	scopes, projects := keyJSON(k)
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		k.ID, k.Name, scopes, projects, k.Hash, k.CreatedBy, micros(k.CreatedAt), nullMicros(k.ExpiresAt), nullMicros(k.LastUsedAt), nullMicros(k.DeletedAt))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) || isConstraint(err, sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return rdev.ErrConflict
	}
	return err
}

// PutKey inserts k or overwrites the key with its id, undeleting it.
func (s *Store) PutKey(ctx context.Context, k *rdev.APIKey) error {
	scopes, projects := keyJSON(k)
	_, err := s.w.ExecContext(ctx, `INSERT INTO api_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, scopes = excluded.scopes, projects = excluded.projects,
		hash = excluded.hash, expires_at = excluded.expires_at, deleted_at = NULL`,
		k.ID, k.Name, scopes, projects, k.Hash, k.CreatedBy, micros(k.CreatedAt), nullMicros(k.ExpiresAt))
	return err
}

// GetKey returns a key that is not deleted, or rdev.ErrKeyNotFound.
func (s *Store) GetKey(ctx context.Context, id string) (*rdev.APIKey, error) {
	k, err := scanKey(s.getKey.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrKeyNotFound
	}
	return k, err
}

// ListKeys returns a page of keys that are not deleted, newest first.
func (s *Store) ListKeys(ctx context.Context, page rdev.Page) ([]*rdev.APIKey, string, error) {
	q := `SELECT ` + keyCols + ` FROM api_keys WHERE deleted_at IS NULL`
	var args []any
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
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	out := []*rdev.APIKey{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, k)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.APIKey) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// DeleteKey marks the key deleted. rdev.ErrKeyNotFound if missing or deleted.
func (s *Store) DeleteKey(ctx context.Context, id string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE api_keys SET deleted_at = ? WHERE id = ? AND deleted_at IS NULL`, micros(at), id)
	return oneRow(res, err, rdev.ErrKeyNotFound)
}

// TouchKey records the key's last use.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE api_keys SET last_used_at = ? WHERE id = ?`, micros(at), id)
	return err
}

// CountKeys counts every key, deleted ones included.
func (s *Store) CountKeys(ctx context.Context) (int, error) {
	var n int
	err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM api_keys`).Scan(&n)
	return n, err
}
