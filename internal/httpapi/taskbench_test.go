package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/postgres"
	"rdev.dev/rdev/internal/store/postgres/pgtest"
	"rdev.dev/rdev/internal/store/sqlite"
)

// benchStores opens each store for a benchmark.
func benchStores(b *testing.B) map[string]func() rdev.Store {
	return map[string]func() rdev.Store{
		"SQLite": func() rdev.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "rdev.db"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		},
		"PostgreSQL": func() rdev.Store {
			st, err := postgres.Open(context.Background(), pgtest.URL(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		},
	}
}

// BenchmarkTaskThroughput (P5): 10,000 no-op tasks through 16 workers over
// the API (a claim, then one complete-and-claim per task), against the
// same claims and completions made on the store directly, in the same run.
func BenchmarkTaskThroughput(b *testing.B) {
	n := 10000
	if os.Getenv("RDEV_BENCH_SMALL") != "" {
		n = 500
	}
	const workers = 16
	for _, name := range []string{"SQLite", "PostgreSQL"} {
		b.Run(name, func(b *testing.B) {
			var api, direct time.Duration
			for range b.N {
				h := newHarnessOn(b, benchStores(b)[name]())
				h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web"}).want(b, 201, "")
				ctx := context.Background()

				// The store alone.
				queueTasks(b, h.store, n, "noop")
				t0 := time.Now()
				var wg sync.WaitGroup
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						id := fmt.Sprintf("direct-%d", w)
						for {
							task, err := h.store.ClaimTask(ctx, rdev.Claim{WorkerID: id, Kinds: []string{"noop"}, Now: rdev.Timestamp(time.Now()), Lease: time.Minute})
							if err != nil || task == nil {
								return
							}
							if _, err := h.store.CompleteTask(ctx, task.ID, id, json.RawMessage(`{}`), rdev.Timestamp(time.Now())); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				wg.Wait()
				direct += time.Since(t0)

				// Through the API, as 16 registered workers.
				queueTasks(b, h.store, n, "noop")
				c := client.New(h.srv.URL, h.key(nil, rdev.ScopeWorkersExecute))
				ids := make([]string, workers)
				for i := range ids {
					w, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: fmt.Sprint(i), Kinds: []string{"noop"}, Capacity: 1})
					if err != nil {
						b.Fatal(err)
					}
					ids[i] = w.ID
				}
				done := make([]int, workers)
				t0 = time.Now()
				for i, id := range ids {
					wg.Add(1)
					go func() {
						defer wg.Done()
						// Claim once, then complete-and-claim: one request per task.
						task, err := c.Claim(ctx, id, nil, 0)
						for task != nil && err == nil {
							var next *client.Task
							if _, next, err = c.CompleteAndClaim(ctx, task.ID, id, map[string]any{}, nil, 0); err == nil {
								done[i]++
							}
							task = next
						}
						if err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
				api += time.Since(t0)
				total := 0
				for _, d := range done {
					total += d
				}
				if total != n {
					b.Fatalf("%d tasks done through the API, want %d", total, n)
				}
			}
			tasks := float64(n * b.N)
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(tasks/api.Seconds(), "api-tasks/s")
			b.ReportMetric(tasks/direct.Seconds(), "store-tasks/s")
			b.ReportMetric(direct.Seconds()/api.Seconds(), "x_store")
		})
	}
}

// BenchmarkClaimLatency (P5): 16 workers wait in long-poll claims; tasks
// are queued one at a time, either through this server's API (the waiting
// claims wake at once) or straight into the store, as another replica
// would (the claims find them at their next backup poll, every second).
// It reports enqueue-to-claim p50 and p99 for both.
func BenchmarkClaimLatency(b *testing.B) {
	n := 200
	if os.Getenv("RDEV_BENCH_SMALL") != "" {
		n = 20
	}
	for _, name := range []string{"SQLite", "PostgreSQL"} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				h := newHarnessOn(b, benchStores(b)[name]())
				h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web"}).want(b, 201, "")
				ctx, cancel := context.WithCancel(context.Background())
				c := client.New(h.srv.URL, h.key(nil, rdev.ScopeWorkersExecute))
				claimed := make(chan time.Time, n)
				var wg sync.WaitGroup
				for i := range 16 {
					w, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: fmt.Sprint(i), Kinds: []string{"ping"}, Capacity: 1})
					if err != nil {
						b.Fatal(err)
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						for ctx.Err() == nil {
							task, err := c.Claim(ctx, w.ID, nil, 25*time.Second)
							if err != nil || task == nil {
								continue
							}
							claimed <- time.Now()
							c.CompleteTask(context.Background(), task.ID, w.ID, map[string]any{})
						}
					}()
				}
				time.Sleep(100 * time.Millisecond) // the claims are waiting
				measure := func(enqueue func() error) (p50, p99 time.Duration) {
					var lat []time.Duration
					for range n {
						// Let the worker that took the last task finish it
						// and wait in a new claim: every claim is parked.
						time.Sleep(30 * time.Millisecond)
						t0 := time.Now()
						if err := enqueue(); err != nil {
							b.Fatal(err)
						}
						select {
						case at := <-claimed:
							lat = append(lat, at.Sub(t0))
						case <-time.After(10 * time.Second):
							b.Fatal("a queued task was not claimed within 10 s")
						}
					}
					slices.Sort(lat)
					return lat[len(lat)/2], lat[len(lat)*99/100]
				}
				wakeP50, wakeP99 := measure(func() error {
					_, err := c.CreateTask(ctx, client.TaskRequest{Kind: "ping", ProjectID: "web"})
					return err
				})
				pollN := n / 10 // a second each at worst
				saved := n
				n = max(pollN, 5)
				pollP50, pollP99 := measure(func() error {
					queueTasks(b, h.store, 1, "ping")
					return nil
				})
				n = saved
				cancel()
				wg.Wait()
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(float64(wakeP50.Microseconds())/1000, "wake-p50-ms")
				b.ReportMetric(float64(wakeP99.Microseconds())/1000, "wake-p99-ms")
				b.ReportMetric(float64(pollP50.Microseconds())/1000, "poll-p50-ms")
				b.ReportMetric(float64(pollP99.Microseconds())/1000, "poll-p99-ms")
			}
		})
	}
}
