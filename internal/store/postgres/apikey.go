package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"rdev.dev/rdev/internal/rdev"
)

const keyCols = `id, name, scopes, projects, hash, created_by, created_at, expires_at, last_used_at, deleted_at`

func scanKey(row pgx.Row) (*rdev.APIKey, error) {
	var k rdev.APIKey
	if err := row.Scan(&k.ID, &k.Name, &k.Scopes, &k.Projects, &k.Hash, &k.CreatedBy, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt, &k.DeletedAt); err != nil {
		return nil, err
	}
	k.CreatedAt = utc(k.CreatedAt)
	k.ExpiresAt, k.LastUsedAt, k.DeletedAt = utcPtr(k.ExpiresAt), utcPtr(k.LastUsedAt), utcPtr(k.DeletedAt)
	return &k, nil
}

func keyProjects(k *rdev.APIKey) []string {
	if k.Projects == nil {
		return []string{}
	}
	return k.Projects
}

// CreateKey inserts k. rdev.ErrConflict if the id or hash is taken.
func (s *Store) CreateKey(ctx context.Context, k *rdev.APIKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO api_keys (`+keyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		k.ID, k.Name, k.Scopes, keyProjects(k), k.Hash, k.CreatedBy, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.DeletedAt)
	if isUnique(err) {
		return rdev.ErrConflict
	}
	return err
}

// PutKey inserts k or overwrites the key with its id, undeleting it.
func (s *Store) PutKey(ctx context.Context, k *rdev.APIKey) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO api_keys (`+keyCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, NULL)
		ON CONFLICT (id) DO UPDATE SET name = excluded.name, scopes = excluded.scopes, projects = excluded.projects,
		hash = excluded.hash, expires_at = excluded.expires_at, deleted_at = NULL`,
		k.ID, k.Name, k.Scopes, keyProjects(k), k.Hash, k.CreatedBy, k.CreatedAt, k.ExpiresAt)
	return err
}

// GetKey returns a key that is not deleted, or rdev.ErrKeyNotFound.
func (s *Store) GetKey(ctx context.Context, id string) (*rdev.APIKey, error) {
	k, err := scanKey(s.pool.QueryRow(ctx, `SELECT `+keyCols+` FROM api_keys WHERE id = $1 AND deleted_at IS NULL`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrKeyNotFound
	}
	return k, err
}

// ListKeys returns a page of keys that are not deleted, newest first.
func (s *Store) ListKeys(ctx context.Context, page rdev.Page) ([]*rdev.APIKey, string, error) {
	q := `SELECT ` + keyCols + ` FROM api_keys WHERE deleted_at IS NULL`
	args := []any{page.Limit + 1}
	if page.Cursor != "" {
		t, id, err := rdev.DecodeCursor(page.Cursor)
		if err != nil {
			return nil, "", err
		}
		q += ` AND (created_at, id) < ($2, $3)`
		args = append(args, t, id)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT $1`
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	out, err := collect(rows, scanKey)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, page.Limit, func(last *rdev.APIKey) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// DeleteKey marks the key deleted. rdev.ErrKeyNotFound if missing or deleted.
func (s *Store) DeleteKey(ctx context.Context, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE api_keys SET deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL`, at, id)
	return oneRow(tag, err, rdev.ErrKeyNotFound)
}

// TouchKey records the key's last use.
func (s *Store) TouchKey(ctx context.Context, id string, at time.Time) error {
	_, err := s.pool.Exec(ctx, `UPDATE api_keys SET last_used_at = $1 WHERE id = $2`, at, id)
	return err
}

// CountKeys counts every key, deleted ones included.
func (s *Store) CountKeys(ctx context.Context) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM api_keys`).Scan(&n)
	return n, err
}
