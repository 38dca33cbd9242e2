package service

import (
	"context"
	"errors"
	"fmt"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/githost"

	"rdev.dev/rdev/internal/rdev"
)

// ProjectRequest is the input of CreateProject.
type ProjectRequest struct {
	ID                string           `json:"id"`
	Name              string           `json:"name"`
	DefaultBranch     string           `json:"default_branch,omitempty"`
	ProtectedBranches []string         `json:"protected_branches,omitempty"`
	ReviewCommand     string           `json:"review_command,omitempty"`
	Components        []rdev.Component `json:"components,omitempty"`
	Limits            rdev.Limits      `json:"limits,omitempty"`
	Egress            rdev.Egress      `json:"egress,omitempty"`
	// ImportFrom is a git URL or a path on the server to import every
	// branch and tag from; empty creates an empty repository.
	ImportFrom string `json:"import_from,omitempty"`
}

// Project returns the record the request describes, defaults filled.
func (r *ProjectRequest) Project() rdev.Project {
	p := rdev.Project{ID: r.ID, Name: r.Name, DefaultBranch: r.DefaultBranch, ProtectedBranches: r.ProtectedBranches,
		ReviewCommand: r.ReviewCommand, Components: r.Components, Limits: r.Limits, Egress: r.Egress}
	p.Normalize()
	return p
}

// Validate checks the request; errors are *rdev.InvalidError.
func (r *ProjectRequest) Validate() error {
	p := r.Project()
	if err := p.Validate(); err != nil {
		return err
	}
	return githost.ValidateImportSource(r.ImportFrom)
}

// CreateProject registers a project. rdev.ErrProjectExists if the id is
// taken; rdev.ErrProjectNotAllowed if caller's allow-list excludes it.
func (s *Service) CreateProject(ctx context.Context, caller *rdev.APIKey, r ProjectRequest) (*rdev.Project, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if !caller.AllowsProject(r.ID) {
		return nil, rdev.ErrProjectNotAllowed
	}
	if s.git.IsInternal(r.ImportFrom) {
		return nil, rdev.Invalid("import_from", "cannot import from rdev's own data directory")
	}
	// A cheap early answer for the common conflict; the insert below is
	// what decides under a race.
	if _, err := s.store.GetProject(ctx, r.ID); err == nil {
		return nil, rdev.ErrProjectExists
	}
	p := r.Project()
	via, stop, err := s.importRoute(ctx, caller, p.ID, r.ImportFrom)
	if err != nil {
		return nil, err
	}
	staged, err := s.git.Stage(ctx, p.ID, p.DefaultBranch, r.ImportFrom, via)
	stop()
	if err != nil {
		return nil, err
	}
	p.CreatedAt = s.clock()
	p.UpdatedAt = p.CreatedAt
	if err := s.store.CreateProject(ctx, &p); err != nil {
		s.git.Discard(staged)
		return nil, err
	}
	if err := s.git.Commit(staged, p.ID); err != nil {
		s.git.Discard(staged)
		if derr := s.store.DeleteProject(context.WithoutCancel(ctx), p.ID); derr != nil {
			s.log.Error("undo project record after repository failure", "project", p.ID, "err", derr)
		}
		return nil, fmt.Errorf("place repository: %w", err)
	}
	return &p, nil
}

// GetProject returns a project the caller may see; rdev.ErrProjectNotFound
// otherwise, whether it is missing or outside the allow-list.
func (s *Service) GetProject(ctx context.Context, caller *rdev.APIKey, id string) (*rdev.Project, error) {
	if !caller.AllowsProject(id) {
		return nil, rdev.ErrProjectNotFound
	}
	return s.store.GetProject(ctx, id)
}

// Project returns a project for rdev's own use (a sandbox's limits and
// egress policy), with no caller to check; rdev.ErrProjectNotFound.
func (s *Service) Project(ctx context.Context, id string) (*rdev.Project, error) {
	return s.store.GetProject(ctx, id)
}

// ListProjects returns a page of the projects the caller may see.
func (s *Service) ListProjects(ctx context.Context, caller *rdev.APIKey, page rdev.Page) ([]*rdev.Project, string, error) {
	f := rdev.ProjectFilter{Page: page}
	if len(caller.Projects) > 0 {
		f.IDs = caller.Projects
	}
	return s.store.ListProjects(ctx, f)
}

// PatchProject applies a partial update and returns the result.
func (s *Service) PatchProject(ctx context.Context, caller *rdev.APIKey, id string, patch rdev.ProjectPatch) (*rdev.Project, error) {
	cur, err := s.GetProject(ctx, caller, id)
	if err != nil {
		return nil, err
	}
	p := patch.Apply(*cur)
	p.Normalize()
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if p.DefaultBranch != cur.DefaultBranch {
		// The default branch is always protected: naming one that does not
		// exist would leave the old one unprotected with nothing in its
		// place. An empty repository may name any branch (its first push
		// makes it).
		if err := s.git.SetDefaultBranch(ctx, id, p.DefaultBranch); err != nil {
			if errors.Is(err, rdev.ErrBranchNotFound) {
				return nil, rdev.Invalid("default_branch", "the repository has no branch %q: push it first, or name one of its branches", p.DefaultBranch)
			}
			return nil, err
		}
	}
	p.UpdatedAt = s.clock()
	if err := s.store.UpdateProject(ctx, &p); err != nil {
		if p.DefaultBranch != cur.DefaultBranch {
			s.git.SetDefaultBranch(context.WithoutCancel(ctx), id, cur.DefaultBranch)
		}
		return nil, err
	}
	return &p, nil
}

// DeleteProject removes a project, its checkouts (their tokens stop working)
// and its repository. Later issues extend it to end sessions and remove
// cluster resources.
func (s *Service) DeleteProject(ctx context.Context, caller *rdev.APIKey, id string) error {
	if !caller.AllowsProject(id) {
		return rdev.ErrProjectNotFound
	}
	if _, err := s.store.GetProject(ctx, id); err != nil {
		return err
	}
	// End the session, then remove every cluster resource labelled with
	// the project, collecting failures instead of stopping at the first;
	// the resource GC retries what is left once the record is gone.
	var errs []error
	if err := s.endActiveSession(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("end session: %w", err))
	}
	if s.cluster != nil {
		if err := s.cluster.DeleteSelected(ctx, cluster.ProjectLabels(id)); err != nil {
			errs = append(errs, fmt.Errorf("remove cluster resources: %w", err))
		}
	}
	// The record (its checkouts and their tokens with it) before the
	// repository, so that nothing can use the repository while it goes.
	if err := s.store.DeleteProject(ctx, id); err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := s.git.Delete(id); err != nil {
		errs = append(errs, fmt.Errorf("remove repository of %s: %w", id, err))
	}
	return errors.Join(errs...)
}

// ListAudit returns a page of audit entries.
func (s *Service) ListAudit(ctx context.Context, caller *rdev.APIKey, f rdev.AuditFilter) ([]*rdev.AuditEntry, string, error) {
	f.Projects = nil
	if caller != nil && len(caller.Projects) > 0 {
		// A restricted key reads only entries of its projects.
		f.Projects = caller.Projects
	}
	return s.store.ListAudit(ctx, f)
}

// Audit appends an entry, stamping its time.
func (s *Service) Audit(ctx context.Context, e *rdev.AuditEntry) error {
	e.At = s.clock()
	return s.store.AppendAudit(ctx, e)
}
