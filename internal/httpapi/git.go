package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"rdev.dev/rdev/internal/githost"
	"rdev.dev/rdev/internal/rdev"
)

// serveGit serves /git/<project>.git/… over smart HTTP. Credentials come as
// HTTP basic auth (the password is an API key or a checkout token; the user
// name is ignored) or as a bearer token. Errors are plain text, which git
// shows its user.
func (s *Server) serveGit(w http.ResponseWriter, r *http.Request) {
	id, ok := strings.CutSuffix(chi.URLParam(r, "repo"), ".git")
	if !ok || rdev.ValidateProjectID(id) != nil {
		gitError(w, http.StatusNotFound, "rdev: repository not found")
		return
	}
	suffix := chi.URLParam(r, "*")
	service := githost.Service(r.Method, suffix, r.URL.Query().Get("service"))
	if service == "" {
		gitError(w, http.StatusNotFound, "rdev: not a smart-HTTP git endpoint")
		return
	}
	cred := ""
	if _, pass, ok := r.BasicAuth(); ok {
		cred = pass
	} else if tok, ok := bearer(r); ok {
		cred = tok
	}
	if cred == "" {
		w.Header().Set("WWW-Authenticate", `Basic realm="rdev"`)
		gitError(w, http.StatusUnauthorized, "rdev: authentication required (an API key or a checkout token as the password)")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), TimeoutFast)
	acc, err := s.svc.GitAccess(ctx, cred, id)
	cancel()
	var ended *rdev.EndedCheckoutError
	switch {
	case errors.As(err, &ended):
		gitError(w, http.StatusForbidden, "rdev: "+ended.Error())
		return
	case errors.Is(err, rdev.ErrUnauthorized):
		w.Header().Set("WWW-Authenticate", `Basic realm="rdev"`)
		gitError(w, http.StatusUnauthorized, "rdev: invalid, expired or revoked credential")
		return
	case errors.Is(err, rdev.ErrForbidden):
		gitError(w, http.StatusForbidden, "rdev: this API key has no project scope")
		return
	case errors.Is(err, rdev.ErrProjectNotFound):
		gitError(w, http.StatusNotFound, "rdev: repository not found")
		return
	case err != nil:
		s.log.ErrorContext(r.Context(), "git access", "request_id", requestID(r.Context()), "err", err)
		gitError(w, http.StatusInternalServerError, "rdev: internal error, request id "+requestID(r.Context()))
		return
	}
	if service == "git-receive-pack" && !acc.Push {
		gitError(w, http.StatusForbidden, acc.Reason)
		return
	}
	if r.Method == http.MethodPost && service == "git-receive-pack" {
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		defer s.auditGit(r, acc, id, ww)
		w = ww
	}
	s.svc.Git().Serve(w, r, id, suffix, acc)
}

// auditGit records a push. The status is HTTP's: git reports refused ref
// updates inside a 200 response.
func (s *Server) auditGit(r *http.Request, acc githost.Access, id string, ww middleware.WrapResponseWriter) {
	status := ww.Status()
	if status == 0 {
		status = http.StatusOK
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
	defer cancel()
	e := &rdev.AuditEntry{KeyID: acc.Actor, Method: r.Method, Route: routePattern(r), Target: "project/" + id + "/git", ProjectID: id,
		Status: status, RequestID: requestID(r.Context())}
	if err := s.svc.Audit(ctx, e); err != nil {
		s.log.ErrorContext(r.Context(), "audit append failed", "request_id", e.RequestID, "err", err)
	}
}

func gitError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}
