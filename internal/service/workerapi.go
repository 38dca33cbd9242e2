package service

import (
	"context"
	"encoding/json"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// LocalWorkers is the worker API of the built-in workers: the service
// itself, without HTTP. It has the same methods as the SDK's client.
type LocalWorkers struct{ S *Service }

// Claim asks for a task, waiting up to wait.
func (l LocalWorkers) Claim(ctx context.Context, workerID string, kinds []string, wait time.Duration) (*rdev.Task, error) {
	return l.S.Claim(ctx, nil, ClaimRequest{WorkerID: workerID, Kinds: kinds, Wait: min(wait, MaxClaimWait).Seconds()})
}

// HeartbeatTask extends a lease.
func (l LocalWorkers) HeartbeatTask(ctx context.Context, taskID, workerID string) (bool, error) {
	hb, err := l.S.HeartbeatTask(ctx, nil, taskID, TaskWorkerRequest{WorkerID: workerID})
	if err != nil {
		return false, err
	}
	return hb.Cancelled, nil
}

// AppendTaskLog adds to a task's log.
func (l LocalWorkers) AppendTaskLog(ctx context.Context, taskID, workerID, stream string, data []byte) error {
	return l.S.AppendTaskLog(ctx, nil, taskID, workerID, stream, data)
}

// CompleteTask reports a result.
func (l LocalWorkers) CompleteTask(ctx context.Context, taskID, workerID string, result any) (*rdev.Task, error) {
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, err
	}
	return l.S.CompleteTask(ctx, nil, taskID, CompleteRequest{WorkerID: workerID, Result: raw})
}

// CompleteAndClaim reports a result and claims the next task, waiting up
// to wait for one (next is nil when none came).
func (l LocalWorkers) CompleteAndClaim(ctx context.Context, taskID, workerID string, result any, kinds []string, wait time.Duration) (done, next *rdev.Task, err error) {
	raw, err := json.Marshal(result)
	if err != nil {
		return nil, nil, err
	}
	out, err := l.S.CompleteAndClaim(ctx, nil, taskID, CompleteAndClaimRequest{WorkerID: workerID, Result: raw, Kinds: kinds,
		Wait: min(wait, MaxClaimWait).Seconds()})
	if err != nil {
		return nil, nil, err
	}
	return out.Task, out.Next, nil
}

// FailTask reports a failed attempt.
func (l LocalWorkers) FailTask(ctx context.Context, taskID, workerID, msg string, retry bool) (*rdev.Task, error) {
	return l.S.FailTask(ctx, nil, taskID, FailRequest{WorkerID: workerID, Error: msg, Retry: retry})
}

// WorkerHeartbeat keeps a worker online.
func (l LocalWorkers) WorkerHeartbeat(ctx context.Context, workerID string) error {
	_, err := l.S.WorkerHeartbeat(ctx, nil, workerID)
	return err
}
