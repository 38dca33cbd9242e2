package service

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"rdev.dev/rdev/internal/githost"
	"rdev.dev/rdev/internal/rdev"
)

// Task timing defaults (Config overrides them).
const (
	DefaultTaskLease     = 30 * time.Second
	DefaultWorkerTimeout = 30 * time.Second
	DefaultClaimPoll     = time.Second
	DefaultRetryBackoff  = time.Second
	maxRetryBackoff      = 10 * time.Minute
	MaxClaimWait         = 30 * time.Second
	maxResultBytes       = 64 << 10
	maxPayloadBytes      = 64 << 10
	MaxTaskLogChunk      = 1 << 20
)

// taskWake wakes claimers waiting for work and followers waiting for a
// task's log, in this process; other replicas find work by polling.
type taskWake struct {
	mu     sync.Mutex
	queued chan struct{}            // closed when a task is queued
	logs   map[string]chan struct{} // per task: closed on new log events
}

func newTaskWake() *taskWake {
	return &taskWake{queued: make(chan struct{}), logs: map[string]chan struct{}{}}
}

func (w *taskWake) queuedChan() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.queued
}

func (w *taskWake) taskQueued() {
	w.mu.Lock()
	close(w.queued)
	w.queued = make(chan struct{})
	w.mu.Unlock()
}

func (w *taskWake) logChan(id string) <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	ch, ok := w.logs[id]
	if !ok {
		ch = make(chan struct{})
		w.logs[id] = ch
	}
	return ch
}

func (w *taskWake) logged(id string) {
	w.mu.Lock()
	if ch, ok := w.logs[id]; ok {
		close(ch)
		delete(w.logs, id)
	}
	w.mu.Unlock()
}

// workerCache keeps worker records for claims, which come several times a
// second per worker: a record is read again after workerCacheTTL. A worker
// removed through another replica can still claim here for that long.
type workerCache struct {
	mu sync.Mutex
	m  map[string]cachedWorker
}

type cachedWorker struct {
	w  *rdev.Worker
	at time.Time
}

const workerCacheTTL = 5 * time.Second

func (c *workerCache) get(ctx context.Context, st rdev.TaskStore, id string, now time.Time) (*rdev.Worker, error) {
	c.mu.Lock()
	e, ok := c.m[id]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < workerCacheTTL {
		return e.w, nil
	}
	w, err := st.GetWorker(ctx, id)
	if err != nil {
		c.drop(id)
		return nil, err
	}
	c.put(w, now)
	return w, nil
}

func (c *workerCache) put(w *rdev.Worker, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]cachedWorker{}
	}
	if len(c.m) > 10000 { // workers that never came back
		clear(c.m)
	}
	c.m[w.ID] = cachedWorker{w, now}
}

func (c *workerCache) drop(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}

// WorkerRequest registers a worker.
type WorkerRequest struct {
	Name     string   `json:"name"`
	Kinds    []string `json:"kinds"`
	Capacity int      `json:"capacity"`
}

// Validate checks a registration; errors are *rdev.InvalidError.
func (r *WorkerRequest) Validate() error {
	if r.Name == "" || len(r.Name) > 100 || !utf8.ValidString(r.Name) || strings.ContainsAny(r.Name, "\x00\n\r") {
		return rdev.Invalid("name", "must be 1-100 characters on one line")
	}
	if len(r.Kinds) == 0 || len(r.Kinds) > 16 {
		return rdev.Invalid("kinds", "list 1-16 task kinds")
	}
	for i, k := range r.Kinds {
		if err := rdev.ValidateKind(fmt.Sprintf("kinds[%d]", i), k); err != nil {
			return err
		}
	}
	if r.Capacity < 1 || r.Capacity > 1024 {
		return rdev.Invalid("capacity", "must be between 1 and 1024")
	}
	return nil
}

