package local_test

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"rdev.dev/rdev/internal/cluster/clustertest"
	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/rdev"
)

func TestConformance(t *testing.T) {
	t.Run("Cold", func(t *testing.T) { conformance(t, 0, local.SandboxNone) })
	t.Run("WarmPool", func(t *testing.T) { conformance(t, 2, local.SandboxNone) })
	t.Run("Sandboxed", func(t *testing.T) {
		requireBwrap(t)
		conformance(t, 2, local.SandboxBwrap)
	})
}

// requireBwrap skips a test when bubblewrap is not usable here, and fails
// it with CI=true.
func requireBwrap(t testing.TB) {
	t.Helper()
	if mode, why, err := local.ResolveSandbox(local.SandboxAuto, testUser(t)); err != nil || mode != local.SandboxBwrap {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bubblewrap is not usable (CI=true forbids skipping): %v %v", why, err)
		}
		t.Skipf("bubblewrap is not usable here: %v", why)
	}
}

func conformance(t *testing.T, warm int, sandbox string) {
	clustertest.Run(t, func(t *testing.T) clustertest.Env {
		repos := t.TempDir()
		c, err := local.New(local.Config{Dir: t.TempDir(), RepoPath: func(id string) string { return filepath.Join(repos, id+".git") },
			CredentialHelper: "!true", Log: slog.New(slog.NewTextHandler(testLogOut(), nil)), WarmWorkspaces: warm, Executable: testExecutable(t), Sandbox: sandbox, User: testUser(t)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return clustertest.Env{Cluster: c, ReportsPIDs: true, NewProject: func(t *testing.T, id string, comps ...rdev.Component) *rdev.Project {
			src := t.TempDir()
			run(t, src, "init", "-q", "-b", "main")
			os.WriteFile(filepath.Join(src, "README"), []byte("hi\n"), 0o644)
			run(t, src, "add", ".")
			run(t, src, "commit", "-q", "-m", "first")
			run(t, src, "checkout", "-q", "-b", "feature")
			os.WriteFile(filepath.Join(src, "feature.txt"), []byte("feature\n"), 0o644)
			run(t, src, "add", ".")
			run(t, src, "commit", "-q", "-m", "feature")
			run(t, src, "checkout", "-q", "main")
			run(t, "", "clone", "-q", "--bare", src, filepath.Join(repos, id+".git"))
			p := &rdev.Project{ID: id, Name: id, DefaultBranch: "main", Components: comps}
			p.Normalize()
			return p
		}}
	})
}

func run(t testing.TB, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	// No background gc: it would still be writing when the test removes
	// its folders.
	cmd.Env = append(os.Environ(), "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=gc.auto", "GIT_CONFIG_VALUE_0=0", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}
