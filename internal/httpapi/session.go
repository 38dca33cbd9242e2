package httpapi

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "project/"+id)
	var req service.SessionRequest
	if err := decode(w, r, &req); err != nil {
		// The seed's message for any unreadable body; the field, when one
		// is to blame, still says which.
		var inv *rdev.InvalidError
		if errors.As(err, &inv) {
			err = &rdev.InvalidError{Field: inv.Field, Message: "invalid request body"}
		}
		s.respondError(w, r, err, "")
		return
	}
	sess, err := s.svc.CreateSession(r.Context(), caller(r.Context()), id, req)
	if err != nil {
		s.respondError(w, r, err, "Failed to create session")
		return
	}
	setTarget(r, "session/"+sess.ID)
	respond(w, r, http.StatusCreated, sess)
}

func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	page, err := pageParams(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	ss, next, err := s.svc.ListSessions(r.Context(), caller(r.Context()), id, page)
	if err != nil {
		s.respondError(w, r, err, "Failed to list sessions")
		return
	}
	respond(w, r, http.StatusOK, listBody{"sessions": ss}.next(next))
}

func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sess, err := s.svc.GetSession(r.Context(), caller(r.Context()), id, chi.URLParam(r, "sid"))
	if err != nil {
		s.respondError(w, r, err, "Failed to get session")
		return
	}
	respond(w, r, http.StatusOK, sess)
}

func (s *Server) checkinSession(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid := chi.URLParam(r, "sid")
	setTarget(r, "session/"+sid)
	// The seed: an absent or unreadable body means both flags false.
	var req service.CheckinRequest
	if err := decodeOptional(w, r, &req); err != nil {
		req = service.CheckinRequest{}
	}
	res, err := s.svc.CheckinSession(r.Context(), caller(r.Context()), id, sid, req)
	if err != nil {
		s.respondError(w, r, err, "Failed to end session")
		return
	}
	respond(w, r, http.StatusOK, res)
}

func (s *Server) terminateSession(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid := chi.URLParam(r, "sid")
	setTarget(r, "session/"+sid)
	res, err := s.svc.TerminateSession(r.Context(), caller(r.Context()), id, sid)
	if err != nil {
		s.respondError(w, r, err, "Failed to terminate session")
		return
	}
	respond(w, r, http.StatusOK, res)
}

func (s *Server) keepaliveSession(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid := chi.URLParam(r, "sid")
	setTarget(r, "session/"+sid)
	sess, err := s.svc.KeepaliveSession(r.Context(), caller(r.Context()), id, sid)
	if err != nil {
		s.respondError(w, r, err, "Failed to keep session alive")
		return
	}
	respond(w, r, http.StatusOK, sess)
}

func (s *Server) deployProject(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "project/"+id)
	st, err := s.svc.DeployProject(r.Context(), caller(r.Context()), id)
	if err != nil {
		s.respondError(w, r, err, "Failed to deploy project")
		return
	}
	respond(w, r, http.StatusOK, st)
}

func (s *Server) undeployProject(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "project/"+id)
	st, err := s.svc.UndeployProject(r.Context(), caller(r.Context()), id)
	if err != nil {
		s.respondError(w, r, err, "Failed to undeploy project")
		return
	}
	respond(w, r, http.StatusOK, st)
}

func (s *Server) projectStatus(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	st, err := s.svc.ProjectStatus(r.Context(), caller(r.Context()), id)
	if err != nil {
		s.respondError(w, r, err, "Failed to get project status")
		return
	}
	respond(w, r, http.StatusOK, st)
}
