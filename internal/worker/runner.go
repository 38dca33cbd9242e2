// Package worker runs tasks: a Runner claims tasks of its kinds, keeps
// their leases alive, streams their logs and reports their results, through
// an API that is either the HTTP API (the SDK, for `rdev worker` and teams'
// own workers) or the service itself (the built-in workers of `rdev serve`).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// API is what a worker needs of rdev. *client.Client implements it, and so
// does the service's in-process adapter.
type API interface {
	Claim(ctx context.Context, workerID string, kinds []string, wait time.Duration) (*rdev.Task, error)
	HeartbeatTask(ctx context.Context, taskID, workerID string) (cancelled bool, err error)
	AppendTaskLog(ctx context.Context, taskID, workerID, stream string, data []byte) error
	CompleteTask(ctx context.Context, taskID, workerID string, result any) (*rdev.Task, error)
	CompleteAndClaim(ctx context.Context, taskID, workerID string, result any, kinds []string, wait time.Duration) (done, next *rdev.Task, err error)
	FailTask(ctx context.Context, taskID, workerID, msg string, retry bool) (*rdev.Task, error)
	WorkerHeartbeat(ctx context.Context, workerID string) error
}

// Handler does one task. Its output goes to the task's log through out.
// It returns the task's result, or an error: a Permanent one fails the
// task; any other is retried (after a backoff, while attempts remain).
// ctx ends when the task is cancelled or the lease is lost.
type Handler func(ctx context.Context, t *rdev.Task, out *Output) (any, error)

type permanent struct{ error }

// Permanent marks an error that retrying will not fix.
func Permanent(err error) error { return permanent{err} }

// Runner claims and runs tasks, Capacity at a time.
type Runner struct {
	API      API
	WorkerID string
	Handlers map[string]Handler // by kind
	Capacity int
	// Heartbeat is how often leases and the worker's presence are renewed
	// (10 s: a third of the default lease).
	Heartbeat time.Duration
	// Wait is how long one claim waits for work (25 s).
	Wait time.Duration
	Log  *slog.Logger
}

func (r *Runner) kinds() []string {
	var ks []string
	for k := range r.Handlers {
		ks = append(ks, k)
	}
	return ks
}

// Run works until ctx ends, then waits for the tasks in hand to stop.
func (r *Runner) Run(ctx context.Context) {
	if r.Heartbeat <= 0 {
		r.Heartbeat = 10 * time.Second
	}
	if r.Wait <= 0 {
		r.Wait = 25 * time.Second
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // presence
		defer wg.Done()
		t := time.NewTicker(r.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := r.API.WorkerHeartbeat(ctx, r.WorkerID); err != nil && ctx.Err() == nil {
					r.Log.Warn("worker heartbeat", "worker", r.WorkerID, "err", err)
				}
			}
		}
	}()
	for range max(r.Capacity, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.slot(ctx)
		}()
	}
	wg.Wait()
}

// slot claims and runs one task at a time. A task done well is reported
// together with the claim of the next one (one request per task while work
// is queued); that claim does not wait, so a stopping runner is never held
// up by it — an idle slot waits in a claim of its own.
func (r *Runner) slot(ctx context.Context) {
	kinds := r.kinds()
	backoff := time.Second
	var t *rdev.Task
	for ctx.Err() == nil {
		if t == nil {
			var err error
			t, err = r.API.Claim(ctx, r.WorkerID, kinds, r.Wait)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.Log.Warn("claim", "worker", r.WorkerID, "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, 30*time.Second)
				continue
			}
			backoff = time.Second
			if t == nil {
				continue
			}
		}
		res, ok := r.run(ctx, t)
		if !ok {
			t = nil
			continue
		}
		// Reports go out even while the runner stops: the task is done.
		report := context.WithoutCancel(ctx)
		if ctx.Err() != nil {
			if _, err := r.API.CompleteTask(report, t.ID, r.WorkerID, res); err != nil {
				r.Log.Warn("report result", "task", t.ID, "err", err)
			}
			return
		}
		_, next, err := r.API.CompleteAndClaim(report, t.ID, r.WorkerID, res, kinds, 0)
		if err != nil {
			r.Log.Warn("report result", "task", t.ID, "err", err)
		}
		t = next
	}
}

// run does one claimed task: its lease is renewed while the handler works,
// and the handler is stopped if the task is cancelled or the lease lost.
// A failure is reported here; a result is returned with ok for the caller
// to report.
func (r *Runner) run(ctx context.Context, t *rdev.Task) (result any, ok bool) {
	// Reports go out even while the runner stops: the task is done.
	report := context.WithoutCancel(ctx)
	tctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lost := make(chan struct{})
	go func() {
		tick := time.NewTicker(r.Heartbeat)
		defer tick.Stop()
		for {
			select {
			case <-tctx.Done():
				return
			case <-tick.C:
				cancelled, err := r.API.HeartbeatTask(report, t.ID, r.WorkerID)
				switch {
				case cancelled:
					cancel(errCancelled)
					return
				case errors.Is(err, rdev.ErrLeaseNotHeld):
					close(lost)
					cancel(errLeaseLost)
					return
				case err != nil:
					r.Log.Warn("task heartbeat", "task", t.ID, "err", err)
				}
			}
		}
	}()
	out := newOutput(report, r.API, t.ID, r.WorkerID, r.Log)
	h := r.Handlers[t.Kind]
	var res any
	var err error
	if h == nil {
		err = Permanent(fmt.Errorf("this worker has no handler for kind %q", t.Kind))
	} else {
		res, err = h(tctx, t, out)
	}
	out.Close()
	if cause := context.Cause(tctx); errors.Is(cause, errCancelled) || errors.Is(cause, errLeaseLost) {
		r.Log.Info("task stopped", "task", t.ID, "why", cause)
		return nil, false // the task is no longer ours to report
	}
	if ctx.Err() != nil && err != nil {
		// The runner is stopping mid-task: give it back for another worker.
		r.API.FailTask(report, t.ID, r.WorkerID, "worker stopped", true)
		return nil, false
	}
	if err != nil {
		var p permanent
		_, ferr := r.API.FailTask(report, t.ID, r.WorkerID, err.Error(), !errors.As(err, &p))
		if ferr != nil {
			r.Log.Warn("report failure", "task", t.ID, "err", ferr)
		}
		return nil, false
	}
	return res, true
}

var (
	errCancelled = errors.New("task cancelled")
	errLeaseLost = errors.New("lease lost")
)
