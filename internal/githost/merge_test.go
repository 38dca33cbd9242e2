package githost

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// sh runs a git command for the test, failing it on error.
func sh(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mergeRepo makes project "web" whose main has a.txt and b.txt, and
// branches from it: ahead (adds n.txt), apart (adds c.txt), edit and clash
// (each changes a.txt and b.txt, differently).
func mergeRepo(t *testing.T) (*Host, string) {
	h, err := New(t.TempDir(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	write := func(name, body string) { os.WriteFile(filepath.Join(work, name), []byte(body), 0o644) }
	sh(t, work, "init", "-q", "-b", "main")
	write("a.txt", "a\n")
	write("b.txt", "b\n")
	sh(t, work, "add", ".")
	sh(t, work, "commit", "-qm", "base")
	sh(t, work, "checkout", "-qb", "ahead")
	write("n.txt", "new\n")
	sh(t, work, "add", ".")
	sh(t, work, "commit", "-qm", "ahead")
	sh(t, work, "checkout", "-q", "main")
	sh(t, work, "checkout", "-qb", "apart")
	write("c.txt", "c\n")
	sh(t, work, "add", ".")
	sh(t, work, "commit", "-qm", "apart")
	sh(t, work, "checkout", "-q", "main")
	sh(t, work, "checkout", "-qb", "clash")
	write("a.txt", "clash a\n")
	write("b.txt", "clash b\n")
	sh(t, work, "commit", "-qam", "clash")
	sh(t, work, "checkout", "-q", "main")
	sh(t, work, "checkout", "-qb", "edit")
	write("a.txt", "edited a\n")
	write("b.txt", "edited b\n")
	sh(t, work, "commit", "-qam", "edit")
	sh(t, work, "checkout", "-q", "main")
	staged, err := h.Stage(context.Background(), "web", "main", work, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Commit(staged, "web"); err != nil {
		t.Fatal(err)
	}
	return h, work
}

func TestMerge(t *testing.T) {
	ctx := context.Background()
	h, _ := mergeRepo(t)
	repo := h.Path("web")
	tip := func(b string) string { return sh(t, repo, "rev-parse", "refs/heads/"+b) }

	ahead := tip("ahead")
	r, err := h.Merge(ctx, "web", "main", ahead, "merge ahead")
	if err != nil || r.Kind != MergeFastForward || r.Commit != ahead || tip("main") != ahead {
		t.Fatalf("fast-forward: %+v %v (main at %s)", r, err, tip("main"))
	}
	r, err = h.Merge(ctx, "web", "main", ahead, "again")
	if err != nil || r.Kind != MergeUpToDate || tip("main") != ahead {
		t.Fatalf("again: %+v %v", r, err)
	}

	// main has moved past the fork point of apart: a merge commit.
	apart := tip("apart")
	r, err = h.Merge(ctx, "web", "main", apart, "merge apart")
	if err != nil || r.Kind != MergeCommit || tip("main") != r.Commit {
		t.Fatalf("merge commit: %+v %v", r, err)
	}
	parents := strings.Fields(sh(t, repo, "rev-list", "--parents", "-n", "1", r.Commit))
	if len(parents) != 3 || parents[1] != ahead || parents[2] != apart {
		t.Fatalf("parents of the merge: %v", parents)
	}
	files := sh(t, repo, "ls-tree", "--name-only", r.Commit)
	if files != "a.txt\nb.txt\nc.txt\nn.txt" {
		t.Fatalf("merged tree: %q", files)
	}

	// Once main has edit's a.txt and b.txt, clash conflicts on both:
	// nothing moves, and the paths are named.
	if r, err = h.Merge(ctx, "web", "main", tip("edit"), "merge edit"); err != nil || r.Kind != MergeCommit {
		t.Fatalf("merge edit: %+v %v", r, err)
	}
	before := tip("main")
	r, err = h.Merge(ctx, "web", "main", tip("clash"), "merge clash")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Conflicts, []string{"a.txt", "b.txt"}) || r.Kind != "" || tip("main") != before {
		t.Fatalf("conflict: %+v (main %s, was %s)", r, tip("main"), before)
	}

	if _, err := h.Merge(ctx, "web", "missing", ahead, "x"); err == nil {
		t.Fatal("merged into a missing branch")
	}
}