// RegisterWorker records a worker of caller's key (nil: the server's own);
// it is online until its heartbeats stop, and claims only tasks of the
// key's projects.
func (s *Service) RegisterWorker(ctx context.Context, caller *rdev.APIKey, r WorkerRequest, builtIn bool) (*rdev.Worker, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	now := s.clock()
	w := &rdev.Worker{ID: rdev.NewID("w"), Name: r.Name, Kinds: r.Kinds, Capacity: r.Capacity, BuiltIn: builtIn,
		Projects: []string{}, CreatedAt: now, HeartbeatAt: now, Online: true}
	if caller != nil {
		w.KeyID, w.Projects = caller.ID, caller.Projects
	}
	if err := s.store.RegisterWorker(ctx, w); err != nil {
		return nil, err
	}
	return w, nil
}

// mayActAs reports whether caller may act as w: the server itself (nil),
// the key that registered w, or an unrestricted admin key.
func mayActAs(caller *rdev.APIKey, w *rdev.Worker) bool {
	return caller == nil || caller.Unrestricted() || w.KeyID != "" && w.KeyID == caller.ID
}

// actAs returns the worker named id when caller may act as it;
// rdev.ErrNotYourWorker otherwise.
func (s *Service) actAs(ctx context.Context, caller *rdev.APIKey, id string) (*rdev.Worker, error) {
	w, err := s.tasks.workers.get(ctx, s.store, id, s.clock())
	if err != nil {
		return nil, err
	}
	if !mayActAs(caller, w) {
		return nil, rdev.ErrNotYourWorker
	}
	return w, nil
}

// WorkerHeartbeat keeps a worker online.
func (s *Service) WorkerHeartbeat(ctx context.Context, caller *rdev.APIKey, id string) (*rdev.Worker, error) {
	if _, err := s.actAs(ctx, caller, id); err != nil {
		return nil, err
	}
	w, err := s.store.HeartbeatWorker(ctx, id, s.clock())
	if err != nil {
		return nil, err
	}
	w.Online = true
	return w, nil
}

// DeregisterWorker removes a worker that stops; tasks it still holds go
// back to the queue when their leases lapse. Only the server removes its
// built-in worker.
func (s *Service) DeregisterWorker(ctx context.Context, caller *rdev.APIKey, id string) error {
	w, err := s.actAs(ctx, caller, id)
	if err != nil {
		return err
	}
	if w.BuiltIn && caller != nil {
		return rdev.ErrBuiltInWorker
	}
	s.tasks.workers.drop(id)
	return s.store.DeleteWorker(ctx, id)
}

// GetWorker returns a worker with its online state; a key with a project
// allow-list sees only its own workers.
func (s *Service) GetWorker(ctx context.Context, caller *rdev.APIKey, id string) (*rdev.Worker, error) {
	w, err := s.store.GetWorker(ctx, id)
	if err != nil {
		return nil, err
	}
	if !mayActAs(caller, w) && len(caller.Projects) > 0 {
		return nil, rdev.ErrWorkerNotFound
	}
	w.Online = !w.HeartbeatAt.Before(s.clock().Add(-s.tasks.workerTimeout))
	return w, nil
}

// Pool returns the aggregate of online workers and the queue.
func (s *Service) Pool(ctx context.Context) (*rdev.Pool, error) {
	now := s.clock()
	return s.store.PoolStats(ctx, now, now.Add(-s.tasks.workerTimeout))
}

// TaskRequest queues a task of any kind (teams' own workers take them).
type TaskRequest struct {
	Kind        string          `json:"kind"`
	ProjectID   string          `json:"project_id"`
	Payload     json.RawMessage `json:"payload,omitempty"`
	MaxAttempts int             `json:"max_attempts,omitempty"`
}

// jsonObject checks that raw is a JSON object of at most limit bytes.
func jsonObject(field string, raw json.RawMessage, limit int) error {
	if len(raw) > limit {
		return rdev.Invalid(field, "must be at most %d KiB", limit>>10)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return rdev.Invalid(field, "must be a JSON object")
	}
	return nil
}

