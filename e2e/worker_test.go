package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/rdev"
)

// startWorker runs `rdev worker` against s with key; its output is
// returned by the func.
func startWorker(t *testing.T, s *server, key string, env ...string) (*exec.Cmd, func() string) {
	t.Helper()
	cmd := exec.Command(binary, "worker", "--capacity", "1", "--sandbox", "none")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "RDEV_SERVER=" + s.URL, "RDEV_TOKEN=" + key}, env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd, out.String
}

func TestExternalWorkerKilledMidTask(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data, "--review-workers", "0", "--task-lease", "2s", "--reaper-interval", "200ms",
		"--worker-timeout", "3s")
	admin := readKey(t, filepath.Join(data, "admin.key"))
	c := s.client(t, admin)
	ctx := context.Background()
	workerKey := mustKey(t, c, "worker", rdev.ScopeWorkersExecute, rdev.ScopeWorkersRead)
	marks := t.TempDir()
	// The first attempt marks that it started and hangs; a later one passes.
	// (The workers run with --sandbox none, so the review sees this
	// machine's files; never the worker's environment.)
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t),
		ReviewCommand: `if [ -e '` + marks + `/started' ]; then echo second attempt; exit 0; fi; touch '` + marks + `/started'; exec sleep 120`}); err != nil {
		t.Fatal(err)
	}
	co, commit := branchWork(t, c, s.URL+"/git/web.git", "agent/slow", map[string]string{"work.txt": "work\n"})

	a, aOut := startWorker(t, s, workerKey)
	res, err := c.CheckinCheckout(ctx, "web", co.ID, client.CheckinRequest{AutoMerge: true})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(marks, "started")); return err == nil })
	first, err := c.GetTask(ctx, res.ReviewTaskID)
	if err != nil || first.Status != "claimed" || first.Attempts != 1 {
		t.Fatalf("while the first worker runs it: %+v %v", first, err)
	}
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	a.Wait()

	b, bOut := startWorker(t, s, workerKey)
	task := waitTask(t, c, res.ReviewTaskID)
	r := reviewResult(t, task)
	if task.Status != "succeeded" || task.Attempts != 2 || r.Verdict != "passed" || !r.Merged || r.Commit != commit {
		t.Fatalf("task %+v result %+v\nworker A:\n%s\nworker B:\n%s", task, r, aOut(), bOut())
	}
	if task.LeaseOwner == first.LeaseOwner {
		t.Fatalf("completed by the killed worker %s", first.LeaseOwner)
	}
	// Exactly once: one exit in the log, after the second attempt's output.
	var log strings.Builder
	exits := 0
	if _, err := c.FollowTask(ctx, task.ID, 0, func(e client.Event) error {
		log.Write(e.Data)
		if e.Type == "exit" {
			exits++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if exits != 1 || strings.Count(log.String(), "\nsecond attempt\n") != 1 || !strings.Contains(log.String(), "lease expired") {
		t.Fatalf("%d exits; log:\n%s\nworker B:\n%s", exits, log.String(), bOut())
	}
	b.Process.Signal(syscall.SIGTERM)
	if err := waitExit(b, 30*time.Second); err != nil {
		t.Fatalf("worker B after SIGTERM: %v\n%s", err, bOut())
	}
	// B left the pool at once; the killed A once its heartbeats are 3 s old.
	waitFor(t, func() bool {
		p, err := c.Pool(ctx)
		return err == nil && p.WorkersOnline == 0 && p.Capacity == 0
	})

	t.Run("DeadPastTheAttemptLimit", func(t *testing.T) {
		// A worker that claims and goes silent, twice: the reaper re-queues
		// the task once, then buries it.
		wc := s.client(t, workerKey)
		w, err := wc.RegisterWorker(ctx, client.WorkerRequest{Name: "silent", Kinds: []string{"slow"}, Capacity: 1})
		if err != nil {
			t.Fatal(err)
		}
		queued, err := wc.CreateTask(ctx, client.TaskRequest{Kind: "slow", ProjectID: "web", MaxAttempts: 2})
		if err != nil {
			t.Fatal(err)
		}
		for attempt := 1; attempt <= 2; attempt++ {
			got, err := wc.Claim(ctx, w.ID, nil, 10*time.Second)
			if err != nil || got == nil || got.ID != queued.ID || got.Attempts != attempt {
				t.Fatalf("claim %d: %+v %v", attempt, got, err)
			}
		}
		dead := waitTask(t, c, queued.ID)
		if dead.Status != "dead" || dead.Attempts != 2 || dead.Error != "lease expired" {
			t.Fatalf("task %+v", dead)
		}
		if _, err := wc.CompleteTask(ctx, queued.ID, w.ID, map[string]any{}); client.ErrorCode(err) != "LEASE_NOT_HELD" {
			t.Fatalf("a late completion: %v", err)
		}
	})
}

func waitExit(cmd *exec.Cmd, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return os.ErrDeadlineExceeded
	}
}
