package local_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/rdev"
)

// TestComponentCode checks what a component may do to the project's
// code: a read-only one cannot change it; a writable one works in a copy
// of its own, fresh at each deploy, kept across its restarts, seen by no
// session and no other component.
func TestComponentCode(t *testing.T) {
	t.Run("Sandboxed", func(t *testing.T) {
		requireBwrap(t)
		componentCode(t, local.SandboxBwrap)
	})
	t.Run("None", func(t *testing.T) { componentCode(t, local.SandboxNone) })
}

func componentCode(t *testing.T, mode string) {
	ctx := context.Background()
	repos, dir := t.TempDir(), t.TempDir()
	c, src := newWebCluster(t, local.Config{Dir: dir, Sandbox: mode}, repos)
	bare := filepath.Join(repos, "web.git")

	pod := filepath.Join(dir, "web")
	base := filepath.Join(pod, "code", "base")
	comps := filepath.Join(pod, "components")
	work := func(name string) string { return filepath.Join(comps, name, "work") }
	sandboxed := mode == local.SandboxBwrap
	// RDEV_PROJECT as a project stored before such names were refused
	// might hold it: rdev's own value wins.
	env := map[string]string{"BASE": base, "COMPS": comps, "RW": work("rw"), "RDEV_PROJECT": "forged"}
	if sandboxed {
		env["SANDBOXED"] = "1" // the other copies are hidden only in a sandbox
	}
	ro := rdev.Component{Name: "ro", Env: env, Command: `[ "$(pwd -P)" = "$BASE" ] || exit 8; [ "$HOME" = "$BASE" ] || exit 9
		[ "$RDEV_PROJECT" = web ] || exit 13
		[ -n "$SANDBOXED" ] && test -e "$COMPS" && exit 12
		if touch x 2>/dev/null; then exit 10; fi; exit 11`}
	// rw's first run ends: the second must find what the first wrote.
	rw := rdev.Component{Name: "rw", Writable: true, Env: env, Command: `echo run >> runs; [ "$(wc -l < runs)" -ge 2 ] || exit 3
		{ cat README; echo "pwd=$(pwd -P)"; echo "home=$HOME"; } > seen; echo mine > mine.txt; exec sleep 600`}
	peer := rdev.Component{Name: "peer", Writable: true, Env: env, Command: `while [ ! -e go ]; do sleep 0.1; done
		{ test -e mine.txt && echo own-has-mine; test -e "$RW/mine.txt" && echo sees-rw; test -e "$BASE/mine.txt" && echo base-has-mine; } > peer-seen
		exec sleep 600`}
	p := &rdev.Project{ID: "web", Name: "web", DefaultBranch: "main", Components: []rdev.Component{ro, rw, peer}}
	p.Normalize()
	if err := c.Deploy(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Undeploy(ctx, "web") })

	// The read-only component runs in code/base and cannot write there
	// (without a sandbox nothing can stop it: docs/security.md).
	want := 11
	if !sandboxed {
		want = 10
	}
	waitFor(t, func() bool {
		st, _ := c.Status(ctx, "web")
		for _, pr := range st.Processes {
			if pr.Component == "ro" && pr.LastExit != nil {
				if *pr.LastExit != want {
					t.Fatalf("read-only component exited %d, want %d", *pr.LastExit, want)
				}
				return true
			}
		}
		return false
	})
	if _, err := os.Stat(filepath.Join(base, "x")); sandboxed && err == nil {
		t.Fatal("a read-only component wrote code/base/x")
	}

	// The writable one works in its own copy, across its restarts.
	waitFor(t, func() bool { return exists(filepath.Join(work("rw"), "mine.txt")) })
	realWork, _ := filepath.EvalSymlinks(work("rw"))
	if got, want := read(t, filepath.Join(work("rw"), "seen")), "hi\npwd="+realWork+"\nhome="+work("rw")+"\n"; got != want {
		t.Fatalf("the writable component saw %q, want %q", got, want)
	}
	if got := read(t, filepath.Join(work("rw"), "runs")); got != "run\nrun\n" {
		t.Fatalf("runs = %q: the copy was not kept across the component's restart", got)
	}
	if exists(filepath.Join(base, "mine.txt")) || exists(filepath.Join(base, "runs")) {
		t.Fatal("a writable component's writes reached code/base")
	}

	// Another writable component has a copy of its own and, in a
	// sandbox, cannot see rw's.
	waitFor(t, func() bool { return exists(filepath.Join(work("peer"), "README")) })
	if err := os.WriteFile(filepath.Join(work("peer"), "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return exists(filepath.Join(work("peer"), "peer-seen")) })
	time.Sleep(100 * time.Millisecond)
	seen := read(t, filepath.Join(work("peer"), "peer-seen"))
	if strings.Contains(seen, "own-has-mine") || strings.Contains(seen, "base-has-mine") || sandboxed && seen != "" {
		t.Fatalf("the other component saw %q", seen)
	}

	// A session command does not see it either.
	if _, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "web", SessionID: "s1", Branch: "main", CloneURL: "http://rdev.test/git/web.git", Token: "tok"}); err != nil {
		t.Fatal(err)
	}
	if out, code := execIn(t, c, "web", "s1", `test -e "$1/mine.txt" && echo sees-rw; test -e mine.txt && echo has-mine; true`, work("rw")); code != 0 ||
		strings.Contains(out, "has-mine") || sandboxed && out != "" {
		t.Fatalf("a session command saw %q (exit %d)", out, code)
	}

	// A redeploy with new code gives a fresh copy of the new code.
	os.WriteFile(filepath.Join(src, "new.txt"), []byte("new\n"), 0o644)
	run(t, src, "add", ".")
	run(t, src, "commit", "-q", "-m", "second")
	run(t, src, "push", "-q", bare, "main")
	if err := os.WriteFile(filepath.Join(work("rw"), "stale"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Deploy(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		return exists(filepath.Join(work("rw"), "mine.txt")) && exists(filepath.Join(work("rw"), "new.txt"))
	})
	if exists(filepath.Join(work("rw"), "stale")) {
		t.Fatal("the writable copy outlived a redeploy")
	}
	if got := read(t, filepath.Join(work("rw"), "runs")); got != "run\nrun\n" {
		t.Fatalf("runs = %q after a redeploy", got)
	}

	// A component removed from the project loses its copy; undeploy
	// removes the rest.
	p.Components = []rdev.Component{rw}
	if err := c.Deploy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if exists(filepath.Join(comps, "peer")) {
		t.Fatal("a removed component's copy is still there")
	}
	if err := c.Undeploy(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if exists(pod) {
		t.Fatal("the pod directory outlived undeploy")
	}
}

// execIn runs a shell script in a session's workspace and returns its
// output and exit status.
func execIn(t *testing.T, c *local.Cluster, project, session, script string, args ...string) (string, int) {
	t.Helper()
	p, err := c.Exec(context.Background(), cluster.ExecSpec{ProjectID: project, SessionID: session, Argv: append([]string{"/bin/sh", "-c", script, "sh"}, args...)})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(io.MultiReader(p.Stdout(), p.Stderr()))
	code, _, err := p.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newWebCluster is a local cluster of cfg (Dir, Sandbox, Egress as given;
// the rest the tests' own) whose repositories live in repos, holding
// project web's: a bare clone of webSource, also returned.
func newWebCluster(t *testing.T, cfg local.Config, repos string) (*local.Cluster, string) {
	t.Helper()
	cfg.RepoPath = func(id string) string { return filepath.Join(repos, id+".git") }
	cfg.CredentialHelper, cfg.Executable, cfg.User = "!true", testExecutable(t), testUser(t)
	cfg.Log = slog.New(slog.NewTextHandler(testLogOut(), nil))
	c, err := local.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	src := webSource(t)
	run(t, "", "clone", "-q", "--bare", src, filepath.Join(repos, "web.git"))
	return c, src
}

// webSource is a repository with one commit on main: README "hi".
func webSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	run(t, src, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(src, "README"), []byte("hi\n"), 0o644)
	run(t, src, "add", ".")
	run(t, src, "commit", "-q", "-m", "first")
	return src
}