// CreateTask queues a task.
func (s *Service) CreateTask(ctx context.Context, caller *rdev.APIKey, r TaskRequest) (*rdev.Task, error) {
	if err := rdev.ValidateKind("kind", r.Kind); err != nil {
		return nil, err
	}
	if r.Kind == rdev.TaskKindReview {
		return nil, rdev.Invalid("kind", "review tasks are queued by check-in")
	}
	if r.ProjectID == "" {
		return nil, rdev.Invalid("project_id", "is required")
	}
	if len(r.Payload) == 0 {
		r.Payload = json.RawMessage(`{}`)
	}
	if err := jsonObject("payload", r.Payload, maxPayloadBytes); err != nil {
		return nil, err
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = 3
	}
	if r.MaxAttempts < 1 || r.MaxAttempts > 100 {
		return nil, rdev.Invalid("max_attempts", "must be between 1 and 100")
	}
	if _, err := s.GetProject(ctx, caller, r.ProjectID); err != nil {
		return nil, err
	}
	now := s.clock()
	t := &rdev.Task{ID: rdev.NewID("t"), Kind: r.Kind, ProjectID: r.ProjectID, Status: rdev.TaskQueued, Payload: compactJSON(r.Payload),
		MaxAttempts: r.MaxAttempts, RunAfter: now, CreatedAt: now, UpdatedAt: now}
	if err := s.store.CreateTask(ctx, t); err != nil {
		return nil, err
	}
	s.tasks.wake.taskQueued()
	return t, nil
}

func compactJSON(raw json.RawMessage) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return raw
	}
	return b.Bytes()
}

// TaskQueued tells waiting claimers in this process that a task was queued
// (check-in queues reviews in its own transaction).
func (s *Service) TaskQueued() { s.tasks.wake.taskQueued() }

// GetTask returns a task the caller may see.
func (s *Service) GetTask(ctx context.Context, caller *rdev.APIKey, id string) (*rdev.Task, error) {
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if caller != nil && !caller.AllowsProject(t.ProjectID) {
		return nil, rdev.ErrTaskNotFound
	}
	return t, nil
}

// ListTasks returns a page of the tasks the caller may see.
func (s *Service) ListTasks(ctx context.Context, caller *rdev.APIKey, f rdev.TaskFilter, page rdev.Page) ([]*rdev.Task, string, error) {
	if f.Kind != "" {
		if err := rdev.ValidateKind("kind", f.Kind); err != nil {
			return nil, "", err
		}
	}
	switch f.Status {
	case "", rdev.TaskQueued, rdev.TaskClaimed, rdev.TaskSucceeded, rdev.TaskFailed, rdev.TaskDead, rdev.TaskCancelled:
	default:
		return nil, "", rdev.Invalid("status", "must be one of queued, claimed, succeeded, failed, dead, cancelled")
	}
	if caller != nil && len(caller.Projects) > 0 {
		f.Projects = caller.Projects
	}
	return s.store.ListTasks(ctx, f, page)
}

// ClaimRequest asks for a task.
type ClaimRequest struct {
	WorkerID string   `json:"worker_id"`
	Kinds    []string `json:"kinds,omitempty"`
	Wait     float64  `json:"wait,omitempty"` // seconds to wait for a task, at most 30
}

// Claim gives the worker the oldest runnable task of the kinds, waiting up
// to r.Wait for one: woken at once when this process queues a task, and
// polling the store every ClaimPoll for tasks queued elsewhere (or whose
// backoff ended). nil when none came.
func (s *Service) Claim(ctx context.Context, caller *rdev.APIKey, r ClaimRequest) (*rdev.Task, error) {
	w, kinds, err := s.claimer(ctx, caller, r)
	if err != nil {
		return nil, err
	}
	return s.claimWait(ctx, w, kinds, r.Wait)
}

