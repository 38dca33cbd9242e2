package local_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/rdev"
)

// TestSandbox runs the same probes with bubblewrap and without: sandboxed,
// a command cannot read rdev's data directory or another project's
// workspace, cannot signal the server, and has a private /tmp; unsandboxed
// it can (which shows the probes mean something).
func TestSandbox(t *testing.T) {
	mode, err := local.ResolveSandbox(local.SandboxAuto)
	if err != nil || mode != local.SandboxBwrap {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bubblewrap is not usable (CI=true forbids skipping): %v", err)
		}
		t.Skip("bubblewrap is not usable here")
	}
	for _, sandbox := range []string{local.SandboxBwrap, local.SandboxNone} {
		t.Run(sandbox, func(t *testing.T) {
			data := t.TempDir()
			secret := filepath.Join(data, "admin.key")
			os.WriteFile(secret, []byte("secret"), 0o600)
			repos := filepath.Join(data, "repos")
			c, err := local.New(local.Config{Dir: filepath.Join(data, "pods"), RepoPath: func(id string) string { return filepath.Join(repos, id+".git") },
				CredentialHelper: "!true", Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Sandbox: sandbox, DataDir: data})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			ctx := context.Background()
			for _, id := range []string{"mine", "theirs"} {
				src := t.TempDir()
				run(t, src, "init", "-q", "-b", "main")
				os.WriteFile(filepath.Join(src, "README"), []byte(id+"\n"), 0o644)
				run(t, src, "add", ".")
				run(t, src, "commit", "-q", "-m", "first")
				run(t, "", "clone", "-q", "--bare", src, filepath.Join(repos, id+".git"))
				p := &rdev.Project{ID: id, Name: id, DefaultBranch: "main"}
				p.Normalize()
				if err := c.Deploy(ctx, p); err != nil {
					t.Fatal(err)
				}
				if _, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: id, SessionID: "s-" + id, Branch: "main", CloneURL: "http://x"}); err != nil {
					t.Fatal(err)
				}
			}
			theirs := filepath.Join(c.WorkspacePath("theirs", "s-theirs"), "README")
			sh := func(script string) (string, int) {
				p, err := c.Exec(ctx, cluster.ExecSpec{ProjectID: "mine", SessionID: "s-mine", Argv: []string{"/bin/sh", "-c", script}})
				if err != nil {
					t.Fatal(err)
				}
				out, _ := io.ReadAll(io.MultiReader(p.Stdout(), p.Stderr()))
				code, _, _ := p.Wait()
				return string(out), code
			}
			// Its own workspace works, git included.
			if out, code := sh("cat README && git log --oneline | wc -l && echo x > new && cat new"); code != 0 || out != "mine\n1\nx\n" {
				t.Fatalf("own workspace: %d %q", code, out)
			}
			probes := map[string]string{
				"ReadDataDir":        "cat " + secret,
				"ReadOtherWorkspace": "cat " + theirs,
				"SignalServer":       fmt.Sprintf("kill -0 %d", os.Getpid()),
			}
			for name, script := range probes {
				out, code := sh(script)
				if sandbox == local.SandboxBwrap && code == 0 {
					t.Errorf("%s succeeded in the sandbox: %q", name, out)
				}
				if sandbox == local.SandboxNone && code != 0 {
					t.Errorf("%s failed without a sandbox, so the probe shows nothing: %q", name, out)
				}
			}
			tmp := filepath.Join(os.TempDir(), "rdev-sandbox-probe-"+sandbox)
			os.Remove(tmp)
			sh("echo x > " + tmp)
			_, err = os.Stat(tmp)
			if sandbox == local.SandboxBwrap && err == nil {
				t.Error("the sandbox's /tmp is the host's")
			}
			os.Remove(tmp)
			if out, _ := sh("echo $PPID; ls /proc | grep -c '^[0-9]'"); sandbox == local.SandboxBwrap && !strings.HasPrefix(out, "1\n") && !strings.HasPrefix(out, "2\n") {
				t.Errorf("not in its own PID namespace: %q", out)
			}
		})
	}
}
