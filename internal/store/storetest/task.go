package storetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

func newTask(project, kind string, at time.Time, maxAttempts int) *rdev.Task {
	return &rdev.Task{ID: rdev.NewID("t"), Kind: kind, ProjectID: project, Status: rdev.TaskQueued,
		Payload: json.RawMessage(`{"n":1}`), MaxAttempts: maxAttempts, RunAfter: at, CreatedAt: at, UpdatedAt: at}
}

func testTasks(t *testing.T, open Opener) {
	setup := func(t *testing.T) rdev.Store {
		st := open(t)
		must(t, st.CreateProject(ctx(t), project("web", t0)))
		return st
	}
	claim := func(w string, at time.Time, kinds ...string) rdev.Claim {
		return rdev.Claim{WorkerID: w, Kinds: kinds, Now: at, Lease: 30 * time.Second}
	}

	t.Run("ClaimHeartbeatComplete", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		task := newTask("web", "review", t0, 3)
		must(t, st.CreateTask(c, task))
		wantErr(t, st.CreateTask(c, newTask("gone", "review", t0, 3)), rdev.ErrProjectNotFound)
		got, err := st.ClaimTask(c, claim("w1", t0, "lint", "build"))
		must(t, err)
		if got != nil {
			t.Fatalf("claimed a task of another kind: %+v", got)
		}
		got, err = st.ClaimTask(c, claim("w1", t0.Add(time.Second), "lint", "review"))
		must(t, err)
		if got == nil || got.ID != task.ID || got.Status != rdev.TaskClaimed || got.Attempts != 1 || got.LeaseOwner != "w1" ||
			!got.LeaseExpiresAt.Equal(t0.Add(31*time.Second)) || strings.ReplaceAll(string(got.Payload), " ", "") != `{"n":1}` {
			t.Fatalf("claim: %+v", got)
		}
		if again, err := st.ClaimTask(c, claim("w2", t0.Add(time.Second), "review")); err != nil || again != nil {
			t.Fatalf("claimed twice: %+v %v", again, err)
		}
		_, err = st.HeartbeatTask(c, task.ID, "w2", t0.Add(2*time.Second), 30*time.Second)
		wantErr(t, err, rdev.ErrLeaseNotHeld)
		_, err = st.HeartbeatTask(c, "tmissing", "w1", t0, time.Second)
		wantErr(t, err, rdev.ErrTaskNotFound)
		hb, err := st.HeartbeatTask(c, task.ID, "w1", t0.Add(10*time.Second), 30*time.Second)
		must(t, err)
		if !hb.LeaseExpiresAt.Equal(t0.Add(40*time.Second)) || hb.Status != rdev.TaskClaimed {
			t.Fatalf("heartbeat: %+v", hb)
		}
		_, err = st.CompleteTask(c, task.ID, "w2", json.RawMessage(`{"verdict":"passed"}`), t0.Add(11*time.Second))
		wantErr(t, err, rdev.ErrLeaseNotHeld)
		done, err := st.CompleteTask(c, task.ID, "w1", json.RawMessage(`{"verdict":"passed"}`), t0.Add(12*time.Second))
		must(t, err)
		if done.Status != rdev.TaskSucceeded || done.EndedAt == nil || !strings.Contains(string(done.Result), "passed") {
			t.Fatalf("complete: %+v", done)
		}
		_, err = st.CompleteTask(c, task.ID, "w1", nil, t0.Add(13*time.Second))
		wantErr(t, err, rdev.ErrLeaseNotHeld)
		_, err = st.FailTask(c, task.ID, "w1", "late", true, t0, t0.Add(13*time.Second))
		wantErr(t, err, rdev.ErrLeaseNotHeld)
		back, err := st.GetTask(c, task.ID)
		must(t, err)
		if back.Status != rdev.TaskSucceeded || back.Attempts != 1 {
			t.Fatalf("stored: %+v", back)
		}
	})

	t.Run("CompleteAndClaimNext", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		a, b, other, last := newTask("web", "build", t0, 3), newTask("web", "build", t0.Add(time.Second), 3),
			newTask("web", "lint", t0.Add(2*time.Second), 3), newTask("web", "build", t0.Add(3*time.Second), 3)
		for _, task := range []*rdev.Task{a, b, other, last} {
			must(t, st.CreateTask(c, task))
		}
		got, err := st.ClaimTask(c, claim("w1", t0.Add(time.Minute), "build"))
		must(t, err)
		if got.ID != a.ID {
			t.Fatalf("claimed %s, want %s", got.ID, a.ID)
		}
		at := t0.Add(2 * time.Minute)
		done, next, err := st.CompleteAndClaim(c, a.ID, json.RawMessage(`{"ok":true}`), claim("w1", at, "build"))
		must(t, err)
		if done.ID != a.ID || done.Status != rdev.TaskSucceeded || next == nil || next.ID != b.ID || next.Status != rdev.TaskClaimed ||
			next.LeaseOwner != "w1" || next.Attempts != 1 || !next.LeaseExpiresAt.Equal(at.Add(30*time.Second)) {
			t.Fatalf("done %+v next %+v", done, next)
		}
		// Refused: nothing is claimed.
		_, _, err = st.CompleteAndClaim(c, b.ID, nil, claim("w2", at, "build"))
		wantErr(t, err, rdev.ErrLeaseNotHeld)
		if l, _ := st.GetTask(c, last.ID); l.Status != rdev.TaskQueued {
			t.Fatalf("a refused completion claimed %+v", l)
		}
		_, next, err = st.CompleteAndClaim(c, b.ID, nil, claim("w1", at, "build"))
		must(t, err)
		if next == nil || next.ID != last.ID {
			t.Fatalf("next after b: %+v (the lint task is not wanted)", next)
		}
		done, next, err = st.CompleteAndClaim(c, last.ID, nil, claim("w1", at, "build"))
		must(t, err)
		if done.Status != rdev.TaskSucceeded || next != nil {
			t.Fatalf("with the queue empty of builds: %+v %+v", done, next)
		}
		_, _, err = st.CompleteAndClaim(c, "tmissing", nil, claim("w1", at, "build"))
		wantErr(t, err, rdev.ErrTaskNotFound)
	})

	t.Run("FailRetryBackoffAndLimit", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		task := newTask("web", "review", t0, 2)
		must(t, st.CreateTask(c, task))
		_, err := st.ClaimTask(c, claim("w1", t0, "review"))
		must(t, err)
		retry := t0.Add(time.Minute)
		f, err := st.FailTask(c, task.ID, "w1", "flaky", true, retry, t0.Add(time.Second))
		must(t, err)
		if f.Status != rdev.TaskQueued || f.LeaseOwner != "" || !f.RunAfter.Equal(retry) || f.Error != "flaky" || f.EndedAt != nil {
			t.Fatalf("retry: %+v", f)
		}
		if early, _ := st.ClaimTask(c, claim("w2", t0.Add(30*time.Second), "review")); early != nil {
			t.Fatal("claimed before its backoff ended")
		}
		second, err := st.ClaimTask(c, claim("w2", retry, "review"))
		must(t, err)
		if second == nil || second.Attempts != 2 || second.LeaseOwner != "w2" {
			t.Fatalf("second claim: %+v", second)
		}
		dead, err := st.FailTask(c, task.ID, "w2", "flaky again", true, retry.Add(time.Minute), retry.Add(time.Second))
		must(t, err)
		if dead.Status != rdev.TaskDead || dead.EndedAt == nil {
			t.Fatalf("past the limit: %+v", dead)
		}
		other := newTask("web", "review", t0, 5)
		must(t, st.CreateTask(c, other))
		_, err = st.ClaimTask(c, claim("w1", t0, "review"))
		must(t, err)
		failed, err := st.FailTask(c, other.ID, "w1", "bad input", false, t0, t0.Add(time.Second))
		must(t, err)
		if failed.Status != rdev.TaskFailed || failed.Attempts != 1 {
			t.Fatalf("no retry: %+v", failed)
		}
	})

	t.Run("ReaperRequeuesThenBuries", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		task := newTask("web", "review", t0, 2)
		must(t, st.CreateTask(c, task))
		_, err := st.ClaimTask(c, claim("w1", t0, "review"))
		must(t, err)
		reaped, err := st.ReapTasks(c, t0.Add(29*time.Second), 100)
		must(t, err)
		if len(reaped) != 0 {
			t.Fatalf("reaped a live lease: %+v", reaped)
		}
		reaped, err = st.ReapTasks(c, t0.Add(30*time.Second), 100)
		must(t, err)
		if len(reaped) != 1 || reaped[0].Status != rdev.TaskQueued || reaped[0].LeaseOwner != "" || reaped[0].Error != "lease expired" {
			t.Fatalf("reaped: %+v", reaped)
		}
		_, err = st.CompleteTask(c, task.ID, "w1", nil, t0.Add(31*time.Second))
		wantErr(t, err, rdev.ErrLeaseNotHeld)
		got, err := st.ClaimTask(c, claim("w2", t0.Add(31*time.Second), "review"))
		must(t, err)
		if got == nil || got.Attempts != 2 {
			t.Fatalf("reclaim: %+v", got)
		}
		reaped, err = st.ReapTasks(c, t0.Add(2*time.Minute), 100)
		must(t, err)
		if len(reaped) != 1 || reaped[0].Status != rdev.TaskDead || reaped[0].EndedAt == nil {
			t.Fatalf("reaped past the limit: %+v", reaped)
		}
	})

	t.Run("Cancel", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		queued, claimed := newTask("web", "review", t0, 3), newTask("web", "review", t0.Add(time.Second), 3)
		must(t, st.CreateTask(c, queued))
		must(t, st.CreateTask(c, claimed))
		got, err := st.ClaimTask(c, claim("w1", t0.Add(time.Second), "review"))
		must(t, err)
		if got.ID != queued.ID {
			t.Fatalf("claimed %s before the older %s", got.ID, queued.ID)
		}
		claimed = got
		x, err := st.CancelTask(c, claimed.ID, t0.Add(2*time.Second))
		must(t, err)
		if x.Status != rdev.TaskCancelled || x.LeaseOwner != "w1" {
			t.Fatalf("cancel claimed: %+v", x)
		}
		hb, err := st.HeartbeatTask(c, claimed.ID, "w1", t0.Add(3*time.Second), time.Minute)
		must(t, err)
		if hb.Status != rdev.TaskCancelled {
			t.Fatalf("heartbeat after cancel: %+v", hb)
		}
		_, err = st.CompleteTask(c, claimed.ID, "w1", nil, t0.Add(3*time.Second))
		wantErr(t, err, rdev.ErrLeaseNotHeld)
		_, err = st.CancelTask(c, claimed.ID, t0.Add(4*time.Second))
		wantErr(t, err, rdev.ErrTaskFinished)
		_, err = st.CancelTask(c, "tmissing", t0)
		wantErr(t, err, rdev.ErrTaskNotFound)
		reaped, _ := st.ReapTasks(c, t0.Add(time.Hour), 10)
		if len(reaped) != 0 {
			t.Fatalf("reaped a cancelled task: %+v", reaped)
		}
	})

	t.Run("ListFiltered", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		must(t, st.CreateProject(c, project("api", t0)))
		for i := range 5 {
			p, kind := "web", "review"
			if i%2 == 1 {
				p, kind = "api", "lint"
			}
			must(t, st.CreateTask(c, newTask(p, kind, t0.Add(time.Duration(i)*time.Second), 3)))
		}
		all, next, err := st.ListTasks(c, rdev.TaskFilter{}, rdev.Page{Limit: 3})
		must(t, err)
		if len(all) != 3 || next == "" || !all[0].CreatedAt.After(all[1].CreatedAt) {
			t.Fatalf("first page: %d %q", len(all), next)
		}
		rest, next, err := st.ListTasks(c, rdev.TaskFilter{}, rdev.Page{Limit: 3, Cursor: next})
		must(t, err)
		if len(rest) != 2 || next != "" {
			t.Fatalf("second page: %d %q", len(rest), next)
		}
		for _, tc := range []struct {
			f    rdev.TaskFilter
			want int
		}{
			{rdev.TaskFilter{Kind: "lint"}, 2},
			{rdev.TaskFilter{ProjectID: "web"}, 3},
			{rdev.TaskFilter{Status: "queued", Kind: "review"}, 3},
			{rdev.TaskFilter{Status: "claimed"}, 0},
			{rdev.TaskFilter{Projects: []string{"api"}}, 2},
			{rdev.TaskFilter{Projects: []string{}}, 0},
		} {
			got, _, err := st.ListTasks(c, tc.f, rdev.Page{Limit: 50})
			must(t, err)
			if len(got) != tc.want {
				t.Errorf("%+v: %d tasks, want %d", tc.f, len(got), tc.want)
			}
		}
	})

	t.Run("Log", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		task := newTask("web", "review", t0, 3)
		must(t, st.CreateTask(c, task))
		long := strings.Repeat("ok  \tpkg\t0.1s\n", 500)
		must(t, st.AppendTaskLog(c, task.ID, []rdev.Event{
			{ID: 99, Type: "stdout", Data: []byte("running\n"), At: t0}, // ids are the store's to give
			{Type: "stdout", Data: []byte(long), At: t0},
		}))
		wantErr(t, st.AppendTaskLog(c, "tmissing", []rdev.Event{{Type: "stdout", At: t0}}), rdev.ErrTaskNotFound)
		_, err := st.ClaimTask(c, claim("w1", t0, "review"))
		must(t, err)
		must(t, st.AppendTaskLog(c, task.ID, []rdev.Event{{Type: "stderr", Data: []byte("warning\n"), At: t0}}))
		evs, err := st.ListTaskLog(c, task.ID, 1, 10)
		must(t, err)
		if len(evs) != 2 || evs[0].ID != 2 || string(evs[0].Data) != long || evs[1].ID != 3 || evs[1].Type != "stderr" {
			t.Fatalf("log after 1: %+v", evs)
		}
		last, err := st.LastTaskLogID(c, task.ID)
		must(t, err)
		if last != 3 {
			t.Fatalf("last id %d", last)
		}
		if last, _ := st.LastTaskLogID(c, "tmissing"); last != 0 {
			t.Fatalf("last id of a missing task: %d", last)
		}
	})

	t.Run("ClaimOnlyAllowedProjects", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		for _, id := range []string{"alpha", "beta", "gamma"} {
			must(t, st.CreateProject(c, project(id, t0)))
		}
		beta, alpha, gamma := newTask("beta", "build", t0, 3), newTask("alpha", "build", t0.Add(time.Second), 3),
			newTask("gamma", "build", t0.Add(2*time.Second), 3)
		for _, task := range []*rdev.Task{beta, alpha, gamma} {
			must(t, st.CreateTask(c, task))
		}
		w := &rdev.Worker{ID: "wa", Name: "a", Kinds: []string{"build"}, Capacity: 1, KeyID: "kalpha", Projects: []string{"alpha", "gamma"},
			CreatedAt: t0, HeartbeatAt: t0}
		must(t, st.RegisterWorker(c, w))
		got, err := st.GetWorker(c, "wa")
		must(t, err)
		if got.KeyID != "kalpha" || fmt.Sprint(got.Projects) != "[alpha gamma]" {
			t.Fatalf("worker %+v", got)
		}
		at := t0.Add(time.Minute)
		cl := claim("wa", at, "build")
		cl.Projects = w.Projects
		first, err := st.ClaimTask(c, cl)
		must(t, err)
		if first == nil || first.ID != alpha.ID {
			t.Fatalf("claimed %+v, want alpha's task (beta's is older but not allowed)", first)
		}
		done, next, err := st.CompleteAndClaim(c, alpha.ID, nil, cl)
		must(t, err)
		if done.ID != alpha.ID || next == nil || next.ID != gamma.ID {
			t.Fatalf("complete-and-claim: %+v then %+v, want gamma's task", done, next)
		}
		if none, err := st.ClaimTask(c, cl); err != nil || none != nil {
			t.Fatalf("a claim with only beta's task queued: %+v %v", none, err)
		}
		// No projects: every project.
		any, err := st.ClaimTask(c, claim("wb", at, "build"))
		must(t, err)
		if any == nil || any.ID != beta.ID {
			t.Fatalf("an unrestricted claim: %+v", any)
		}
		builtIn := &rdev.Worker{ID: "wbuilt", Name: "b", Kinds: []string{"review"}, Capacity: 1, BuiltIn: true, CreatedAt: t0, HeartbeatAt: t0}
		must(t, st.RegisterWorker(c, builtIn))
		if got, _ := st.GetWorker(c, "wbuilt"); got.KeyID != "" || len(got.Projects) != 0 {
			t.Fatalf("built-in worker %+v", got)
		}
	})

	t.Run("WorkersAndPool", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		now := t0.Add(time.Hour)
		for i, w := range []*rdev.Worker{
			{ID: "w1", Name: "one", Kinds: []string{"review"}, Capacity: 4, CreatedAt: now, HeartbeatAt: now},
			{ID: "w2", Name: "two", Kinds: []string{"review", "lint"}, Capacity: 2, BuiltIn: true, CreatedAt: now, HeartbeatAt: now},
			{ID: "w3", Name: "stale", Kinds: []string{"review"}, Capacity: 8, CreatedAt: t0, HeartbeatAt: t0},
		} {
			must(t, st.RegisterWorker(c, w))
			if i == 0 {
				if err := st.RegisterWorker(c, w); err == nil {
					t.Fatal("a worker registered twice")
				}
			}
		}
		w, err := st.GetWorker(c, "w2")
		must(t, err)
		if !w.BuiltIn || len(w.Kinds) != 2 || w.Capacity != 2 {
			t.Fatalf("worker: %+v", w)
		}
		_, err = st.HeartbeatWorker(c, "wmissing", now)
		wantErr(t, err, rdev.ErrWorkerNotFound)
		for i := range 4 {
			kind := "review"
			if i == 3 {
				kind = "lint"
			}
			must(t, st.CreateTask(c, newTask("web", kind, now.Add(-time.Duration(10*(i+1))*time.Second), 3)))
		}
		future := newTask("web", "review", now.Add(time.Hour), 3)
		must(t, st.CreateTask(c, future))
		for _, w := range []string{"w1", "w3"} {
			got, err := st.ClaimTask(c, claim(w, now, "review"))
			must(t, err)
			if got == nil {
				t.Fatal("nothing to claim")
			}
		}
		p, err := st.PoolStats(c, now, now.Add(-30*time.Second))
		must(t, err)
		// w3 is offline: its capacity and its claimed task do not count.
		want := rdev.Pool{WorkersOnline: 2, Capacity: 6, Busy: 1, Idle: 5, QueueDepth: 3,
			QueueDepthByKind: map[string]int{"review": 2, "lint": 1}, OldestQueuedAgeSeconds: 40}
		if fmt.Sprint(*p) != fmt.Sprint(want) {
			t.Fatalf("pool %+v, want %+v", *p, want)
		}
		_, err = st.HeartbeatWorker(c, "w3", now)
		must(t, err)
		p, _ = st.PoolStats(c, now, now.Add(-30*time.Second))
		if p.WorkersOnline != 3 || p.Capacity != 14 || p.Busy != 2 {
			t.Fatalf("after w3's heartbeat: %+v", *p)
		}
		must(t, st.DeleteWorker(c, "w3"))
		wantErr(t, st.DeleteWorker(c, "w3"), rdev.ErrWorkerNotFound)
	})

	t.Run("ConcurrentClaimsEachTaskOnce", func(t *testing.T) {
		// 16 workers drain the queue concurrently; each task must be
		// claimed and completed exactly once.
		st, c := setup(t), ctx(t)
		const n, workers = 2000, 16
		for i := range n {
			must(t, st.CreateTask(c, newTask("web", "noop", t0.Add(time.Duration(i)*time.Microsecond), 3)))
		}
		var mu sync.Mutex
		done := map[string]int{}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				id := fmt.Sprintf("w%d", w)
				for {
					task, err := st.ClaimTask(c, claim(id, t0.Add(time.Hour), "noop"))
					if err != nil {
						t.Error(err)
						return
					}
					if task == nil {
						return
					}
					if _, err := st.CompleteTask(c, task.ID, id, json.RawMessage(`{}`), t0.Add(time.Hour)); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					done[task.ID]++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(done) != n {
			t.Fatalf("%d tasks completed, want %d", len(done), n)
		}
		for id, k := range done {
			if k != 1 {
				t.Fatalf("task %s completed %d times", id, k)
			}
		}
		ts, _, err := st.ListTasks(c, rdev.TaskFilter{Kind: "noop"}, rdev.Page{Limit: n + 1})
		must(t, err)
		for _, task := range ts {
			if task.Status != rdev.TaskSucceeded || task.Attempts != 1 {
				t.Fatalf("stored: %+v", task)
			}
		}
	})
}