// claimer checks a claim: the worker exists (and is kept online), caller
// may act as it, and the kinds are among its own (all of them when none
// are named).
func (s *Service) claimer(ctx context.Context, caller *rdev.APIKey, r ClaimRequest) (*rdev.Worker, []string, error) {
	if r.WorkerID == "" {
		return nil, nil, rdev.Invalid("worker_id", "is required")
	}
	if r.Wait < 0 || r.Wait > MaxClaimWait.Seconds() {
		return nil, nil, rdev.Invalid("wait", "must be between 0 and %d seconds", int(MaxClaimWait.Seconds()))
	}
	w, err := s.tasks.workers.get(ctx, s.store, r.WorkerID, s.clock())
	if errors.Is(err, rdev.ErrWorkerNotFound) {
		return nil, nil, rdev.Invalid("worker_id", "no worker %s: register it first (POST /workers)", r.WorkerID)
	}
	if err != nil {
		return nil, nil, err
	}
	if !mayActAs(caller, w) {
		return nil, nil, rdev.ErrNotYourWorker
	}
	kinds := r.Kinds
	if len(kinds) == 0 {
		kinds = w.Kinds
	}
	for i, k := range kinds {
		if err := rdev.ValidateKind(fmt.Sprintf("kinds[%d]", i), k); err != nil {
			return nil, nil, err
		}
		if !contains(w.Kinds, k) {
			return nil, nil, rdev.Invalid(fmt.Sprintf("kinds[%d]", i), "worker %s was registered for %s, not %q", w.ID, strings.Join(w.Kinds, ", "), k)
		}
	}
	// A claim shows the worker alive; the record is rewritten only when
	// its heartbeat is a third of the way to going stale.
	if s.clock().Sub(w.HeartbeatAt) > s.tasks.workerTimeout/3 {
		beat, err := s.store.HeartbeatWorker(ctx, w.ID, s.clock())
		if err != nil {
			return nil, nil, err
		}
		s.tasks.workers.put(beat, s.clock())
	}
	return w, kinds, nil
}

