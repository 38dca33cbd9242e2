package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/rdev"
)

// waitTask polls a task until it has finished.
func waitTask(t *testing.T, c *client.Client, id string) *client.Task {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		task, err := c.GetTask(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if task.Finished() {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s still %s after 90s", id, task.Status)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func reviewResult(t *testing.T, task *client.Task) rdev.ReviewResult {
	t.Helper()
	var r rdev.ReviewResult
	if err := json.Unmarshal(task.Result, &r); err != nil {
		t.Fatalf("task %s ended %s (attempts %d, error %q) with result %s: %v", task.ID, task.Status, task.Attempts, task.Error, task.Result, err)
	}
	return r
}

// branchWork checks out a new branch of project web, commits files on it
// through the checkout token, and returns the checkout and its commit.
func branchWork(t *testing.T, c *client.Client, url, branch string, files map[string]string) (*client.CreatedCheckout, string) {
	t.Helper()
	co, err := c.CreateCheckout(context.Background(), "web", client.CheckoutRequest{NewBranch: branch})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "w")
	mustGit(t, filepath.Dir(dir), co.Token, "clone", "-q", "--branch", branch, url, dir)
	for name, body := range files {
		os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644)
	}
	mustGit(t, dir, co.Token, "add", ".")
	mustGit(t, dir, co.Token, "commit", "-q", "-m", "work on "+branch)
	mustGit(t, dir, co.Token, "push", "-q", "origin", branch)
	return co, strings.TrimSpace(mustGit(t, dir, co.Token, "rev-parse", "HEAD"))
}

func TestReviewAndAutoMerge(t *testing.T) {
	for _, sandbox := range []string{"bwrap", "none"} {
		t.Run(sandbox, func(t *testing.T) {
			if _, err := exec.LookPath("bwrap"); sandbox == "bwrap" && err != nil {
				if os.Getenv("CI") == "true" {
					t.Fatal("bubblewrap is not installed (CI=true forbids skipping)")
				}
				t.Skip("bubblewrap is not installed")
			}
			testReviewAndAutoMerge(t, sandbox)
		})
	}
}

func testReviewAndAutoMerge(t *testing.T, sandbox string) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data, "--review-workers", "2", "--sandbox", sandbox)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	c := s.client(t, admin)
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t),
		ReviewCommand: "echo checking $RDEV_BRANCH; grep -q pass verdict.txt"}); err != nil {
		t.Fatal(err)
	}
	url := s.URL + "/git/web.git"
	mainAt := func() string {
		return strings.Fields(mustGit(t, t.TempDir(), admin, "ls-remote", url, "refs/heads/main"))[0]
	}
	// All four branch off main as it is now.
	ff, ffCommit := branchWork(t, c, url, "agent/ff", map[string]string{"verdict.txt": "pass\n", "readme": "readme, by ff\n"})
	apart, apartCommit := branchWork(t, c, url, "agent/apart", map[string]string{"verdict.txt": "pass\n", "apart.txt": "apart\n"})
	clash, _ := branchWork(t, c, url, "agent/clash", map[string]string{"verdict.txt": "pass\n", "readme": "readme, by clash\n"})
	failing, _ := branchWork(t, c, url, "agent/failing", map[string]string{"verdict.txt": "fail\n"})
	before := mainAt()

	checkin := func(co *client.CreatedCheckout) *client.Task {
		t.Helper()
		res, err := c.CheckinCheckout(ctx, "web", co.ID, client.CheckinRequest{AutoMerge: true})
		if err != nil || res.ReviewTaskID == "" {
			t.Fatal(res, err)
		}
		return waitTask(t, c, res.ReviewTaskID)
	}

	t.Run("PassingReviewFastForwards", func(t *testing.T) {
		task := checkin(ff)
		r := reviewResult(t, task)
		if task.Status != "succeeded" || r.Verdict != "passed" || !r.Merged || r.Merge != "fast-forward" || r.Commit != ffCommit {
			t.Fatalf("task %+v result %+v", task, r)
		}
		if got := mainAt(); got != ffCommit {
			t.Fatalf("main at %s, want the branch's %s (was %s)", got, ffCommit, before)
		}
		co, err := c.GetCheckout(ctx, "web", ff.ID)
		if err != nil || co.Review == nil || co.Review.Verdict != "passed" || !co.Review.Merged || co.Review.Commit != ffCommit {
			t.Fatalf("checkout's review: %+v %v", co.Review, err)
		}
		var log strings.Builder
		exit, err := c.FollowTask(ctx, task.ID, 0, func(e client.Event) error { log.Write(e.Data); return nil })
		if err != nil || exit.Reason != "succeeded" || !strings.Contains(log.String(), "checking agent/ff") {
			t.Fatalf("log %q, exit %+v %v", log.String(), exit, err)
		}
	})

	t.Run("MainMovedMergeCommit", func(t *testing.T) {
		task := checkin(apart)
		r := reviewResult(t, task)
		if r.Verdict != "passed" || !r.Merged || r.Merge != "merge-commit" {
			t.Fatalf("result %+v", r)
		}
		main := mainAt()
		if main != r.Commit {
			t.Fatalf("main at %s, result says %s", main, r.Commit)
		}
		dir := t.TempDir()
		mustGit(t, dir, admin, "clone", "-q", url, "m")
		m := filepath.Join(dir, "m")
		parents := strings.Fields(mustGit(t, m, admin, "rev-list", "--parents", "-n", "1", "HEAD"))
		if len(parents) != 3 || parents[1] != ffCommit || parents[2] != apartCommit {
			t.Fatalf("merge parents %v, want %s and %s", parents, ffCommit, apartCommit)
		}
		for name, want := range map[string]string{"readme": "readme, by ff\n", "apart.txt": "apart\n"} {
			if b, _ := os.ReadFile(filepath.Join(m, name)); string(b) != want {
				t.Fatalf("%s on main: %q", name, b)
			}
		}
	})

	t.Run("ConflictFailsNamingPaths", func(t *testing.T) {
		was := mainAt()
		task := checkin(clash)
		r := reviewResult(t, task)
		if r.Verdict != "failed" || r.Merged || !slices.Equal(r.Conflicts, []string{"readme"}) || !strings.Contains(r.Reason, "readme") {
			t.Fatalf("result %+v", r)
		}
		if mainAt() != was {
			t.Fatal("main moved on a conflict")
		}
	})

	t.Run("FailingCommandNotMerged", func(t *testing.T) {
		was := mainAt()
		task := checkin(failing)
		r := reviewResult(t, task)
		if r.Verdict != "failed" || r.Merged || r.ExitCode == nil || *r.ExitCode != 1 {
			t.Fatalf("result %+v", r)
		}
		if mainAt() != was {
			t.Fatal("a failed review was merged")
		}
		var log strings.Builder
		if _, err := c.FollowTask(ctx, task.ID, 0, func(e client.Event) error { log.Write(e.Data); return nil }); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(log.String(), "checking agent/failing") {
			t.Fatalf("log: %q", log.String())
		}
		co, _ := c.GetCheckout(ctx, "web", failing.ID)
		if co.Review == nil || co.Review.Verdict != "failed" || co.Review.Merged {
			t.Fatalf("checkout's review: %+v", co.Review)
		}
	})

	t.Run("PoolCountsTheBuiltInWorker", func(t *testing.T) {
		p, err := c.Pool(ctx)
		if err != nil || p.WorkersOnline != 1 || p.Capacity != 2 || p.Busy != 0 || p.QueueDepth != 0 {
			t.Fatalf("pool %+v %v", p, err)
		}
	})
}
