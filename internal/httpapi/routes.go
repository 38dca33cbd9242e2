package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// Scope sets of SPEC §4, by route group and kind of action.
var (
	projectsRead    = []rdev.Scope{rdev.ScopeProjectsRead, rdev.ScopeAdmin}
	projectsWrite   = []rdev.Scope{rdev.ScopeProjectsWrite, rdev.ScopeAdmin}
	projectsExecute = []rdev.Scope{rdev.ScopeProjectsExecute, rdev.ScopeAdmin}
	adminOnly       = []rdev.Scope{rdev.ScopeAdmin}
	sessionsRead    = []rdev.Scope{rdev.ScopeSessionsRead, rdev.ScopeProjectsRead, rdev.ScopeAdmin}
	sessionsAct     = []rdev.Scope{rdev.ScopeSessionsExecute, rdev.ScopeProjectsExecute, rdev.ScopeAdmin}
	workersRead     = []rdev.Scope{rdev.ScopeWorkersRead, rdev.ScopeAdmin}
	workersAct      = []rdev.Scope{rdev.ScopeWorkersExecute, rdev.ScopeAdmin}
)

// routes is the whole API on one page.
func (s *Server) routes(reg *prometheus.Registry) chi.Router {
	r := chi.NewRouter()
	r.Use(withRequestID, s.observe)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) { s.respondError(w, r, errRouteNotFound, "") })
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) { s.respondError(w, r, errMethodNotAllowed, "") })

	r.Get("/healthz", s.healthz)
	r.With(timeout(TimeoutFast)).Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))

	// Smart-HTTP git, with its own authentication (basic auth) and no
	// time budget: a large push takes what it takes.
	r.Get("/git/{repo}/*", s.serveGit)
	r.Post("/git/{repo}/*", s.serveGit)

	// Previews in path form; the host form is routed in ServeHTTP.
	r.Handle("/preview/{sid}/*", http.HandlerFunc(s.servePathPreview))

	r.Route("/api/v1", func(r chi.Router) {
		r.Get("/openapi.json", s.openapi)
		// Forward-auth for an ingress in front of previews; it checks the
		// preview's own credentials.
		r.With(timeout(TimeoutFast)).Get("/preview-auth", s.previewAuth)

		r.Group(func(r chi.Router) {
			r.Use(s.authenticate)

			r.With(timeout(TimeoutFast), s.requireScope(projectsRead...)).Get("/projects", s.listProjects)
			r.With(timeout(TimeoutOrchestration), s.requireScope(projectsWrite...)).Post("/projects", s.createProject)
			r.With(timeout(TimeoutFast), s.requireScope(projectsRead...)).Get("/projects/{id}", s.getProject)
			r.With(timeout(TimeoutStandard), s.requireScope(projectsWrite...)).Patch("/projects/{id}", s.patchProject)
			r.With(timeout(TimeoutOrchestration), s.requireScope(projectsWrite...)).Delete("/projects/{id}", s.deleteProject)

			r.With(timeout(TimeoutOrchestration), s.requireScope(projectsExecute...)).Post("/projects/{id}/deploy", s.deployProject)
			r.With(timeout(TimeoutOrchestration), s.requireScope(projectsExecute...)).Post("/projects/{id}/undeploy", s.undeployProject)
			r.With(timeout(TimeoutStandard), s.requireScope(projectsRead...)).Get("/projects/{id}/status", s.projectStatus)

			r.With(timeout(TimeoutFast), s.requireScope(sessionsRead...)).Get("/projects/{id}/sessions", s.listSessions)
			r.With(timeout(TimeoutOrchestration), s.requireScope(sessionsAct...)).Post("/projects/{id}/sessions", s.createSession)
			r.With(timeout(TimeoutFast), s.requireScope(sessionsRead...)).Get("/projects/{id}/sessions/{sid}", s.getSession)
			r.With(timeout(TimeoutOrchestration), s.requireScope(sessionsAct...)).Post("/projects/{id}/sessions/{sid}/checkin", s.checkinSession)
			r.With(timeout(TimeoutStandard), s.requireScope(sessionsAct...)).Post("/projects/{id}/sessions/{sid}/keepalive", s.keepaliveSession)
			r.With(timeout(TimeoutOrchestration), s.requireScope(adminOnly...)).Delete("/projects/{id}/sessions/{sid}", s.terminateSession)

			r.With(timeout(TimeoutStandard), s.requireScope(sessionsAct...)).Post("/projects/{id}/sessions/{sid}/preview-links", s.createPreviewLink)
			r.With(timeout(TimeoutOrchestration), s.requireScope(sessionsAct...)).Post("/projects/{id}/sessions/{sid}/commands", s.runCommand)
			r.With(timeout(TimeoutFast), s.requireScope(sessionsRead...)).Get("/projects/{id}/sessions/{sid}/commands", s.listCommands)
			r.With(timeout(TimeoutFast), s.requireScope(sessionsRead...)).Get("/projects/{id}/sessions/{sid}/commands/{cmd}", s.getCommand)
			// A stream lasts as long as its command: no time budget.
			r.With(s.requireScope(sessionsRead...)).Get("/projects/{id}/sessions/{sid}/commands/{cmd}/events", s.commandEvents)
			r.With(timeout(TimeoutStandard), s.requireScope(sessionsAct...)).Post("/projects/{id}/sessions/{sid}/commands/{cmd}/stdin", s.commandStdin)
			r.With(timeout(TimeoutStandard), s.requireScope(sessionsAct...)).Post("/projects/{id}/sessions/{sid}/commands/{cmd}/signal", s.commandSignal)

			r.With(timeout(TimeoutFast), s.requireScope(projectsRead...)).Get("/projects/{id}/checkouts", s.listCheckouts)
			r.With(timeout(TimeoutOrchestration), s.requireScope(projectsExecute...)).Post("/projects/{id}/checkouts", s.createCheckout)
			r.With(timeout(TimeoutFast), s.requireScope(projectsRead...)).Get("/projects/{id}/checkouts/{cid}", s.getCheckout)
			r.With(timeout(TimeoutOrchestration), s.requireScope(projectsExecute...)).Post("/projects/{id}/checkouts/{cid}/checkin", s.checkinCheckout)

			r.With(timeout(TimeoutFast), s.requireScope(workersRead...)).Get("/workers/pool", s.workerPool)
			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...)).Post("/workers", s.registerWorker)
			r.With(timeout(TimeoutFast), s.requireScope(workersRead...)).Get("/workers/{wid}", s.getWorker)
			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...), leaseTraffic).Post("/workers/{wid}/heartbeat", s.workerHeartbeat)
			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...)).Delete("/workers/{wid}", s.deregisterWorker)

			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...)).Post("/tasks", s.createTask)
			r.With(timeout(TimeoutFast), s.requireScope(workersRead...)).Get("/tasks", s.listTasks)
			// A claim waits up to 30 s for work.
			r.With(timeout(TimeoutStandard+service.MaxClaimWait), s.requireScope(workersAct...), leaseTraffic).Post("/tasks/claim", s.claimTask)
			r.With(timeout(TimeoutFast), s.requireScope(workersRead...)).Get("/tasks/{tid}", s.getTask)
			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...), leaseTraffic).Post("/tasks/{tid}/heartbeat", workerAction(s, "Failed to extend the lease", s.svc.HeartbeatTask))
			// Completing a review may merge its branch.
			r.With(timeout(TimeoutOrchestration), s.requireScope(workersAct...)).Post("/tasks/{tid}/complete", workerAction(s, "Failed to complete task", s.svc.CompleteTask))
			r.With(timeout(TimeoutOrchestration+service.MaxClaimWait), s.requireScope(workersAct...)).Post("/tasks/{tid}/complete-and-claim", s.completeAndClaim)
			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...)).Post("/tasks/{tid}/fail", workerAction(s, "Failed to fail task", s.svc.FailTask))
			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...)).Post("/tasks/{tid}/cancel", s.cancelTask)
			r.With(timeout(TimeoutStandard), s.requireScope(workersAct...), leaseTraffic).Post("/tasks/{tid}/log", s.taskLog)
			r.With(s.requireScope(workersRead...)).Get("/tasks/{tid}/events", s.taskEvents)

			r.With(timeout(TimeoutStandard), s.requireScope(adminOnly...)).Post("/keys", s.createKey)
			r.With(timeout(TimeoutFast), s.requireScope(adminOnly...)).Get("/keys", s.listKeys)
			r.With(timeout(TimeoutStandard), s.requireScope(adminOnly...)).Delete("/keys/{id}", s.deleteKey)

			r.With(timeout(TimeoutStandard), s.requireScope(adminOnly...)).Get("/audit", s.listAudit)
		})
	})
	return r
}
