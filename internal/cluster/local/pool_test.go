package local_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/rdev"
)

// repoWithFiles makes a bare repository whose main has n files and whose
// branch "feature" changes one of them.
func repoWithFiles(t testing.TB, repos, id string, n int) {
	src := t.TempDir()
	run(t, src, "init", "-q", "-b", "main")
	for i := range n {
		d := filepath.Join(src, fmt.Sprintf("d%03d", i%100))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, fmt.Sprintf("f%05d.txt", i)), []byte(fmt.Sprintf("file %d\n%0500d\n", i, i)), 0o644)
	}
	run(t, src, "add", ".")
	run(t, src, "commit", "-q", "-m", "tree")
	run(t, src, "checkout", "-q", "-b", "feature")
	os.WriteFile(filepath.Join(src, "d000", "f00000.txt"), []byte("changed on feature\n"), 0o644)
	run(t, src, "commit", "-q", "-am", "feature")
	// As a push or an import leaves it: the objects in a pack.
	run(t, "", "clone", "-q", "--bare", "--no-local", src, filepath.Join(repos, id+".git"))
}

func newLocal(t testing.TB, repos string, warm int) *local.Cluster {
	c, err := local.New(local.Config{Dir: t.TempDir(), RepoPath: func(id string) string { return filepath.Join(repos, id+".git") },
		CredentialHelper: "!true", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WarmWorkspaces: warm, Executable: testExecutable(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func deploy(t testing.TB, c *local.Cluster, id string) {
	p := &rdev.Project{ID: id, Name: id, DefaultBranch: "main"}
	p.Normalize()
	if err := c.Deploy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
}

func TestWarmWorkspaceIsTheBranch(t *testing.T) {
	repos := t.TempDir()
	repoWithFiles(t, repos, "web", 50)
	c := newLocal(t, repos, 2)
	deploy(t, c, "web")
	ctx := context.Background()
	if err := c.WaitWarm(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
	w, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "web", SessionID: "s1", Branch: "feature", CloneURL: "http://x/git/web.git"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(w.Path, "d000", "f00000.txt"))
	if string(b) != "changed on feature\n" {
		t.Fatalf("the warm workspace is not on feature: %q", b)
	}
	// The pool refills behind the take.
	if err := c.WaitWarm(ctx, "web", 2); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkPrepareWorkspace (P3) prepares session workspaces on
// repositories of 1k, 5k and 20k files, cold (a fresh clone) and warm (a
// ready checkout of the default branch switched to the session's branch),
// and reports the p50. RDEV_BENCH_SMALL=1 uses 1k files only.
//
//	go test ./internal/cluster/local -run '^$' -bench PrepareWorkspace -benchtime 10x
func BenchmarkPrepareWorkspace(b *testing.B) {
	sizes := []int{1000, 5000, 20000}
	if os.Getenv("RDEV_BENCH_SMALL") != "" {
		sizes = []int{1000}
	}
	for _, n := range sizes {
		repos := b.TempDir()
		repoWithFiles(b, repos, "web", n)
		for _, mode := range []string{"cold", "warm", "warm-sandboxed"} {
			warm := 1
			if mode == "cold" {
				warm = 0
			}
			b.Run(fmt.Sprintf("%dfiles/%s", n, mode), func(b *testing.B) {
				c := newLocal(b, repos, warm)
				if mode == "warm-sandboxed" {
					// The workspace then also becomes the sandbox's user's
					// (as root: every file handed over), inside a running
					// pod sandbox.
					requireBwrap(b)
					var err error
					c, err = local.New(local.Config{Dir: b.TempDir(), RepoPath: func(id string) string { return filepath.Join(repos, id+".git") },
						CredentialHelper: "!true", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), WarmWorkspaces: warm,
						Executable: testExecutable(b), Sandbox: local.SandboxBwrap, User: testUser(b)})
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(c.Close)
				}
				deploy(b, c, "web")
				ctx := context.Background()
				var times []time.Duration
				for i := range b.N {
					if warm > 0 {
						b.StopTimer()
						if err := c.WaitWarm(ctx, "web", 1); err != nil {
							b.Fatal(err)
						}
						b.StartTimer()
					}
					sid := fmt.Sprintf("s%d", i)
					t0 := time.Now()
					if _, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "web", SessionID: sid, Branch: "feature", CloneURL: "http://x"}); err != nil {
						b.Fatal(err)
					}
					times = append(times, time.Since(t0))
					b.StopTimer()
					c.RemoveWorkspace(ctx, "web", sid)
					b.StartTimer()
				}
				slices.Sort(times)
				b.ReportMetric(0, "ns/op")
				b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
			})
		}
	}
}
