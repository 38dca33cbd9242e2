package httpapi

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var req service.KeyRequest
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	k, err := s.svc.CreateKey(r.Context(), caller(r.Context()), req)
	if err != nil {
		s.respondError(w, r, err, "Failed to create key")
		return
	}
	setTarget(r, "key/"+k.ID)
	respond(w, r, http.StatusCreated, k)
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	page, err := pageParams(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	ks, next, err := s.svc.ListKeys(r.Context(), caller(r.Context()), page)
	if err != nil {
		s.respondError(w, r, err, "Failed to list keys")
		return
	}
	respond(w, r, http.StatusOK, listBody{"keys": ks}.next(next))
}

func (s *Server) deleteKey(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	setTarget(r, "key/"+id)
	if err := s.svc.DeleteKey(r.Context(), caller(r.Context()), id); err != nil {
		s.respondError(w, r, err, "Failed to delete key")
		return
	}
	respond(w, r, http.StatusOK, map[string]string{"id": id, "status": "deleted"})
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	page, err := pageParams(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	q := r.URL.Query()
	f := rdev.AuditFilter{KeyID: q.Get("key"), Target: q.Get("target"), Page: page}
	if f.Since, err = timeParam(q.Get("since"), "since"); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	if f.Until, err = timeParam(q.Get("until"), "until"); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	es, next, err := s.svc.ListAudit(r.Context(), caller(r.Context()), f)
	if err != nil {
		s.respondError(w, r, err, "Failed to list audit entries")
		return
	}
	respond(w, r, http.StatusOK, listBody{"entries": es}.next(next))
}

func timeParam(v, name string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, rdev.Invalid(name, "must be an RFC 3339 time, e.g. 2026-11-26T12:00:00Z")
	}
	return t.UTC(), nil
}
