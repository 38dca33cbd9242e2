package e2e

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"rdev.dev/rdev/client"
)

// TestSandboxUnavailable: with --sandbox auto and no bubblewrap on the
// PATH, rdev serves its API (ready), and every start of project code
// answers 503 SANDBOX_UNAVAILABLE naming the fix.
func TestSandboxUnavailable(t *testing.T) {
	gitPath, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(gitPath, filepath.Join(bin, "git")); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	s := start(t, []string{"PATH=" + bin}, "--addr", "127.0.0.1:0", "--data", data)
	resp, err := http.Get(s.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/readyz without bubblewrap: %v %v", resp, err)
	}
	resp.Body.Close()
	c := s.client(t, readKey(t, filepath.Join(data, "admin.key")))
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t)}); err != nil {
		t.Fatal(err)
	}
	check := func(what string, err error) {
		t.Helper()
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != 503 || ce.Code != "SANDBOX_UNAVAILABLE" ||
			!strings.Contains(ce.Message, "install") || !strings.Contains(ce.Message, "--sandbox none") {
			t.Fatalf("%s without bubblewrap: %v", what, err)
		}
	}
	_, err = c.Deploy(ctx, "web")
	check("deploy", err)
	_, err = c.CreateSession(ctx, "web", client.SessionRequest{NewBranch: "agent/x"})
	check("session create", err)
}
