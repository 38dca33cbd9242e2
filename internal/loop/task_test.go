package loop_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"rdev.dev/rdev/internal/loop"
	"rdev.dev/rdev/internal/rdev"
)

func TestTaskReaper(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clk := &clock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
			now := clk.Now()
			if err := st.CreateProject(ctx, &rdev.Project{ID: "web", Name: "Web", DefaultBranch: "main", CreatedAt: now, UpdatedAt: now}); err != nil {
				t.Fatal(err)
			}
			mk := func(maxAttempts int) *rdev.Task {
				task := &rdev.Task{ID: rdev.NewID("t"), Kind: "review", ProjectID: "web", Status: rdev.TaskQueued, Payload: json.RawMessage(`{}`),
					MaxAttempts: maxAttempts, RunAfter: now, CreatedAt: now, UpdatedAt: now}
				if err := st.CreateTask(ctx, task); err != nil {
					t.Fatal(err)
				}
				return task
			}
			once, twice := mk(1), mk(2)
			for range 2 {
				if _, err := st.ClaimTask(ctx, rdev.Claim{WorkerID: "w1", Kinds: []string{"review"}, Now: now, Lease: time.Minute}); err != nil {
					t.Fatal(err)
				}
			}
			r := &loop.TaskReaper{Tasks: st, Now: clk.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
			clk.Add(59 * time.Second)
			if st, err := r.RunOnce(ctx); err != nil || st != (loop.TaskReaperStats{}) {
				t.Fatalf("before the leases lapsed: %+v %v", st, err)
			}
			clk.Add(time.Second)
			if st, err := r.RunOnce(ctx); err != nil || st != (loop.TaskReaperStats{Requeued: 1, Dead: 1}) {
				t.Fatalf("after: %+v %v", st, err)
			}
			for id, want := range map[string]string{once.ID: rdev.TaskDead, twice.ID: rdev.TaskQueued} {
				got, err := st.GetTask(ctx, id)
				if err != nil || got.Status != want {
					t.Fatalf("%s: %+v %v, want %s", id, got, err, want)
				}
			}
		})
	}
}
