// Package clustertest is the conformance suite every cluster.Cluster
// passes: the local backend here, the Kubernetes backend later.
package clustertest

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// Env is one cluster under test and how to make projects for it.
type Env struct {
	Cluster cluster.Cluster
	// NewProject registers a project whose repository has a commit on
	// main and a branch "feature".
	NewProject func(t *testing.T, id string, components ...rdev.Component) *rdev.Project
	// CloneURL is the project's URL on the git host workspaces clone from,
	// which accepts the checkout token "tok" (a placeholder when nil: the
	// local backend clones from the repository on disk).
	CloneURL func(projectID string) string
	// ReportsPIDs says the backend knows its components' process ids (the
	// local one does; Kubernetes keeps them in the nodes).
	ReportsPIDs bool
}

func (e Env) cloneURL(id string) string {
	if e.CloneURL != nil {
		return e.CloneURL(id)
	}
	return "http://rdev.test/git/" + id + ".git"
}

// Run runs the suite.
func Run(t *testing.T, newEnv func(t *testing.T) Env) {
	ctx := context.Background()
	t.Run("NotRunningUntilDeployed", func(t *testing.T) {
		e := newEnv(t)
		e.NewProject(t, "idle")
		if _, err := e.Cluster.RunningPod(ctx, "idle"); !errors.Is(err, rdev.ErrPodNotRunning) {
			t.Fatalf("RunningPod before deploy: %v", err)
		}
		st, err := e.Cluster.Status(ctx, "idle")
		if err != nil || st.Running {
			t.Fatalf("status before deploy: %+v %v", st, err)
		}
	})
	t.Run("DeployRunsComponents", func(t *testing.T) {
		e := newEnv(t)
		p := e.NewProject(t, "web", rdev.Component{Name: "app", Command: "sleep 60"}, rdev.Component{Name: "crashy", Command: "exit 7"})
		if err := e.Cluster.Deploy(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Cluster.Undeploy(ctx, "web") })
		pod, err := e.Cluster.RunningPod(ctx, "web")
		if err != nil || pod == "" {
			t.Fatalf("RunningPod: %q %v", pod, err)
		}
		waitFor(t, func() bool {
			st, _ := e.Cluster.Status(ctx, "web")
			var app, crashy cluster.Process
			for _, pr := range st.Processes {
				switch pr.Component {
				case "app":
					app = pr
				case "crashy":
					crashy = pr
				}
			}
			return st.Running && app.State == cluster.StateRunning && (app.PID > 0 || !e.ReportsPIDs) &&
				crashy.Restarts >= 1 && crashy.LastExit != nil && *crashy.LastExit == 7
		})
	})
	t.Run("LabelsAndList", func(t *testing.T) {
		e := newEnv(t)
		p := e.NewProject(t, "lab", rdev.Component{Name: "app", Command: "sleep 60"})
		if err := e.Cluster.Deploy(ctx, p); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Cluster.Undeploy(ctx, "lab") })
		if _, err := e.Cluster.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "lab", SessionID: "s1", Branch: "feature", CloneURL: e.cloneURL("lab"), Token: "tok"}); err != nil {
			t.Fatal(err)
		}
		rs, err := e.Cluster.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]bool{}
		for _, r := range rs {
			if r.Labels[cluster.LabelManagedBy] != "rdev" || r.Labels[cluster.LabelProject] != "lab" || r.CreatedAt.IsZero() {
				t.Errorf("resource %+v lacks its labels or time", r)
			}
			if r.Kind == "workspace" && r.Labels[cluster.LabelSession] != "s1" {
				t.Errorf("workspace without its session label: %+v", r)
			}
			if r.Kind == "process" && r.Labels[cluster.LabelComponent] != "app" {
				t.Errorf("process without its component label: %+v", r)
			}
			kinds[r.Kind] = true
		}
		if len(kinds) < 2 {
			t.Fatalf("listed kinds %v", kinds)
		}
	})
	t.Run("DeleteSelectedRemovesOnlyTheProject", func(t *testing.T) {
		e := newEnv(t)
		for _, id := range []string{"gone", "kept"} {
			if err := e.Cluster.Deploy(ctx, e.NewProject(t, id, rdev.Component{Name: "app", Command: "sleep 60"})); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { e.Cluster.Undeploy(ctx, "kept") })
		if err := e.Cluster.DeleteSelected(ctx, cluster.ProjectLabels("gone")); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Cluster.RunningPod(ctx, "gone"); !errors.Is(err, rdev.ErrPodNotRunning) {
			t.Fatalf("gone still running: %v", err)
		}
		if _, err := e.Cluster.RunningPod(ctx, "kept"); err != nil {
			t.Fatalf("kept: %v", err)
		}
		// What a backend deletes asynchronously (a pod's grace period, the
		// pods of a deleted Deployment) must be gone soon after.
		waitFor(t, func() bool {
			rs, err := e.Cluster.List(ctx)
			if err != nil {
				return false
			}
			for _, r := range rs {
				if r.Labels[cluster.LabelProject] == "gone" {
					return false
				}
			}
			return true
		})
		if _, err := e.Cluster.RunningPod(ctx, "kept"); err != nil {
			t.Fatalf("kept after the other's deletion: %v", err)
		}
	})
	t.Run("DeleteOneResource", func(t *testing.T) {
		e := newEnv(t)
		if err := e.Cluster.Deploy(ctx, e.NewProject(t, "del", rdev.Component{Name: "app", Command: "sleep 60"})); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Cluster.Undeploy(ctx, "del") })
		for _, sid := range []string{"s1", "s2"} {
			if _, err := e.Cluster.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "del", SessionID: sid, Branch: "feature", CloneURL: e.cloneURL("del"), Token: "tok"}); err != nil {
				t.Fatal(err)
			}
		}
		find := func(kind, session string) *cluster.Resource {
			rs, err := e.Cluster.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs {
				if r.Kind == kind && r.Labels[cluster.LabelSession] == session {
					return &r
				}
			}
			return nil
		}
		// Where workspaces are resources of their own (local), one
		// session's goes; the other and the pod stay.
		if ws := find("workspace", "s1"); ws != nil {
			if err := e.Cluster.Delete(ctx, *ws); err != nil {
				t.Fatal(err)
			}
			if err := e.Cluster.Delete(ctx, *ws); err != nil {
				t.Fatalf("deleting it again: %v", err)
			}
			if find("workspace", "s1") != nil || find("workspace", "s2") == nil {
				t.Fatal("wrong workspace removed")
			}
			if _, err := e.Cluster.RunningPod(ctx, "del"); err != nil {
				t.Fatalf("the pod went with a workspace: %v", err)
			}
		}
		// Every resource deleted one by one (twice: a resource already gone
		// is not an error) leaves nothing, and no running pod.
		rs, err := e.Cluster.List(ctx)
		if err != nil || len(rs) == 0 {
			t.Fatalf("listed %v %v", rs, err)
		}
		for _, r := range rs {
			for range 2 {
				if err := e.Cluster.Delete(ctx, r); err != nil {
					t.Fatalf("delete %s %s: %v", r.Kind, r.Name, err)
				}
			}
		}
		waitFor(t, func() bool {
			left, err := e.Cluster.List(ctx)
			return err == nil && len(left) == 0
		})
		if _, err := e.Cluster.RunningPod(ctx, "del"); !errors.Is(err, rdev.ErrPodNotRunning) {
			t.Fatalf("a pod runs after every resource was deleted: %v", err)
		}
	})
	t.Run("WorkspaceIsTheBranch", func(t *testing.T) {
		e := newEnv(t)
		if err := e.Cluster.Deploy(ctx, e.NewProject(t, "ws")); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Cluster.Undeploy(ctx, "ws") })
		for _, sid := range []string{"s1", "s2"} {
			w, err := e.Cluster.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "ws", SessionID: sid, Branch: "feature", CloneURL: e.cloneURL("ws"), Token: "tok"})
			if err != nil || w.Path == "" {
				t.Fatal(w, err)
			}
			p, err := e.Cluster.Exec(ctx, cluster.ExecSpec{ProjectID: "ws", SessionID: sid,
				Argv: []string{"/bin/sh", "-c", "git rev-parse --abbrev-ref HEAD; git rev-parse --abbrev-ref @{upstream}; cat feature.txt; git status --porcelain | wc -l; git remote get-url origin; " +
					// The session owns all of it: it changes files kept from a
					// ready checkout and rewritten for the branch, and commits.
					"echo x >> README && echo y >> feature.txt && git add -A && git -c user.name=a -c user.email=a@example.com commit -qm w && echo committed; " +
					"find . ! -user \"$(id -u)\" | wc -l"}})
			if err != nil {
				t.Fatal(err)
			}
			out, _ := io.ReadAll(io.MultiReader(p.Stdout(), p.Stderr()))
			p.Wait()
			if string(out) != "feature\norigin/feature\nfeature\n0\n"+e.cloneURL("ws")+"\ncommitted\n0\n" {
				t.Fatalf("workspace %s: %q", sid, out)
			}
		}
		if err := e.Cluster.RemoveWorkspace(ctx, "ws", "s2"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Cluster.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "ws", SessionID: "s3", Branch: "nope", CloneURL: e.cloneURL("ws"), Token: "tok"}); err == nil {
			t.Fatal("a workspace of a missing branch was prepared")
		}
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
