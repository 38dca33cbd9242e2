package rdev

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"time"
)

// Task errors.
var (
	ErrTaskNotFound   = errors.New("task not found")
	ErrWorkerNotFound = errors.New("worker not found")
	// ErrLeaseNotHeld: the worker does not hold the task's lease (it lapsed
	// and the task went back to the queue, another worker has it, or the
	// task is finished).
	ErrLeaseNotHeld = errors.New("the worker does not hold this task's lease")
	// ErrTaskFinished: the task can no longer be cancelled.
	ErrTaskFinished = errors.New("task is already finished")
	// ErrNotYourWorker: the caller's key did not register the worker it
	// names.
	ErrNotYourWorker = errors.New("the worker was registered with another API key: act only as a worker registered with this key (POST /api/v1/workers)")
	// ErrBuiltInWorker: the built-in worker cannot be removed.
	ErrBuiltInWorker = errors.New("the built-in worker belongs to the server and cannot be deregistered (start the server with --review-workers 0 to run none)")
)

// Task statuses.
const (
	TaskQueued    = "queued"
	TaskClaimed   = "claimed"
	TaskSucceeded = "succeeded"
	TaskFailed    = "failed"
	TaskDead      = "dead"
	TaskCancelled = "cancelled"
)

// TaskKindReview is the review a check-in queues.
const TaskKindReview = "review"

// Task is queued work claimed by a worker under a lease.
type Task struct {
	ID             string          `json:"id"`
	Kind           string          `json:"kind"`
	ProjectID      string          `json:"project_id"`
	Status         string          `json:"status"`
	Payload        json.RawMessage `json:"payload"`
	Attempts       int             `json:"attempts"`
	MaxAttempts    int             `json:"max_attempts"`
	LeaseOwner     string          `json:"lease_owner,omitempty"`
	LeaseExpiresAt *time.Time      `json:"lease_expires_at,omitempty"`
	RunAfter       time.Time       `json:"run_after"`
	Result         json.RawMessage `json:"result,omitempty"`
	Error          string          `json:"error,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	EndedAt        *time.Time      `json:"ended_at,omitempty"`
}

// Finished reports whether the task reached a final status.
func (t *Task) Finished() bool {
	switch t.Status {
	case TaskSucceeded, TaskFailed, TaskDead, TaskCancelled:
		return true
	}
	return false
}

// ReviewPayload is the payload of a review task.
type ReviewPayload struct {
	CheckoutID    string `json:"checkout_id"`
	SessionID     string `json:"session_id,omitempty"`
	Branch        string `json:"branch"`
	Commit        string `json:"commit"`
	DefaultBranch string `json:"default_branch,omitempty"`
	ReviewCommand string `json:"review_command,omitempty"`
	AutoMerge     bool   `json:"auto_merge"`
}

// Review verdicts.
const (
	VerdictPassed = "passed"
	VerdictFailed = "failed"
)

// ReviewResult is the result of a review task.
type ReviewResult struct {
	Verdict   string   `json:"verdict"`
	Reason    string   `json:"reason,omitempty"`
	ExitCode  *int     `json:"exit_code,omitempty"`
	Merged    bool     `json:"merged,omitempty"`
	Merge     string   `json:"merge,omitempty"` // fast-forward or merge-commit
	Commit    string   `json:"merged_commit,omitempty"`
	Conflicts []string `json:"conflicts,omitempty"`
}

// ReviewSummary is how a checkout or session shows its review.
type ReviewSummary struct {
	TaskID    string   `json:"task_id"`
	Status    string   `json:"status"`
	Verdict   string   `json:"verdict,omitempty"`
	Reason    string   `json:"reason,omitempty"`
	Merged    bool     `json:"merged,omitempty"`
	Commit    string   `json:"merged_commit,omitempty"`
	Conflicts []string `json:"conflicts,omitempty"`
}

// Summary returns the review summary of a review task.
func (t *Task) Summary() *ReviewSummary {
	rs := &ReviewSummary{TaskID: t.ID, Status: t.Status}
	var r ReviewResult
	if len(t.Result) > 0 && json.Unmarshal(t.Result, &r) == nil {
		rs.Verdict, rs.Reason, rs.Merged, rs.Commit, rs.Conflicts = r.Verdict, r.Reason, r.Merged, r.Commit, r.Conflicts
	}
	if rs.Reason == "" && t.Error != "" {
		rs.Reason = t.Error
	}
	return rs
}

// Worker is a process that claims tasks: built into the server or external.
type Worker struct {
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Kinds    []string `json:"kinds"`
	Capacity int      `json:"capacity"`
	BuiltIn  bool     `json:"built_in"`
	// KeyID is the API key that registered the worker (empty for the
	// built-in one): only that key, or an unrestricted admin key, may act
	// as the worker.
	KeyID string `json:"key_id,omitempty"`
	// Projects are the only projects whose tasks the worker claims: the
	// allow-list of the key that registered it (empty: every project).
	Projects    []string  `json:"projects"`
	CreatedAt   time.Time `json:"created_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
	Online      bool      `json:"online"`
}

