package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// projectID reads and validates the {id} path parameter.
func projectID(r *http.Request) (string, error) {
	id := chi.URLParam(r, "id")
	if rdev.ValidateProjectID(id) != nil {
		return "", rdev.Invalid("id", "invalid project id")
	}
	return id, nil
}

func (s *Server) createProject(w http.ResponseWriter, r *http.Request) {
	var req service.ProjectRequest
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "project/"+req.ID)
	p, err := s.svc.CreateProject(r.Context(), caller(r.Context()), req)
	if err != nil {
		s.respondError(w, r, err, "Failed to create project")
		return
	}
	respond(w, r, http.StatusCreated, p)
}

func (s *Server) listProjects(w http.ResponseWriter, r *http.Request) {
	page, err := pageParams(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	ps, next, err := s.svc.ListProjects(r.Context(), caller(r.Context()), page)
	if err != nil {
		s.respondError(w, r, err, "Failed to list projects")
		return
	}
	respond(w, r, http.StatusOK, listBody{"projects": ps}.next(next))
}

func (s *Server) getProject(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	p, err := s.svc.GetProject(r.Context(), caller(r.Context()), id)
	if err != nil {
		s.respondError(w, r, err, "Failed to get project")
		return
	}
	respond(w, r, http.StatusOK, p)
}

func (s *Server) patchProject(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "project/"+id)
	var patch rdev.ProjectPatch
	if err := decode(w, r, &patch); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	p, err := s.svc.PatchProject(r.Context(), caller(r.Context()), id, patch)
	if err != nil {
		s.respondError(w, r, err, "Failed to update project")
		return
	}
	respond(w, r, http.StatusOK, p)
}

func (s *Server) deleteProject(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "project/"+id)
	if err := s.svc.DeleteProject(r.Context(), caller(r.Context()), id); err != nil {
		s.respondError(w, r, err, "Failed to delete project")
		return
	}
	respond(w, r, http.StatusOK, map[string]string{"id": id, "status": "deleted"})
}

// listBody is a list payload: {"<things>": [...], "next_cursor": "…"}.
type listBody map[string]any

func (l listBody) next(cursor string) listBody {
	if cursor != "" {
		l["next_cursor"] = cursor
	}
	return l
}

func pageParams(r *http.Request) (rdev.Page, error) {
	q := r.URL.Query()
	return rdev.ParsePage(q.Get("limit"), q.Get("cursor"))
}
