package postgres

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"rdev.dev/rdev/internal/rdev"
)

const projectCols = `id, name, default_branch, protected_branches, review_command, components, limits, egress, created_at, updated_at`

func scanProject(row pgx.Row) (*rdev.Project, error) {
	var p rdev.Project
	if err := row.Scan(&p.ID, &p.Name, &p.DefaultBranch, &p.ProtectedBranches, &p.ReviewCommand, &p.Components, &p.Limits, &p.Egress, &p.CreatedAt, &p.UpdatedAt); err != nil {
		return nil, err
	}
	p.CreatedAt, p.UpdatedAt = utc(p.CreatedAt), utc(p.UpdatedAt)
	p.Normalize()
	return &p, nil
}

// CreateProject inserts p. rdev.ErrProjectExists if the id is taken.
func (s *Store) CreateProject(ctx context.Context, p *rdev.Project) error {
	q := *p
	q.Normalize()
	_, err := s.pool.Exec(ctx, `INSERT INTO projects (`+projectCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		q.ID, q.Name, q.DefaultBranch, q.ProtectedBranches, q.ReviewCommand, q.Components, q.Limits, q.Egress, q.CreatedAt, q.UpdatedAt)
	if isUnique(err) {
		return rdev.ErrProjectExists
	}
	return err
}

// GetProject returns the project or rdev.ErrProjectNotFound.
func (s *Store) GetProject(ctx context.Context, id string) (*rdev.Project, error) {
	p, err := scanProject(s.pool.QueryRow(ctx, `SELECT `+projectCols+` FROM projects WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, rdev.ErrProjectNotFound
	}
	return p, err
}

// ListProjects returns a page of projects, newest first.
func (s *Store) ListProjects(ctx context.Context, f rdev.ProjectFilter) ([]*rdev.Project, string, error) {
	var where []string
	var args []any
	arg := func(v any) string { args = append(args, v); return "$" + strconv.Itoa(len(args)) }
	if f.IDs != nil {
		if len(f.IDs) == 0 {
			return []*rdev.Project{}, "", nil
		}
		where = append(where, "id = ANY("+arg(f.IDs)+")")
	}
	if f.Cursor != "" {
		t, id, err := rdev.DecodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(created_at, id) < ("+arg(t)+", "+arg(id)+")")
	}
	q := `SELECT ` + projectCols + ` FROM projects`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT " + arg(f.Limit+1)
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	out, err := collect(rows, scanProject)
	if err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, f.Limit, func(last *rdev.Project) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// UpdateProject replaces the mutable fields of p. rdev.ErrProjectNotFound if missing.
func (s *Store) UpdateProject(ctx context.Context, p *rdev.Project) error {
	q := *p
	q.Normalize()
	tag, err := s.pool.Exec(ctx, `UPDATE projects SET name = $1, default_branch = $2, protected_branches = $3,
		review_command = $4, components = $5, limits = $6, egress = $7, updated_at = $8 WHERE id = $9`,
		q.Name, q.DefaultBranch, q.ProtectedBranches, q.ReviewCommand, q.Components, q.Limits, q.Egress, q.UpdatedAt, q.ID)
	return oneRow(tag, err, rdev.ErrProjectNotFound)
}

// DeleteProject removes the record. rdev.ErrProjectNotFound if missing.
func (s *Store) DeleteProject(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM projects WHERE id = $1`, id)
	return oneRow(tag, err, rdev.ErrProjectNotFound)
}

// ProjectIDs returns every project id.
func (s *Store) ProjectIDs(ctx context.Context) ([]string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM projects ORDER BY id`)
	if err != nil {
		return nil, err
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if ids == nil {
		ids = []string{}
	}
	return ids, err
}
