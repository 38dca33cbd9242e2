package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/postgres"
	"rdev.dev/rdev/internal/store/postgres/pgtest"
	"rdev.dev/rdev/internal/store/sqlite"
)

// onBothStores runs fn on a harness over SQLite and one over PostgreSQL.
func onBothStores(t *testing.T, fn func(t *testing.T, h *harness)) {
	t.Run("SQLite", func(t *testing.T) {
		st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rdev.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, newHarnessOn(t, st))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		st, err := postgres.Open(context.Background(), pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, newHarnessOn(t, st))
	})
}

// queueTasks stores n tasks of project web in the store, kinds taking
// turns, run_after spread over the hour before now.
func queueTasks(t testing.TB, st rdev.Store, n int, kinds ...string) map[string]int {
	t.Helper()
	byKind := map[string]int{}
	base := rdev.Timestamp(time.Now().Add(-time.Hour))
	for i := range n {
		kind := kinds[i%len(kinds)]
		at := base.Add(time.Duration(i) * time.Millisecond)
		task := &rdev.Task{ID: rdev.NewID("t"), Kind: kind, ProjectID: "web", Status: rdev.TaskQueued, Payload: json.RawMessage(`{}`),
			MaxAttempts: 3, RunAfter: at, CreatedAt: at, UpdatedAt: at}
		if err := st.CreateTask(context.Background(), task); err != nil {
			t.Fatal(err)
		}
		byKind[kind]++
	}
	return byKind
}

// Sixteen workers drain 10,000 tasks of two kinds through the API; every
// task is completed exactly once, and the pool's figures agree with what
// the workers hold and have done, before, during and after.
func TestSixteenWorkersTenThousandTasks(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	onBothStores(t, func(t *testing.T, h *harness) {
		ctx := context.Background()
		h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web"}).want(t, 201, "")
		t0 := time.Now()
		byKind := queueTasks(t, h.store, n, "build", "lint")
		t.Logf("queued %d tasks in %v", n, time.Since(t0))
		wkey := h.key(nil, rdev.ScopeWorkersExecute, rdev.ScopeWorkersRead)
		c := client.New(h.srv.URL, wkey)
		const workers = 16
		ids := make([]string, workers)
		for i := range workers {
			w, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: fmt.Sprintf("w%d", i), Kinds: []string{"build", "lint"}, Capacity: 1})
			if err != nil {
				t.Fatal(err)
			}
			ids[i] = w.ID
		}
		pool := func() *client.Pool {
			p, err := c.Pool(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if p.Idle != p.Capacity-p.Busy || p.QueueDepth != p.QueueDepthByKind["build"]+p.QueueDepthByKind["lint"] {
				t.Fatalf("pool figures disagree with each other: %+v", *p)
			}
			return p
		}
		p := pool()
		if p.WorkersOnline != workers || p.Capacity != workers || p.Busy != 0 || p.QueueDepth != n ||
			p.QueueDepthByKind["build"] != byKind["build"] || p.QueueDepthByKind["lint"] != byKind["lint"] ||
			p.OldestQueuedAgeSeconds < 3600 || p.OldestQueuedAgeSeconds > 3600+60 {
			t.Fatalf("before: %+v", *p)
		}

		// Each worker claims one task and holds it: the pool is full.
		held := make([]*client.Task, workers)
		heldKinds := map[string]int{}
		for i, id := range ids {
			task, err := c.Claim(ctx, id, nil, 0)
			if err != nil || task == nil {
				t.Fatal(task, err)
			}
			held[i] = task
			heldKinds[task.Kind]++
		}
		p = pool()
		if p.Busy != workers || p.Idle != 0 || p.QueueDepth != n-workers ||
			p.QueueDepthByKind["build"] != byKind["build"]-heldKinds["build"] || p.QueueDepthByKind["lint"] != byKind["lint"]-heldKinds["lint"] {
			t.Fatalf("with %d held (%v): %+v", workers, heldKinds, *p)
		}

		t0 = time.Now()
		// Then all drain the queue; a sampler checks the pool against the
		// workers' own count: queued + claimed + done = n.
		var mu sync.Mutex
		completions := map[string]int{}
		var done atomic.Int64
		stop := make(chan struct{})
		sampled := make(chan int)
		go func() {
			samples, lastDepth := 0, n
			for {
				select {
				case <-stop:
					sampled <- samples
					return
				case <-time.After(20 * time.Millisecond):
				}
				before := int(done.Load())
				p := pool()
				after := int(done.Load())
				inPool := p.QueueDepth + p.Busy
				if p.Busy > workers || p.QueueDepth > lastDepth || inPool > n-before || inPool < n-after-2*workers {
					t.Errorf("pool %+v: queued+busy %d with %d..%d done of %d (queue was %d)", *p, inPool, before, after, n, lastDepth)
				}
				lastDepth = p.QueueDepth
				samples++
			}
		}()
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Add(1)
			go func() {
				defer wg.Done()
				task := held[i]
				for task != nil {
					if _, err := c.CompleteTask(ctx, task.ID, id, map[string]int{"worker": i}); err != nil {
						t.Errorf("complete %s: %v", task.ID, err)
						return
					}
					mu.Lock()
					completions[task.ID]++
					mu.Unlock()
					done.Add(1)
					var err error
					if task, err = c.Claim(ctx, id, nil, 100*time.Millisecond); err != nil {
						t.Errorf("claim: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		t.Logf("drained in %v", time.Since(t0))
		close(stop)
		if s := <-sampled; s == 0 {
			t.Log("the run ended before the pool was sampled")
		}
		if len(completions) != n {
			t.Fatalf("%d tasks completed, want %d", len(completions), n)
		}
		for id, k := range completions {
			if k != 1 {
				t.Fatalf("task %s completed %d times", id, k)
			}
		}
		// And in the store: every task succeeded, on its first attempt.
		counts := map[string]int{}
		for page := ""; ; {
			ts, next, err := h.store.ListTasks(ctx, rdev.TaskFilter{ProjectID: "web"}, rdev.Page{Limit: 1000, Cursor: page})
			if err != nil {
				t.Fatal(err)
			}
			for _, task := range ts {
				counts[fmt.Sprintf("%s/%d", task.Status, task.Attempts)]++
			}
			if page = next; page == "" {
				break
			}
		}
		if len(counts) != 1 || counts["succeeded/1"] != n {
			t.Fatalf("in the store: %v", counts)
		}
		p = pool()
		if p.Busy != 0 || p.QueueDepth != 0 || p.OldestQueuedAgeSeconds != 0 || p.WorkersOnline != workers {
			t.Fatalf("after: %+v", *p)
		}
	})
}
