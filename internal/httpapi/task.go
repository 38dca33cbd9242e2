package httpapi

import (
	"context"
	"io"
	"net/http"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

func (s *Server) workerPool(w http.ResponseWriter, r *http.Request) {
	p, err := s.svc.Pool(r.Context())
	if err != nil {
		s.respondError(w, r, err, "Failed to read the worker pool")
		return
	}
	respond(w, r, http.StatusOK, p)
}

func (s *Server) registerWorker(w http.ResponseWriter, r *http.Request) {
	var req service.WorkerRequest
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	wk, err := s.svc.RegisterWorker(r.Context(), caller(r.Context()), req, false)
	if err != nil {
		s.respondError(w, r, err, "Failed to register worker")
		return
	}
	setTarget(r, "worker/"+wk.ID)
	respond(w, r, http.StatusCreated, wk)
}

func (s *Server) getWorker(w http.ResponseWriter, r *http.Request) {
	wk, err := s.svc.GetWorker(r.Context(), caller(r.Context()), chi.URLParam(r, "wid"))
	if err != nil {
		s.respondError(w, r, err, "Failed to get worker")
		return
	}
	respond(w, r, http.StatusOK, wk)
}

func (s *Server) workerHeartbeat(w http.ResponseWriter, r *http.Request) {
	wid := chi.URLParam(r, "wid")
	setTarget(r, "worker/"+wid)
	wk, err := s.svc.WorkerHeartbeat(r.Context(), caller(r.Context()), wid)
	if err != nil {
		s.respondError(w, r, err, "Failed to record heartbeat")
		return
	}
	respond(w, r, http.StatusOK, wk)
}

func (s *Server) deregisterWorker(w http.ResponseWriter, r *http.Request) {
	wid := chi.URLParam(r, "wid")
	setTarget(r, "worker/"+wid)
	if err := s.svc.DeregisterWorker(r.Context(), caller(r.Context()), wid); err != nil {
		s.respondError(w, r, err, "Failed to remove worker")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createTask(w http.ResponseWriter, r *http.Request) {
	var req service.TaskRequest
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	t, err := s.svc.CreateTask(r.Context(), caller(r.Context()), req)
	if err != nil {
		s.respondError(w, r, err, "Failed to queue task")
		return
	}
	setTarget(r, "task/"+t.ID)
	respond(w, r, http.StatusCreated, t)
}

func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) {
	page, err := pageParams(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	q := r.URL.Query()
	f := rdev.TaskFilter{Kind: q.Get("kind"), Status: q.Get("status"), ProjectID: q.Get("project")}
	ts, next, err := s.svc.ListTasks(r.Context(), caller(r.Context()), f, page)
	if err != nil {
		s.respondError(w, r, err, "Failed to list tasks")
		return
	}
	respond(w, r, http.StatusOK, listBody{"tasks": ts}.next(next))
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := s.svc.GetTask(r.Context(), caller(r.Context()), chi.URLParam(r, "tid"))
	if err != nil {
		s.respondError(w, r, err, "Failed to get task")
		return
	}
	respond(w, r, http.StatusOK, t)
}

// claimTask answers 200 with a task and its lease, or 204 when none came
// within the wait.
func (s *Server) claimTask(w http.ResponseWriter, r *http.Request) {
	var req service.ClaimRequest
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	setTarget(r, "worker/"+req.WorkerID)
	t, err := s.svc.Claim(r.Context(), caller(r.Context()), req)
	if err != nil {
		s.respondError(w, r, err, "Failed to claim a task")
		return
	}
	if t == nil {
		w.Header().Set("X-Request-ID", requestID(r.Context()))
		w.WriteHeader(http.StatusNoContent)
		return
	}
	setTarget(r, "task/"+t.ID)
	respond(w, r, http.StatusOK, t)
}

// workerAction handles a worker's report on a task: decode the body,
// call fn, answer 200 with what it returns.
func workerAction[Req any, Res any](s *Server, failMsg string, fn func(ctx context.Context, caller *rdev.APIKey, tid string, req Req) (Res, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tid := chi.URLParam(r, "tid")
		setTarget(r, "task/"+tid)
		var req Req
		if err := decode(w, r, &req); err != nil {
			s.respondError(w, r, err, "")
			return
		}
		res, err := fn(r.Context(), caller(r.Context()), tid, req)
		if err != nil {
			s.respondError(w, r, err, failMsg)
			return
		}
		respond(w, r, http.StatusOK, res)
	}
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tid")
	setTarget(r, "task/"+tid)
	t, err := s.svc.CancelTask(r.Context(), caller(r.Context()), tid)
	if err != nil {
		s.respondError(w, r, err, "Failed to cancel task")
		return
	}
	respond(w, r, http.StatusOK, t)
}

// taskLog appends the raw body (at most 1 MiB) to the task's log as
// ?stream=stdout|stderr, for the worker holding the lease (?worker_id=).
func (s *Server) taskLog(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tid")
	setTarget(r, "task/"+tid)
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, service.MaxTaskLogChunk))
	if err != nil {
		s.respondError(w, r, decodeError(err), "")
		return
	}
	q := r.URL.Query()
	if err := s.svc.AppendTaskLog(r.Context(), caller(r.Context()), tid, q.Get("worker_id"), q.Get("stream"), data); err != nil {
		s.respondError(w, r, err, "Failed to append to the task log")
		return
	}
	respond(w, r, http.StatusOK, map[string]any{"task_id": tid, "bytes": len(data)})
}

func (s *Server) taskEvents(w http.ResponseWriter, r *http.Request) {
	tid := chi.URLParam(r, "tid")
	after, err := lastEventID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	if _, err := s.svc.GetTask(r.Context(), caller(r.Context()), tid); err != nil {
		s.respondError(w, r, err, "Failed to get task")
		return
	}
	s.streamEvents(w, r, "task/"+tid, func(idle func() error, emit func(rdev.Event) error) error {
		return s.svc.FollowTaskLog(r.Context(), caller(r.Context()), tid, after, SSEKeepalive, idle, emit)
	})
}

// completeAndClaim completes a task and answers with the worker's next
// one: {task, next?}.
func (s *Server) completeAndClaim(w http.ResponseWriter, r *http.Request) {
	workerAction(s, "Failed to complete task", s.svc.CompleteAndClaim)(w, r)
}