// Pool is the aggregate of online workers and the queue.
type Pool struct {
	WorkersOnline          int            `json:"workers_online"`
	Capacity               int            `json:"capacity"`
	Busy                   int            `json:"busy"`
	Idle                   int            `json:"idle"`
	QueueDepth             int            `json:"queue_depth"`
	QueueDepthByKind       map[string]int `json:"queue_depth_by_kind"`
	OldestQueuedAgeSeconds float64        `json:"oldest_queued_age_seconds"`
}

// TaskFilter narrows a task list; empty fields match everything.
type TaskFilter struct {
	Kind, Status, ProjectID string
	// Projects, when not nil, limits the list to these projects (a key's
	// allow-list).
	Projects []string
}

// Claim is what a worker asks for.
type Claim struct {
	WorkerID string
	Kinds    []string
	Projects []string // empty: every project
	Now      time.Time
	Lease    time.Duration
}

var kindRe = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,62}$`)

// ValidateKind accepts a task kind: lowercase, starting with a letter, at
// most 63 characters of letters, digits, '_', '.' and '-'.
func ValidateKind(field, k string) error {
	if !kindRe.MatchString(k) {
		return Invalid(field, "must be a lowercase name of 1-63 characters (letters, digits, '_', '.', '-'), starting with a letter")
	}
	return nil
}

// TaskStore persists tasks, their logs and the workers that claim them.
type TaskStore interface {
	// CreateTask inserts a queued task.
	CreateTask(ctx context.Context, t *Task) error
	// GetTask returns a task. ErrTaskNotFound.
	GetTask(ctx context.Context, id string) (*Task, error)
	// ListTasks returns a page of tasks, newest first.
	ListTasks(ctx context.Context, f TaskFilter, page Page) ([]*Task, string, error)
	// ClaimTask gives the oldest runnable queued task of one of the kinds
	// to the worker in one atomic statement (nil when there is none):
	// status claimed, attempts+1, lease until Now+Lease.
	ClaimTask(ctx context.Context, c Claim) (*Task, error)
	// HeartbeatTask extends the lease of a task the worker holds, returning
	// the task; a cancelled task still held by the worker is returned
	// without error so the worker learns it. ErrLeaseNotHeld, ErrTaskNotFound.
	HeartbeatTask(ctx context.Context, id, workerID string, now time.Time, lease time.Duration) (*Task, error)
	// CompleteTask marks a held task succeeded with result. ErrLeaseNotHeld.
	CompleteTask(ctx context.Context, id, workerID string, result json.RawMessage, now time.Time) (*Task, error)
	// CompleteAndClaim completes a held task as CompleteTask does and, in
	// the same statement, claims the next task for the same worker (nil
	// when none is runnable). Nothing is claimed when the completion is
	// refused. ErrLeaseNotHeld.
	CompleteAndClaim(ctx context.Context, id string, result json.RawMessage, next Claim) (done, claimed *Task, err error)
	// FailTask ends a held attempt: with retry and attempts left the task is
	// queued again to run at retryAt; with retry and none left it is dead;
	// without retry it failed. ErrLeaseNotHeld.
	FailTask(ctx context.Context, id, workerID, msg string, retry bool, retryAt, now time.Time) (*Task, error)
	// CancelTask cancels a queued or claimed task. ErrTaskFinished.
	CancelTask(ctx context.Context, id string, now time.Time) (*Task, error)
	// ReapTasks re-queues at most limit claimed tasks whose lease ended at
	// or before now, or marks them dead past their attempt limit.
	ReapTasks(ctx context.Context, now time.Time, limit int) ([]*Task, error)
	// AppendTaskLog stores log events of a task, numbered after the stored
	// ones (their ID fields are ignored). ErrTaskNotFound.
	AppendTaskLog(ctx context.Context, taskID string, events []Event) error
	// LastTaskLogID returns the id of the task's newest log event (0).
	LastTaskLogID(ctx context.Context, taskID string) (int64, error)
	// ListTaskLog returns at most limit log events after the id after.
	ListTaskLog(ctx context.Context, taskID string, after int64, limit int) ([]Event, error)

	// RegisterWorker inserts a worker.
	RegisterWorker(ctx context.Context, w *Worker) error
	// HeartbeatWorker records that the worker is alive. ErrWorkerNotFound.
	HeartbeatWorker(ctx context.Context, id string, now time.Time) (*Worker, error)
	// GetWorker returns a worker. ErrWorkerNotFound.
	GetWorker(ctx context.Context, id string) (*Worker, error)
	// DeleteWorker removes a worker record (a worker that stops cleanly).
	DeleteWorker(ctx context.Context, id string) error
	// PoolStats aggregates workers seen since onlineSince and the queue.
	PoolStats(ctx context.Context, now, onlineSince time.Time) (*Pool, error)
}
