package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
		return cliOK(t, env, args...)
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

// TestThreeCheckoutsOneProject: three checkouts of one project, each cloned
// as the printed instructions say (the helper kept in the clone, the URL
// naming the checkout). Each pushes its own branch with its own token;
// once one is checked in its clone's pushes are refused naming the
// checkout, the others still push, and the audit never shows the login key.
func TestThreeCheckoutsOneProject(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	c := s.client(t, admin)
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t)}); err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg}
	run := func(args ...string) string {
		t.Helper()
		return cliOK(t, env, args...)
	}
	run("login", "--server", s.URL, "--token", admin)
	// git as a shell would run it, with rdev on the PATH.
	git := func(dir string, args ...string) (string, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = gitEnv("XDG_CONFIG_HOME="+cfg, "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"))
		b, err := cmd.CombinedOutput()
		return string(b), err
	}
	type co struct{ id, branch, dir string }
	var cos []co
	for _, b := range []string{"agent/a", "agent/b", "agent/c"} {
		var created struct {
			ID           string `json:"id"`
			CloneURL     string `json:"clone_url"`
			Instructions string `json:"instructions"`
		}
		mustDecode(t, run("checkout", "create", "web", "--new-branch", b, "-o", "json"), &created)
		want := "git clone -c credential.helper= -c 'credential.helper=!rdev git-credential' --branch " + b + " " + created.CloneURL
		if !strings.Contains(created.Instructions, want) || !strings.Contains(created.CloneURL, created.ID+"@") {
			t.Fatalf("checkout %s: clone URL %q, instructions:\n%s", b, created.CloneURL, created.Instructions)
		}
		dir := t.TempDir()
		// The printed command, as is.
		if out, err := git(dir, "clone", "-q", "-c", "credential.helper=", "-c", "credential.helper=!rdev git-credential", "--branch", b, created.CloneURL, "w"); err != nil {
			t.Fatalf("clone %s: %v\n%s", b, err, out)
		}
		cos = append(cos, co{created.ID, b, filepath.Join(dir, "w")})
	}
	push := func(x co, n int) (string, error) {
		os.WriteFile(filepath.Join(x.dir, "n"), []byte(strconv.Itoa(n)), 0o644)
		git(x.dir, "add", ".")
		git(x.dir, "commit", "-q", "-m", "change "+strconv.Itoa(n))
		return git(x.dir, "push", "origin", x.branch)
	}
	for i, x := range cos {
		if out, err := push(x, i); err != nil {
			t.Fatalf("%s pushes its branch: %v\n%s", x.branch, err, out)
		}
		// Its token, not another checkout's nor the login key.
		other := cos[(i+1)%3].branch
		if out, err := git(x.dir, "push", "--force", "origin", "HEAD:"+other); err == nil || !strings.Contains(out, "may push only to refs/heads/"+x.branch) {
			t.Fatalf("%s pushing %s: %v\n%s", x.branch, other, err, out)
		}
	}
	// a is checked in with the CLI (its saved token goes); b through the
	// API (its token stays saved, and the server refuses it).
	run("checkout", "checkin", "web", cos[0].id, "--skip-review")
	if _, err := c.CheckinCheckout(ctx, "web", cos[1].id, client.CheckinRequest{SkipReview: true}); err != nil {
		t.Fatal(err)
	}
	for _, x := range cos[:2] {
		out, err := push(x, 10)
		if err == nil || !strings.Contains(out, x.id) {
			t.Fatalf("a push from checked-in %s: %v\n%s", x.id, err, out)
		}
		t.Logf("a push from checked-in %s:\n%s", x.id, out)
	}
	if out, err := push(cos[2], 11); err != nil {
		t.Fatalf("the third checkout after the others ended: %v\n%s", err, out)
	}
	// A URL that names no checkout, with several checkouts saved: the helper
	// does not guess (nor fall back to the login key) and says why.
	out, err := git(t.TempDir(), "clone", "-q", "-c", "credential.helper=", "-c", "credential.helper=!rdev git-credential",
		"-c", "credential.useHttpPath=true", s.URL+"/git/web.git", "plain")
	if err == nil || !strings.Contains(out, "several checkouts of this repository are saved here") {
		t.Fatalf("a clone of the plain URL with several checkouts saved: %v\n%s", err, out)
	}
	// Every push recorded is a checkout's.
	entries, _, err := c.ListAudit(ctx, client.AuditFilter{Target: "project/web/git", ListOptions: client.ListOptions{Limit: 100}})
	if err != nil || len(entries) == 0 {
		t.Fatalf("audit: %v %v", entries, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.KeyID, "checkout/") {
			t.Errorf("a push audited as %s", e.KeyID)
		}
	}
}

// mustDecode decodes the JSON a command printed, or fails.
func mustDecode(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
}
