package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"rdev.dev/rdev/internal/rdev"
)

const projectCols = `id, name, default_branch, protected_branches, review_command, components, limits, egress, created_at, updated_at`

func scanProject(row scanner) (*rdev.Project, error) {
	var p rdev.Project
	var prot, comps, limits, egress string
	var created, updated int64
	if err := row.Scan(&p.ID, &p.Name, &p.DefaultBranch, &prot, &p.ReviewCommand, &comps, &limits, &egress, &created, &updated); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(prot), &p.ProtectedBranches); err != nil {
		return nil, fmt.Errorf("project %s: protected_branches: %w", p.ID, err)
	}
	if err := json.Unmarshal([]byte(comps), &p.Components); err != nil {
		return nil, fmt.Errorf("project %s: components: %w", p.ID, err)
	}
	if err := json.Unmarshal([]byte(limits), &p.Limits); err != nil {
		return nil, fmt.Errorf("project %s: limits: %w", p.ID, err)
	}
	if err := json.Unmarshal([]byte(egress), &p.Egress); err != nil {
		return nil, fmt.Errorf("project %s: egress: %w", p.ID, err)
	}
	p.CreatedAt, p.UpdatedAt = fromMicros(created), fromMicros(updated)
	p.Normalize()
	return &p, nil
}

// projectJSON returns the JSON columns of p: protected branches,
// components, limits and egress.
func projectJSON(p *rdev.Project) ([4]string, error) {
	q := *p
	q.Normalize()
	var out [4]string
	for i, v := range []any{q.ProtectedBranches, q.Components, q.Limits, q.Egress} {
		b, err := json.Marshal(v)
		if err != nil {
			return out, err
		}
		out[i] = string(b)
	}
	return out, nil
}

// CreateProject inserts p. rdev.ErrProjectExists if the id is taken.
func (s *Store) CreateProject(ctx context.Context, p *rdev.Project) error {
	j, err := projectJSON(p)
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO projects (`+projectCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.Name, p.DefaultBranch, j[0], p.ReviewCommand, j[1], j[2], j[3], micros(p.CreatedAt), micros(p.UpdatedAt))
	if isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY) {
		return rdev.ErrProjectExists
	}
	return err
}

// GetProject returns the project or rdev.ErrProjectNotFound.
func (s *Store) GetProject(ctx context.Context, id string) (*rdev.Project, error) {
	p, err := scanProject(s.getProject.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, rdev.ErrProjectNotFound
	}
	return p, err
}

// ListProjects returns a page of projects, newest first.
func (s *Store) ListProjects(ctx context.Context, f rdev.ProjectFilter) ([]*rdev.Project, string, error) {
	var where []string
	var args []any
	if f.IDs != nil {
		if len(f.IDs) == 0 {
			return []*rdev.Project{}, "", nil
		}
		where = append(where, "id IN ("+strings.TrimSuffix(strings.Repeat("?,", len(f.IDs)), ",")+")")
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	if f.Cursor != "" {
		t, id, err := rdev.DecodeCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		where = append(where, "(created_at, id) < (?, ?)")
		args = append(args, micros(t), id)
	}
	q := `SELECT ` + projectCols + ` FROM projects`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY created_at DESC, id DESC LIMIT ?"
	args = append(args, f.Limit+1)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	out := []*rdev.Project{}
	for rows.Next() {
		p, err := scanProject(rows)
		if err != nil {
			return nil, "", err
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	out, next := rdev.TrimPage(out, f.Limit, func(last *rdev.Project) string { return rdev.EncodeCursor(last.CreatedAt, last.ID) })
	return out, next, nil
}

// UpdateProject replaces the mutable fields of p. rdev.ErrProjectNotFound if missing.
func (s *Store) UpdateProject(ctx context.Context, p *rdev.Project) error {
	j, err := projectJSON(p)
	if err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `UPDATE projects SET name = ?, default_branch = ?, protected_branches = ?,
		review_command = ?, components = ?, limits = ?, egress = ?, updated_at = ? WHERE id = ?`,
		p.Name, p.DefaultBranch, j[0], p.ReviewCommand, j[1], j[2], j[3], micros(p.UpdatedAt), p.ID)
	return oneRow(res, err, rdev.ErrProjectNotFound)
}

// DeleteProject removes the record. rdev.ErrProjectNotFound if missing.
func (s *Store) DeleteProject(ctx context.Context, id string) error {
	res, err := s.w.ExecContext(ctx, `DELETE FROM projects WHERE id = ?`, id)
	return oneRow(res, err, rdev.ErrProjectNotFound)
}

// ProjectIDs returns every project id.
func (s *Store) ProjectIDs(ctx context.Context) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT id FROM projects ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := []string{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

func oneRow(res sql.Result, err error, missing error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return missing
	}
	return nil
}

func isConstraint(err error, code int) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == code
}
