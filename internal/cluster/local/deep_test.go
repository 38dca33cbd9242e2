package local_test

import (
	"bytes"
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/rdev"
)

// A data directory deep enough that the pod's and a review's sockets do
// not fit a unix socket address (108 bytes): pods and reviews still run.
func TestDeepDataDirectory(t *testing.T) {
	requireBwrap(t)
	ctx := context.Background()
	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	repos := filepath.Join(deep, "repos")
	egress := func(ln net.Listener, projectID, taskID string) {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}
	c, _ := newWebCluster(t, local.Config{Dir: filepath.Join(deep, "pods"), Sandbox: local.SandboxBwrap, Egress: egress}, repos)
	bare := filepath.Join(repos, "web.git")
	p := &rdev.Project{ID: "web", Name: "web", DefaultBranch: "main"}
	p.Normalize()
	if err := c.Deploy(ctx, p); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Undeploy(ctx, "web") })
	if _, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "web", SessionID: "s1", Branch: "main", CloneURL: "http://rdev.test/git/web.git", Token: "t"}); err != nil {
		t.Fatal(err)
	}
	if out, code := execIn(t, c, "web", "s1", "cat README"); out != "hi\n" || code != 0 {
		t.Fatalf("a command in the deep pod: %q, exit %d", out, code)
	}
	commit, err := exec.Command("git", "-C", bare, "rev-parse", "main").Output()
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	exit, err := c.RunReview(ctx, cluster.ReviewSpec{TaskID: "tdeep", ProjectID: "web", Branch: "main", Commit: strings.TrimSpace(string(commit)),
		Command: "cat README"}, &out, &errOut)
	if err != nil || exit != (cluster.ReviewExit{}) || out.String() != "hi\n" {
		t.Fatalf("a review in the deep data directory: %+v %v, stdout %q, stderr %q", exit, err, out.String(), errOut.String())
	}
}
