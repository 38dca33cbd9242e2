// Package httpapi serves rdev's HTTP API: routes.go lists every route on one
// page; one file per resource holds its handlers.
package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"rdev.dev/rdev/internal/service"
)

var errPanic = errors.New("panic")

func debugStack() []byte { return debug.Stack() }

// Server is the HTTP face of a service.Service.
type Server struct {
	svc           *service.Service
	log           *slog.Logger
	metrics       *metrics
	router        chi.Router
	logRequests   bool
	previewDomain string
	pathPreviews  bool
	// previewTransport is shared by every preview, so that connections to
	// a session's app are reused.
	previewTransport *http.Transport
}

// Config holds what New needs.
type Config struct {
	Service  *service.Service
	Log      *slog.Logger
	Registry *prometheus.Registry // metrics are registered here and served at /metrics
	// LogRequests logs one line per request at info level.
	LogRequests bool
	// PreviewDomain: requests for <session>.<PreviewDomain> go to that
	// session's preview.
	PreviewDomain string
	// PreviewPathForm serves previews at /preview/<session>/ too. Off by
	// default: a preview's script would then share rdev's origin.
	PreviewPathForm bool
}

// New builds the handler.
func New(c Config) *Server {
	s := &Server{svc: c.Service, log: c.Log, metrics: newMetrics(c.Registry), logRequests: c.LogRequests,
		previewDomain: strings.ToLower(strings.Trim(c.PreviewDomain, ".")), pathPreviews: c.PreviewPathForm, previewTransport: newPreviewTransport(c.Service)}
	s.router = s.routes(c.Registry)
	return s
}

// ServeHTTP serves the API, and previews in host form.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if sid := s.previewSession(r); sid != "" {
		withRequestID(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.servePreview(w, r, sid, "")
		})).ServeHTTP(w, r)
		return
	}
	s.router.ServeHTTP(w, r)
}

// Router exposes the router, for tests that walk its routes.
func (s *Server) Router() chi.Router { return s.router }
