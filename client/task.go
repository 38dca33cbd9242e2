package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"time"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// Task and worker types shared with the server.
type (
	Task          = rdev.Task
	Worker        = rdev.Worker
	Pool          = rdev.Pool
	ReviewPayload = rdev.ReviewPayload
	ReviewResult  = rdev.ReviewResult
	WorkerRequest = service.WorkerRequest
	TaskRequest   = service.TaskRequest
	TaskHeartbeat = service.TaskHeartbeat
)

// Errors a worker meets, matched with errors.Is against *Error.
var (
	// ErrLeaseNotHeld: the worker no longer holds the task (409
	// LEASE_NOT_HELD); stop working on it.
	ErrLeaseNotHeld = rdev.ErrLeaseNotHeld
	// ErrTaskFinished: the task has already ended (409 TASK_FINISHED).
	ErrTaskFinished = rdev.ErrTaskFinished
)

// TaskFilter narrows ListTasks; empty fields match everything.
type TaskFilter struct {
	Kind, Status, Project string
	ListOptions
}

// Pool returns the worker pool's capacity and the queue.
func (c *Client) Pool(ctx context.Context) (*Pool, error) {
	var out Pool
	return &out, c.do(ctx, "GET", "/workers/pool", nil, nil, &out)
}

// RegisterWorker registers a worker that takes tasks of r.Kinds, up to
// r.Capacity at a time. Keep it online with WorkerHeartbeat.
func (c *Client) RegisterWorker(ctx context.Context, r WorkerRequest) (*Worker, error) {
	var out Worker
	return &out, c.do(ctx, "POST", "/workers", nil, r, &out)
}

// GetWorker returns a worker.
func (c *Client) GetWorker(ctx context.Context, id string) (*Worker, error) {
	var out Worker
	return &out, c.do(ctx, "GET", "/workers/"+url.PathEscape(id), nil, nil, &out)
}

// WorkerHeartbeat keeps a worker online.
func (c *Client) WorkerHeartbeat(ctx context.Context, id string) error {
	return c.do(ctx, "POST", "/workers/"+url.PathEscape(id)+"/heartbeat", nil, nil, nil)
}

// DeregisterWorker removes a worker that stops.
func (c *Client) DeregisterWorker(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/workers/"+url.PathEscape(id), nil, nil, nil)
}

// CreateTask queues a task of a team's own kind.
func (c *Client) CreateTask(ctx context.Context, r TaskRequest) (*Task, error) {
	var out Task
	return &out, c.do(ctx, "POST", "/tasks", nil, r, &out)
}

// GetTask returns a task.
func (c *Client) GetTask(ctx context.Context, id string) (*Task, error) {
	var out Task
	return &out, c.do(ctx, "GET", "/tasks/"+url.PathEscape(id), nil, nil, &out)
}

// ListTasks returns a page of tasks, newest first.
func (c *Client) ListTasks(ctx context.Context, f TaskFilter) ([]Task, string, error) {
	q := f.query()
	for k, v := range map[string]string{"kind": f.Kind, "status": f.Status, "project": f.Project} {
		if v != "" {
			q.Set(k, v)
		}
	}
	var out struct {
		Tasks      []Task `json:"tasks"`
		NextCursor string `json:"next_cursor"`
	}
	err := c.do(ctx, "GET", "/tasks", q, nil, &out)
	return out.Tasks, out.NextCursor, err
}

// Claim asks for a task of the kinds (all the worker's kinds when none are
// named), waiting up to wait (at most 30 s) for one. It returns nil when
// none came. The task is the worker's until its lease lapses: keep it with
// HeartbeatTask, end it with CompleteTask or FailTask.
func (c *Client) Claim(ctx context.Context, workerID string, kinds []string, wait time.Duration) (*Task, error) {
	var out Task
	in := service.ClaimRequest{WorkerID: workerID, Kinds: kinds, Wait: wait.Seconds()}
	if err := c.do(ctx, "POST", "/tasks/claim", nil, in, &out); err != nil {
		return nil, err
	}
	if out.ID == "" {
		return nil, nil
	}
	return &out, nil
}

// HeartbeatTask extends the worker's lease on a task. cancelled is true
// when the task was cancelled: the worker should stop working on it.
func (c *Client) HeartbeatTask(ctx context.Context, taskID, workerID string) (cancelled bool, err error) {
	var out TaskHeartbeat
	err = c.do(ctx, "POST", "/tasks/"+url.PathEscape(taskID)+"/heartbeat", nil, service.TaskWorkerRequest{WorkerID: workerID}, &out)
	return out.Cancelled, err
}

// CompleteTask records a held task's result (any JSON object; a review's
// is a ReviewResult). A 409 (ErrorCode "LEASE_NOT_HELD") means the lease
// was lost and another worker may run the task.
func (c *Client) CompleteTask(ctx context.Context, taskID, workerID string, result any) (*Task, error) {
	raw, err := resultJSON(result)
	if err != nil {
		return nil, err
	}
	var out Task
	return &out, c.do(ctx, "POST", "/tasks/"+url.PathEscape(taskID)+"/complete", nil,
		service.CompleteRequest{WorkerID: workerID, Result: raw}, &out)
}

// CompleteAndClaim records a held task's result and claims the worker's
// next task of the kinds in the same round trip, waiting up to wait for
// one; next is nil when none came. A worker that loops on it makes one
// request per task instead of two.
func (c *Client) CompleteAndClaim(ctx context.Context, taskID, workerID string, result any, kinds []string, wait time.Duration) (done, next *Task, err error) {
	raw, err := resultJSON(result)
	if err != nil {
		return nil, nil, err
	}
	var out service.CompleteAndClaimed
	err = c.do(ctx, "POST", "/tasks/"+url.PathEscape(taskID)+"/complete-and-claim", nil,
		service.CompleteAndClaimRequest{WorkerID: workerID, Result: raw, Kinds: kinds, Wait: wait.Seconds()}, &out)
	return out.Task, out.Next, err
}

// FailTask ends the worker's attempt; with retry the task runs again after
// a backoff until its attempts run out.
func (c *Client) FailTask(ctx context.Context, taskID, workerID, msg string, retry bool) (*Task, error) {
	var out Task
	return &out, c.do(ctx, "POST", "/tasks/"+url.PathEscape(taskID)+"/fail", nil,
		service.FailRequest{WorkerID: workerID, Error: msg, Retry: retry}, &out)
}

// CancelTask cancels a queued or claimed task.
func (c *Client) CancelTask(ctx context.Context, taskID string) (*Task, error) {
	var out Task
	return &out, c.do(ctx, "POST", "/tasks/"+url.PathEscape(taskID)+"/cancel", nil, nil, &out)
}

// AppendTaskLog adds output (stream "stdout" or "stderr", at most 1 MiB per
// call) to the log of a task the worker holds.
func (c *Client) AppendTaskLog(ctx context.Context, taskID, workerID, stream string, data []byte) error {
	q := url.Values{"worker_id": {workerID}, "stream": {stream}}
	return c.doRaw(ctx, "POST", "/tasks/"+url.PathEscape(taskID)+"/log", q, bytes.NewReader(data), nil)
}

// resultJSON encodes a task result; nil is no result ({}).
func resultJSON(result any) (json.RawMessage, error) {
	if result == nil {
		return nil, nil
	}
	return json.Marshal(result)
}
