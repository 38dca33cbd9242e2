package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"rdev.dev/rdev/client"
)

// TestCheckoutCLI is the README's checkout flow: `rdev checkout create`
// saves the token, git clones and pushes through `rdev git-credential`
// without the token anywhere in its configuration, and `rdev checkout
// checkin` revokes it.
func TestCheckoutCLI(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	if _, err := s.client(t, admin).CreateProject(context.Background(), client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t)}); err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg}
	run := func(args ...string) string {
		t.Helper()
		out, errOut, code := cli(t, env, args...)
		if code != 0 {
			t.Fatalf("rdev %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	run("login", "--server", s.URL, "--token", admin)
	out := run("checkout", "create", "web", "--new-branch", "agent/cli", "--slug", "cli")
	id := regexp.MustCompile(`as (c[a-z2-7]{16})`).FindStringSubmatch(out)
	if id == nil || !strings.Contains(out, "rdevco_") {
		t.Fatalf("create printed:\n%s", out)
	}
	if fi, err := os.Stat(filepath.Join(cfg, "rdev", "checkouts.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved tokens: %v %v", fi, err)
	}

	git := func(dir string, args ...string) (string, error) {
		full := append([]string{"-c", "credential.helper=", "-c", "credential.helper=!" + binary + " git-credential",
			"-c", "credential.useHttpPath=true"}, args...)
		cmd := exec.Command("git", full...)
		cmd.Dir = dir
		cmd.Env = gitEnv("XDG_CONFIG_HOME=" + cfg)
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	dir := t.TempDir()
	if out, err := git(dir, "clone", "-q", "--branch", "agent/cli", s.URL+"/git/web.git", "w"); err != nil {
		t.Fatalf("clone: %v\n%s", err, out)
	}
	w := filepath.Join(dir, "w")
	os.WriteFile(filepath.Join(w, "cli"), []byte("cli\n"), 0o644)
	git(w, "add", ".")
	git(w, "commit", "-q", "-m", "from the cli flow")
	if out, err := git(w, "push", "-q", "origin", "agent/cli"); err != nil {
		t.Fatalf("push with the saved checkout token: %v\n%s", err, out)
	}
	// The saved token is the checkout's, not the admin key: main is refused.
	if out, err := git(w, "push", "origin", "HEAD:main"); err == nil || !strings.Contains(out, "may push only to refs/heads/agent/cli") {
		t.Fatalf("push to main: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(filepath.Join(w, ".git", "config"))
	if strings.Contains(string(b), "rdevco_") || strings.Contains(string(b), admin) {
		t.Fatal("a credential was written into .git/config")
	}

	out = run("checkout", "list", "web")
	if !regexp.MustCompile(`(?m)^` + id[1] + `\s+agent/cli\s+active`).MatchString(out) {
		t.Fatalf("list printed:\n%s", out)
	}
	out = run("checkout", "checkin", "web", id[1], "--auto-merge")
	if !strings.Contains(out, "Checkout checked in. Token revoked. Review task queued.") || !strings.Contains(out, "Review task: t") {
		t.Fatalf("checkin printed:\n%s", out)
	}
	_, errOut, code := cli(t, env, "checkout", "checkin", "web", id[1])
	if code == 0 || !strings.Contains(errOut, "checkout is not active") {
		t.Fatalf("second checkin: %d %s", code, errOut)
	}
	s.stop()
}
