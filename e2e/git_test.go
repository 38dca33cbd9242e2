package e2e

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/rdev"
)

// gitEnv is a clean environment for the git client: no user config, no
// prompts.
func gitEnv(extra ...string) []string {
	return append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.TempDir(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_NAME=agent", "GIT_AUTHOR_EMAIL=agent@example.com",
		"GIT_COMMITTER_NAME=agent", "GIT_COMMITTER_EMAIL=agent@example.com"}, extra...)
}

// git runs the git client in dir with token as its credential (through
// rdev's credential helper) and returns its combined output and error.
func gitAs(t *testing.T, dir, token string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"-c", "credential.helper=", "-c", "credential.helper=!" + binary + " git-credential",
		"-c", "protocol.version=2"}, args...)
	cmd := exec.Command("git", full...)
	cmd.Dir = dir
	cmd.Env = gitEnv("RDEV_GIT_TOKEN=" + token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustGit(t *testing.T, dir, token string, args ...string) string {
	t.Helper()
	out, err := gitAs(t, dir, token, args...)
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// sourceRepo makes a repository with main, dev and feature/x, and tags
// v1 and v2.
func sourceRepo(t *testing.T) string {
	dir := t.TempDir()
	mustGit(t, dir, "", "init", "-q", "-b", "main")
	commit := func(name string) {
		os.WriteFile(filepath.Join(dir, name), []byte(name+"\n"), 0o644)
		mustGit(t, dir, "", "add", ".")
		mustGit(t, dir, "", "commit", "-q", "-m", name)
	}
	commit("readme")
	mustGit(t, dir, "", "tag", "v1")
	mustGit(t, dir, "", "checkout", "-q", "-b", "dev")
	commit("dev")
	mustGit(t, dir, "", "tag", "-a", "v2", "-m", "two")
	mustGit(t, dir, "", "checkout", "-q", "-b", "feature/x", "main")
	commit("x")
	mustGit(t, dir, "", "checkout", "-q", "main")
	return dir
}

// repoState lists the refs and every file of a bare repository: what must
// not change when a push is refused.
func repoState(t *testing.T, dir string) string {
	var files []string
	filepath.WalkDir(filepath.Join(dir, "objects"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files)
	refs := mustGit(t, dir, "", "for-each-ref")
	return refs + strings.Join(files, "\n")
}

func TestGitHosting(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	c := s.client(t, admin)
	ctx := context.Background()
	src := sourceRepo(t)
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: src, ProtectedBranches: []string{"release/*"}}); err != nil {
		t.Fatal(err)
	}
	url := s.URL + "/git/web.git"
	bare := filepath.Join(data, "repos", "web.git")

	t.Run("ImportKeepsEveryBranchAndTag", func(t *testing.T) {
		out := mustGit(t, t.TempDir(), admin, "ls-remote", url)
		for _, ref := range []string{"refs/heads/main", "refs/heads/dev", "refs/heads/feature/x", "refs/tags/v1", "refs/tags/v2"} {
			if !strings.Contains(out, ref+"\n") {
				t.Errorf("%s missing after import:\n%s", ref, out)
			}
		}
	})

	write := mustKey(t, c, "writer", rdev.ScopeProjectsWrite)
	read := mustKey(t, c, "reader", rdev.ScopeProjectsRead)

	t.Run("WriteKeyClonesFetchesPushes", func(t *testing.T) {
		dir := t.TempDir()
		mustGit(t, dir, write, "clone", "-q", url, "w")
		w := filepath.Join(dir, "w")
		os.WriteFile(filepath.Join(w, "new"), []byte("new\n"), 0o644)
		mustGit(t, w, write, "add", ".")
		mustGit(t, w, write, "commit", "-q", "-m", "by a write key")
		mustGit(t, w, write, "push", "-q", "origin", "main", "main:refs/heads/other", "HEAD:refs/tags/w1")
		mustGit(t, w, write, "fetch", "-q", "origin")
		mustGit(t, w, write, "push", "-q", "origin", ":refs/heads/other")
	})

	t.Run("MalformedObjectsRefused", func(t *testing.T) {
		// A tree with a ".git" entry: checked out, it would replace the
		// repository's own metadata (how hooks get planted). git's fsck
		// calls it an error; rdev's receive-pack checks every object.
		dir := t.TempDir()
		mustGit(t, dir, write, "clone", "-q", url, "m")
		m := filepath.Join(dir, "m")
		blob := strings.TrimSpace(mustGit(t, m, write, "hash-object", "-w", "--stdin"))
		raw, err := hex.DecodeString(blob)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("git", "hash-object", "-w", "--literally", "-t", "tree", "--stdin")
		cmd.Dir, cmd.Env = m, gitEnv()
		cmd.Stdin = strings.NewReader("100644 .git\x00" + string(raw))
		tree, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		commit := strings.TrimSpace(mustGit(t, m, write, "commit-tree", "-m", "evil", strings.TrimSpace(string(tree))))
		out, err := gitAs(t, m, write, "push", "origin", commit+":refs/heads/evil")
		if err == nil || !strings.Contains(out, "hasDotgit") {
			t.Fatalf("push of a tree with a .git entry: %v\n%s", err, out)
		}
		if out, _ := gitAs(t, m, write, "ls-remote", url, "refs/heads/evil"); strings.TrimSpace(out) != "" {
			t.Fatalf("the branch was created: %s", out)
		}
	})

	t.Run("ReadKeyClonesButCannotPush", func(t *testing.T) {
		dir := t.TempDir()
		mustGit(t, dir, read, "clone", "-q", url, "r")
		r := filepath.Join(dir, "r")
		mustGit(t, r, read, "commit", "-q", "--allow-empty", "-m", "x")
		out, err := gitAs(t, r, read, "push", "origin", "main")
		if err == nil || !strings.Contains(out, "may clone and fetch but not push") {
			t.Fatalf("push with a read key: %v\n%s", err, out)
		}
	})

	t.Run("NoOrBadCredential", func(t *testing.T) {
		out, err := gitAs(t, t.TempDir(), "", "ls-remote", url)
		if err == nil || !strings.Contains(out, "Authentication failed") && !strings.Contains(out, "could not read Username") {
			t.Fatalf("no credential: %v\n%s", err, out)
		}
		out, err = gitAs(t, t.TempDir(), "rdev_kaaaaaaaaaaaaaaaa_nope", "ls-remote", url)
		if err == nil {
			t.Fatalf("bad key accepted:\n%s", out)
		}
		other := mustKeyFor(t, c, "other", []string{"api"}, rdev.ScopeProjectsWrite)
		out, err = gitAs(t, t.TempDir(), other, "ls-remote", url)
		if err == nil || !strings.Contains(out, "not found") {
			t.Fatalf("key outside the allow-list: %v\n%s", err, out)
		}
	})

	t.Run("CheckoutToken", func(t *testing.T) {
		co, err := c.CreateCheckout(ctx, "web", client.CheckoutRequest{NewBranch: "agent/task-1", FeatureSlug: "task-1"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(co.AuthCloneURL, co.Token) || strings.Contains(co.CloneURL, co.Token) || !strings.Contains(co.Instructions, "git-credential") {
			t.Fatalf("urls/instructions: %+v", co)
		}
		dir := t.TempDir()
		mustGit(t, dir, co.Token, "clone", "-q", "--branch", "agent/task-1", url, "a")
		a := filepath.Join(dir, "a")
		if b, _ := os.ReadFile(filepath.Join(a, ".git", "config")); strings.Contains(string(b), co.Token) {
			t.Fatal("the token was written into .git/config")
		}
		os.WriteFile(filepath.Join(a, "work"), []byte("work\n"), 0o644)
		mustGit(t, a, co.Token, "add", ".")
		mustGit(t, a, co.Token, "commit", "-q", "-m", "agent work")
		mustGit(t, a, co.Token, "push", "-q", "origin", "agent/task-1")

		refused := []struct {
			name string
			args []string
			want string
		}{
			{"DefaultBranch", []string{"push", "origin", "HEAD:main"}, "may push only to refs/heads/agent/task-1"},
			{"OtherBranch", []string{"push", "--force", "origin", "HEAD:refs/heads/dev"}, "may push only to refs/heads/agent/task-1"},
			{"NewBranch", []string{"push", "origin", "HEAD:refs/heads/agent/sneaky"}, "may push only to refs/heads/agent/task-1"},
			{"Tag", []string{"push", "origin", "HEAD:refs/tags/t1"}, "may push only to refs/heads/agent/task-1"},
			{"DeleteOther", []string{"push", "origin", ":refs/heads/feature/x"}, "may push only to refs/heads/agent/task-1"},
			{"DeleteOwn", []string{"push", "origin", ":refs/heads/agent/task-1"}, "cannot delete branches"},
		}
		for _, tc := range refused {
			t.Run(tc.name, func(t *testing.T) {
				before := repoState(t, bare)
				out, err := gitAs(t, a, co.Token, tc.args...)
				if err == nil || !strings.Contains(out, tc.want) {
					t.Fatalf("%v: want a refusal saying %q, got %v\n%s", tc.args, tc.want, err, out)
				}
				if after := repoState(t, bare); after != before {
					t.Fatalf("a refused push changed the repository on disk")
				}
			})
		}

		res, err := c.CheckinCheckout(ctx, "web", co.ID, client.CheckinRequest{AutoMerge: true})
		if err != nil || res.ReviewTaskID == "" {
			t.Fatal(res, err)
		}
		mustGit(t, a, co.Token, "commit", "-q", "--allow-empty", "-m", "too late")
		out, err := gitAs(t, a, co.Token, "push", "origin", "agent/task-1")
		// Refused with a message git shows, naming the checkout.
		if err == nil || !strings.Contains(out, "checkout "+co.ID+" is checked in") {
			t.Fatalf("push after check-in: %v\n%s", err, out)
		}
		if code := httpStatus(t, url+"/info/refs?service=git-upload-pack", co.Token); code != 403 {
			t.Fatalf("token after check-in: %d, want 403", code)
		}
	})

	t.Run("TokenExpires", func(t *testing.T) {
		co, err := c.CreateCheckout(ctx, "web", client.CheckoutRequest{NewBranch: "agent/short", ExpiresIn: "2s"})
		if err != nil {
			t.Fatal(err)
		}
		if code := httpStatus(t, url+"/info/refs?service=git-upload-pack", co.Token); code != 200 {
			t.Fatalf("fresh token: %d", code)
		}
		waitFor(t, func() bool { return httpStatus(t, url+"/info/refs?service=git-upload-pack", co.Token) == 403 })
	})

	t.Run("ProtectedPattern", func(t *testing.T) {
		mustGit(t, src, write, "push", "-q", url, "main:refs/heads/release/1")
		for _, req := range []client.CheckoutRequest{{Branch: "release/1"}, {NewBranch: "release/2"}, {Branch: "main"}} {
			_, err := c.CreateCheckout(ctx, "web", req)
			var ce *client.Error
			if !errors.As(err, &ce) || ce.Status != 400 || ce.Message != "cannot checkout protected branch" {
				t.Fatalf("checkout %+v: %v", req, err)
			}
		}
		// A branch that becomes protected after its checkout: the token
		// can no longer push to it.
		co, err := c.CreateCheckout(ctx, "web", client.CheckoutRequest{NewBranch: "hotfix/1"})
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		mustGit(t, dir, co.Token, "clone", "-q", "--branch", "hotfix/1", url, "h")
		h := filepath.Join(dir, "h")
		mustGit(t, h, co.Token, "commit", "-q", "--allow-empty", "-m", "fix")
		prot := []string{"release/*", "hotfix/*"}
		if _, err := c.PatchProject(ctx, "web", client.ProjectPatch{ProtectedBranches: &prot}); err != nil {
			t.Fatal(err)
		}
		before := repoState(t, bare)
		out, err := gitAs(t, h, co.Token, "push", "origin", "hotfix/1")
		if err == nil || !strings.Contains(out, "has become protected") {
			t.Fatalf("push to a now-protected branch: %v\n%s", err, out)
		}
		out, err = gitAs(t, h, co.Token, "push", "origin", "HEAD:refs/heads/release/9")
		if err == nil || !strings.Contains(out, "protected") {
			t.Fatalf("push to a protected pattern: %v\n%s", err, out)
		}
		if repoState(t, bare) != before {
			t.Fatal("a refused push changed the repository on disk")
		}
	})

	t.Run("PathTricks", func(t *testing.T) {
		for _, p := range []string{"/git/../x.git/info/refs?service=git-upload-pack", "/git/%2e%2e/web.git/info/refs?service=git-upload-pack",
			"/git/web.git/../../etc/passwd", "/git/web.git/HEAD", "/git/web.git/objects/info/packs", "/git/web/info/refs?service=git-upload-pack",
			"/git/Web.git/info/refs?service=git-upload-pack", "/git/web.git/info/refs?service=git-upload-archive", "/git/.git/info/refs?service=git-upload-pack"} {
			if code := httpStatus(t, s.URL+p, admin); code != 404 {
				t.Errorf("%s: %d, want 404", p, code)
			}
		}
	})

	t.Run("DeletingTheProjectRemovesTheRepository", func(t *testing.T) {
		co, err := c.CreateCheckout(ctx, "web", client.CheckoutRequest{NewBranch: "agent/last"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.DeleteProject(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(bare); !os.IsNotExist(err) {
			t.Fatalf("repository still on disk: %v", err)
		}
		if code := httpStatus(t, url+"/info/refs?service=git-upload-pack", admin); code != 404 {
			t.Fatalf("git after delete: %d", code)
		}
		if code := httpStatus(t, url+"/info/refs?service=git-upload-pack", co.Token); code != 401 {
			t.Fatalf("checkout token after delete: %d", code)
		}
	})
	s.stop()
}

func httpStatus(t *testing.T, u, token string) int {
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.SetBasicAuth("x", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mustKey(t *testing.T, c *client.Client, name string, scopes ...rdev.Scope) string {
	return mustKeyFor(t, c, name, nil, scopes...)
}

func mustKeyFor(t *testing.T, c *client.Client, name string, projects []string, scopes ...rdev.Scope) string {
	t.Helper()
	k, err := c.CreateKey(context.Background(), client.KeyRequest{Name: name, Scopes: scopes, Projects: projects})
	if err != nil {
		t.Fatal(err)
	}
	return k.Token
}

var _ = fmt.Sprint
var _ = time.Second