// claimWait claims for w, waiting up to wait seconds for a task.
func (s *Service) claimWait(ctx context.Context, w *rdev.Worker, kinds []string, wait float64) (*rdev.Task, error) {
	deadline := time.Now().Add(time.Duration(wait * float64(time.Second)))
	for {
		wake := s.tasks.wake.queuedChan()
		t, err := s.store.ClaimTask(ctx, rdev.Claim{WorkerID: w.ID, Kinds: kinds, Projects: w.Projects, Now: s.clock(), Lease: s.tasks.lease})
		if err != nil || t != nil {
			if t != nil {
				s.tasks.claimed.Store(t.ID, t.Kind)
			}
			return t, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, nil
		}
		timer := time.NewTimer(min(left, s.tasks.poll))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, nil // the caller went away or its budget ended: no task
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TaskWorkerRequest names the worker acting on a task.
type TaskWorkerRequest struct {
	WorkerID string `json:"worker_id"`
}

// TaskHeartbeat is the answer to a task heartbeat.
type TaskHeartbeat struct {
	Task      *rdev.Task `json:"task"`
	Cancelled bool       `json:"cancelled"`
}

// HeartbeatTask extends the worker's lease and says whether the task was
// cancelled (the worker should stop). rdev.ErrLeaseNotHeld otherwise.
func (s *Service) HeartbeatTask(ctx context.Context, caller *rdev.APIKey, id string, r TaskWorkerRequest) (*TaskHeartbeat, error) {
	if r.WorkerID == "" {
		return nil, rdev.Invalid("worker_id", "is required")
	}
	if _, err := s.actAs(ctx, caller, r.WorkerID); err != nil {
		return nil, err
	}
	now := s.clock()
	t, err := s.store.HeartbeatTask(ctx, id, r.WorkerID, now, s.tasks.lease)
	if err != nil {
		return nil, err
	}
	s.store.HeartbeatWorker(ctx, r.WorkerID, now)
	return &TaskHeartbeat{Task: t, Cancelled: t.Status == rdev.TaskCancelled}, nil
}

// CompleteRequest reports a task done.
type CompleteRequest struct {
	WorkerID string          `json:"worker_id"`
	Result   json.RawMessage `json:"result,omitempty"`
}

// CompleteTask records the result of a task the worker holds. A review's
// result needs a verdict; a passing review with auto_merge is merged into
// the default branch here, and the result says how (or which paths
// conflicted, which fails the verdict).
func (s *Service) CompleteTask(ctx context.Context, caller *rdev.APIKey, id string, r CompleteRequest) (*rdev.Task, error) {
	if r.WorkerID == "" {
		return nil, rdev.Invalid("worker_id", "is required")
	}
	if _, err := s.actAs(ctx, caller, r.WorkerID); err != nil {
		return nil, err
	}
	if len(r.Result) == 0 {
		r.Result = json.RawMessage(`{}`)
	}
	if err := jsonObject("result", r.Result, maxResultBytes); err != nil {
		return nil, err
	}
	result := compactJSON(r.Result)
	// A task claimed through this server of a kind rdev does not act on
	// needs no read first: the store completes it only for its holder.
	if kind, ok := s.tasks.claimed.LoadAndDelete(id); ok && kind != rdev.TaskKindReview {
		done, err := s.store.CompleteTask(ctx, id, r.WorkerID, result, s.clock())
		if err != nil {
			return nil, err
		}
		s.tasks.wake.logged(id)
		return done, nil
	}
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Status != rdev.TaskClaimed || t.LeaseOwner != r.WorkerID {
		return nil, rdev.ErrLeaseNotHeld
	}
	if t.Kind == rdev.TaskKindReview {
		var rr rdev.ReviewResult
		if err := json.Unmarshal(r.Result, &rr); err != nil {
			return nil, rdev.Invalid("result", "a review result is {verdict, reason?, exit_code?}: %v", err)
		}
		if rr.Verdict != rdev.VerdictPassed && rr.Verdict != rdev.VerdictFailed {
			return nil, rdev.Invalid("result.verdict", "must be passed or failed")
		}
		rr.Merged, rr.Merge, rr.Commit, rr.Conflicts = false, "", "", nil // rdev's to say
		if rr.Verdict == rdev.VerdictPassed {
			if err := s.mergeReview(ctx, t, &rr); err != nil {
				return nil, err
			}
		}
		result, _ = json.Marshal(rr)
	}
	done, err := s.store.CompleteTask(ctx, id, r.WorkerID, result, s.clock())
	if err != nil {
		return nil, err
	}
	s.tasks.wake.logged(id)
	return done, nil
}

// CompleteAndClaimRequest completes a task and asks for the next one.
type CompleteAndClaimRequest struct {
	WorkerID string          `json:"worker_id"`
	Result   json.RawMessage `json:"result,omitempty"`
	Kinds    []string        `json:"kinds,omitempty"`
	Wait     float64         `json:"wait,omitempty"`
}

// CompleteAndClaimed answers CompleteAndClaim.
type CompleteAndClaimed struct {
	Task *rdev.Task `json:"task"`
	Next *rdev.Task `json:"next,omitempty"`
}

// CompleteAndClaim records a held task's result and claims the worker's
// next task, in one round trip (and, for a task claimed through this server
// of a kind rdev does not act on, in one statement), waiting up to r.Wait
// for one. Next is nil when none came. The completion stands even when the
// claim fails.
func (s *Service) CompleteAndClaim(ctx context.Context, caller *rdev.APIKey, id string, r CompleteAndClaimRequest) (*CompleteAndClaimed, error) {
	claim := ClaimRequest{WorkerID: r.WorkerID, Kinds: r.Kinds, Wait: r.Wait}
	w, kinds, err := s.claimer(ctx, caller, claim)
	if err != nil {
		return nil, err
	}
	if len(r.Result) == 0 {
		r.Result = json.RawMessage(`{}`)
	}
	if err := jsonObject("result", r.Result, maxResultBytes); err != nil {
		return nil, err
	}
	var out CompleteAndClaimed
	tried := false // whether the store already looked for a next task
	if kind, ok := s.tasks.claimed.LoadAndDelete(id); ok && kind != rdev.TaskKindReview {
		done, next, err := s.store.CompleteAndClaim(ctx, id, compactJSON(r.Result),
			rdev.Claim{WorkerID: w.ID, Kinds: kinds, Projects: w.Projects, Now: s.clock(), Lease: s.tasks.lease})
		if err != nil {
			return nil, err
		}
		s.tasks.wake.logged(id)
		out.Task, out.Next, tried = done, next, true
	} else {
		if out.Task, err = s.CompleteTask(ctx, caller, id, CompleteRequest{WorkerID: r.WorkerID, Result: r.Result}); err != nil {
			return nil, err
		}
	}
	if out.Next != nil {
		s.tasks.claimed.Store(out.Next.ID, out.Next.Kind)
		return &out, nil
	}
	if tried && r.Wait == 0 {
		return &out, nil
	}
	if out.Next, err = s.claimWait(ctx, w, kinds, r.Wait); err != nil {
		s.log.Warn("claim after completion", "task", id, "worker", w.ID, "err", err)
	}
	return &out, nil
}

// mergeReview merges a passing review's branch when it asked for it.
func (s *Service) mergeReview(ctx context.Context, t *rdev.Task, rr *rdev.ReviewResult) error {
	var p rdev.ReviewPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil || !p.AutoMerge {
		return nil
	}
	if p.Commit == "" {
		rr.Verdict, rr.Reason = rdev.VerdictFailed, "not merged: the branch was deleted before check-in"
		return nil
	}
	target := p.DefaultBranch
	if target == "" {
		proj, err := s.store.GetProject(ctx, t.ProjectID)
		if err != nil {
			return err
		}
		target = proj.DefaultBranch
	}
	m, err := s.git.Merge(ctx, t.ProjectID, target, p.Commit, fmt.Sprintf("Merge branch '%s' (review %s)", p.Branch, t.ID))
	if err != nil {
		if errors.Is(err, rdev.ErrBranchNotFound) || errors.Is(err, githost.ErrTargetMoved) {
			rr.Verdict, rr.Reason = rdev.VerdictFailed, "not merged: "+err.Error()
			return nil
		}
		return err
	}
	if len(m.Conflicts) > 0 {
		rr.Verdict, rr.Conflicts = rdev.VerdictFailed, m.Conflicts
		rr.Reason = fmt.Sprintf("merge conflict with %s in: %s", target, strings.Join(m.Conflicts, ", "))
		return nil
	}
	rr.Merged, rr.Merge, rr.Commit = true, m.Kind, m.Commit
	return nil
}

// FailRequest reports a failed attempt.
type FailRequest struct {
	WorkerID string `json:"worker_id"`
	Error    string `json:"error"`
	Retry    bool   `json:"retry"`
}

// FailTask ends the worker's attempt: with retry the task is queued again
// after an exponential backoff (1 s, 2 s, 4 s, … at most 10 min) until its
// attempts run out, then dead; without retry it failed.
func (s *Service) FailTask(ctx context.Context, caller *rdev.APIKey, id string, r FailRequest) (*rdev.Task, error) {
	if r.WorkerID == "" {
		return nil, rdev.Invalid("worker_id", "is required")
	}
	if _, err := s.actAs(ctx, caller, r.WorkerID); err != nil {
		return nil, err
	}
	if len(r.Error) > 4096 || !utf8.ValidString(r.Error) {
		return nil, rdev.Invalid("error", "must be UTF-8 text of at most 4096 bytes")
	}
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	backoff := s.tasks.backoff << min(max(t.Attempts-1, 0), 20)
	if backoff > maxRetryBackoff || backoff <= 0 {
		backoff = maxRetryBackoff
	}
	s.tasks.claimed.Delete(id)
	done, err := s.store.FailTask(ctx, id, r.WorkerID, r.Error, r.Retry, now.Add(backoff), now)
	if err != nil {
		return nil, err
	}
	if done.Finished() {
		s.tasks.wake.logged(id)
	} else {
		s.appendTaskEvent(ctx, id, rdev.Event{Type: rdev.EventStderr, Data: []byte(fmt.Sprintf("rdev: attempt %d failed (%s); retrying after %s\n", done.Attempts, r.Error, backoff))})
	}
	return done, nil
}

// CancelTask cancels a queued or claimed task; the worker holding it
// learns at its next heartbeat.
func (s *Service) CancelTask(ctx context.Context, caller *rdev.APIKey, id string) (*rdev.Task, error) {
	if _, err := s.GetTask(ctx, caller, id); err != nil {
		return nil, err
	}
	t, err := s.store.CancelTask(ctx, id, s.clock())
	if err != nil {
		return nil, err
	}
	s.tasks.wake.logged(id)
	return t, nil
}

// ReapTasks re-queues tasks whose lease lapsed (or buries them past their
// attempt limit); the reaper loop calls it.
func (s *Service) ReapTasks(ctx context.Context, now time.Time, limit int) ([]*rdev.Task, error) {
	ts, err := s.store.ReapTasks(ctx, rdev.Timestamp(now), limit)
	if err != nil {
		return nil, err
	}
	requeued := false
	for _, t := range ts {
		s.tasks.claimed.Delete(t.ID)
		if t.Finished() {
			s.tasks.wake.logged(t.ID)
			continue
		}
		requeued = true
		s.appendTaskEvent(ctx, t.ID, rdev.Event{Type: rdev.EventStderr, Data: []byte(fmt.Sprintf("rdev: attempt %d lost its worker (lease expired); queued again\n", t.Attempts))})
	}
	if requeued {
		s.tasks.wake.taskQueued()
	}
	return ts, nil
}

// AppendTaskLog adds output of the worker's attempt to the task's log.
func (s *Service) AppendTaskLog(ctx context.Context, caller *rdev.APIKey, id, workerID, stream string, data []byte) error {
	if workerID == "" {
		return rdev.Invalid("worker_id", "is required")
	}
	if _, err := s.actAs(ctx, caller, workerID); err != nil {
		return err
	}
	if stream != rdev.EventStdout && stream != rdev.EventStderr {
		return rdev.Invalid("stream", "must be stdout or stderr")
	}
	t, err := s.store.GetTask(ctx, id)
	if err != nil {
		return err
	}
	if t.Status != rdev.TaskClaimed || t.LeaseOwner != workerID {
		return rdev.ErrLeaseNotHeld
	}
	if len(data) == 0 {
		return nil
	}
	return s.appendTaskEvent(ctx, id, rdev.Event{Type: stream, Data: data})
}

// appendTaskEvent stores one log event (the store numbers it) and wakes
// the task's followers in this process.
func (s *Service) appendTaskEvent(ctx context.Context, id string, e rdev.Event) error {
	e.At = s.clock()
	err := s.store.AppendTaskLog(ctx, id, []rdev.Event{e})
	if err != nil {
		s.log.Warn("task log", "task", id, "err", err)
	}
	s.tasks.wake.logged(id)
	return err
}

// FollowTaskLog streams a task's log from after, as Follow does for a
// command, and ends with an exit event once the task has finished. That
// event is not stored: its reason is the task's final status and its id
// follows the last stored event (nothing is appended to a finished task's
// log), so a replay gives the same one.
func (s *Service) FollowTaskLog(ctx context.Context, caller *rdev.APIKey, id string, after int64, keepalive time.Duration, idle func() error, emit func(rdev.Event) error) error {
	if _, err := s.GetTask(ctx, caller, id); err != nil {
		return err
	}
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		wake := s.tasks.wake.logChan(id)
		// Read the status first: a task finished by then has all its log.
		t, err := s.store.GetTask(ctx, id)
		if err != nil {
			return err
		}
		evs, err := s.store.ListTaskLog(ctx, id, after, 256)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if err := emit(e); err != nil {
				return err
			}
			after = e.ID
		}
		if len(evs) == 256 {
			continue
		}
		if t.Finished() {
			last, err := s.store.LastTaskLogID(ctx, id)
			if err != nil {
				return err
			}
			if after > last {
				return nil // the follower already has the exit event
			}
			at := t.UpdatedAt
			if t.EndedAt != nil {
				at = *t.EndedAt
			}
			return emit(rdev.Event{ID: last + 1, Type: rdev.EventExit, Reason: t.Status, At: at})
		}
		// Other replicas' appends are found by polling.
		poll := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			poll.Stop()
			return ctx.Err()
		case <-wake:
		case <-poll.C:
		case <-tick.C:
			if err := idle(); err != nil {
				poll.Stop()
				return err
			}
		}
		poll.Stop()
	}
}
