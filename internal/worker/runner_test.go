package worker_test

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/worker"
)

// fakeAPI hands out queued tasks and records how each was reported.
type fakeAPI struct {
	mu                       sync.Mutex
	queue                    []*rdev.Task
	claims, completeAndClaim int
	completed                map[string]int // task → completions
	viaComplete              []string       // tasks reported with CompleteTask
}

func (f *fakeAPI) pop() *rdev.Task {
	if len(f.queue) == 0 {
		return nil
	}
	t := f.queue[0]
	f.queue = f.queue[1:]
	return t
}

func (f *fakeAPI) Claim(ctx context.Context, workerID string, kinds []string, wait time.Duration) (*rdev.Task, error) {
	f.mu.Lock()
	f.claims++
	t := f.pop()
	f.mu.Unlock()
	if t == nil {
		select { // a long poll that found nothing
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	return t, nil
}

func (f *fakeAPI) CompleteAndClaim(ctx context.Context, taskID, workerID string, result any, kinds []string, wait time.Duration) (*rdev.Task, *rdev.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completeAndClaim++
	f.completed[taskID]++
	if wait != 0 {
		panic("the runner's complete-and-claim must not wait")
	}
	return &rdev.Task{ID: taskID}, f.pop(), nil
}

func (f *fakeAPI) CompleteTask(ctx context.Context, taskID, workerID string, result any) (*rdev.Task, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.completed[taskID]++
	f.viaComplete = append(f.viaComplete, taskID)
	return &rdev.Task{ID: taskID}, nil
}

func (f *fakeAPI) HeartbeatTask(context.Context, string, string) (bool, error)         { return false, nil }
func (f *fakeAPI) AppendTaskLog(context.Context, string, string, string, []byte) error { return nil }
func (f *fakeAPI) WorkerHeartbeat(context.Context, string) error                       { return nil }
func (f *fakeAPI) FailTask(context.Context, string, string, string, bool) (*rdev.Task, error) {
	return nil, nil
}

// Queued work costs one request per task: each result goes with the claim
// of the next; an idle runner stops at once, though its claims would wait.
func TestRunnerCompletesAndClaimsInOneRequest(t *testing.T) {
	f := &fakeAPI{completed: map[string]int{}}
	for _, id := range []string{"t1", "t2", "t3", "t4", "t5"} {
		f.queue = append(f.queue, &rdev.Task{ID: id, Kind: "k"})
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &worker.Runner{API: f, WorkerID: "w", Capacity: 1, Wait: 25 * time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handlers: map[string]worker.Handler{"k": func(ctx context.Context, t *rdev.Task, out *worker.Output) (any, error) {
			return map[string]string{"id": t.ID}, nil
		}}}
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		n := len(f.completed)
		f.mu.Unlock()
		if n == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("completed %v", f.completed)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := time.Now()
	cancel()
	<-done
	if d := time.Since(stopped); d > 2*time.Second {
		t.Fatalf("the runner took %s to stop", d)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, n := range f.completed {
		if n != 1 {
			t.Errorf("%s completed %d times", id, n)
		}
	}
	if f.completeAndClaim != 5 || len(f.viaComplete) != 0 {
		t.Fatalf("complete-and-claim %d, complete %v", f.completeAndClaim, f.viaComplete)
	}
	// One claim found t1; the rest were idle long polls after t5.
	if f.claims < 1 {
		t.Fatalf("claims %d", f.claims)
	}
}

// A task that finishes while the runner stops is reported on its own: no
// next task is claimed for a runner that is going away.
func TestRunnerStoppingReportsWithoutClaiming(t *testing.T) {
	f := &fakeAPI{completed: map[string]int{}, queue: []*rdev.Task{{ID: "t1", Kind: "k"}, {ID: "t2", Kind: "k"}}}
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	r := &worker.Runner{API: f, WorkerID: "w", Capacity: 1, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handlers: map[string]worker.Handler{"k": func(tctx context.Context, t *rdev.Task, out *worker.Output) (any, error) {
			close(started)
			<-tctx.Done() // the runner stops; the work still completes
			return map[string]string{}, nil
		}}}
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	<-started
	cancel()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.viaComplete) != 1 || f.viaComplete[0] != "t1" || f.completeAndClaim != 0 || len(f.queue) != 1 {
		t.Fatalf("complete %v, complete-and-claim %d, left %d", f.viaComplete, f.completeAndClaim, len(f.queue))
	}
}
