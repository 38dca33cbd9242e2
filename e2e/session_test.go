package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rdev.dev/rdev/client"
)

// procsWithEnv lists the pids whose environment holds kv.
func procsWithEnv(kv string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, v := range bytes.Split(b, []byte{0}) {
			if string(v) == kv {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// TestSessionEndToEnd: deploy, a session on a new branch, rdev exec with
// its streams and exit code, a push from inside the workspace that obeys
// the branch rule, and a check-in that leaves no process behind.
func TestSessionEndToEnd(t *testing.T) {
	for _, sandbox := range []string{"bwrap", "none"} {
		t.Run(sandbox, func(t *testing.T) {
			if sandbox == "bwrap" {
				if _, err := exec.LookPath("bwrap"); err != nil {
					if os.Getenv("CI") == "true" {
						t.Fatal("bubblewrap is not installed (CI=true forbids skipping)")
					}
					t.Skip("bubblewrap is not installed")
				}
			}
			testSessionEndToEnd(t, sandbox)
		})
	}
}

func testSessionEndToEnd(t *testing.T, sandbox string) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data, "--sandbox", sandbox)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	c := s.client(t, admin)
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t)}); err != nil {
		t.Fatal(err)
	}
	cfg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg, "RDEV_SERVER=" + s.URL, "RDEV_TOKEN=" + admin}
	if _, errOut, code := cli(t, env, "session", "create", "web", "--new-branch", "agent/e2e"); code == 0 || !strings.Contains(errOut, "project pod is not running") {
		t.Fatalf("session before deploy: %d %s", code, errOut)
	}
	if _, err := c.Deploy(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, env, "session", "create", "web", "--new-branch", "agent/e2e")
	if code != 0 {
		t.Fatalf("session create: %s %s", out, errOut)
	}
	sid := strings.Fields(strings.TrimPrefix(out, "Session "))[0]

	t.Run("ExecStreamsAndExitCode", func(t *testing.T) {
		out, errOut, code := cli(t, env, "exec", sid, "--", "echo out; echo err >&2; exit 3")
		if out != "out\n" || errOut != "err\n" || code != 3 {
			t.Fatalf("exec: stdout %q stderr %q code %d", out, errOut, code)
		}
		out, _, code = cli(t, env, "exec", "web/"+sid, "--", "git", "rev-parse", "--abbrev-ref", "HEAD")
		if out != "agent/e2e\n" || code != 0 {
			t.Fatalf("workspace branch: %q %d", out, code)
		}
	})

	t.Run("PushFromTheWorkspaceObeysTheBranchRule", func(t *testing.T) {
		script := `git -c user.name=a -c user.email=a@b commit -q --allow-empty -m from-session && git push -q origin agent/e2e`
		if out, errOut, code := cli(t, env, "exec", sid, "--", script); code != 0 {
			t.Fatalf("push of its branch: %d %s %s", code, out, errOut)
		}
		_, errOut, code := cli(t, env, "exec", sid, "--", "git push origin HEAD:main")
		if code == 0 || !strings.Contains(errOut, "may push only to refs/heads/agent/e2e") {
			t.Fatalf("push to main from the workspace: %d %s", code, errOut)
		}
		if b, _ := os.ReadFile(filepath.Join(data, "pods", "web", "sessions", sid, ".git", "config")); strings.Contains(string(b), "rdevco_") {
			t.Fatal("the checkout token is in the workspace's .git/config")
		}
	})

	t.Run("SandboxHidesTheDataDirectory", func(t *testing.T) {
		_, _, code := cli(t, env, "exec", sid, "--", "cat "+filepath.Join(data, "admin.key"))
		if (sandbox == "bwrap") != (code != 0) {
			t.Fatalf("reading admin.key from a command (sandbox %s): exit %d", sandbox, code)
		}
	})

	t.Run("CheckinLeavesNoProcess", func(t *testing.T) {
		if _, err := c.RunCommand(ctx, "web", sid, client.CommandRequest{Command: "sleep 300 & sleep 300 & wait"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return len(procsWithEnv("RDEV_SESSION="+sid)) >= 3 })
		out, _, code := cli(t, env, "session", "checkin", sid)
		if code != 0 || !strings.Contains(out, "Session ended. Review task queued.") || !strings.Contains(out, "Review task: t") {
			t.Fatalf("checkin: %d %s", code, out)
		}
		if pids := procsWithEnv("RDEV_SESSION=" + sid); len(pids) != 0 {
			t.Fatalf("processes of the session left after check-in: %v", pids)
		}
		if _, err := os.Stat(filepath.Join(data, "pods", "web", "sessions", sid)); !os.IsNotExist(err) {
			t.Fatal("the workspace is still there")
		}
	})
	s.stop()
}

// TestKilledServerLosesCommandsKeepsOutput: kill -9 of the server while
// three commands run; after a restart the session is intact and the three
// commands are lost, with their output up to then replayable.
func TestKilledServerLosesCommandsKeepsOutput(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	c := s.client(t, admin)
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	sess, err := c.CreateSession(ctx, "web", client.SessionRequest{NewBranch: "agent/k9"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i := range 3 {
		cmd, err := c.RunCommand(ctx, "web", sess.ID, client.CommandRequest{Command: "echo before-" + strconv.Itoa(i) + "; sleep 300"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, cmd.ID)
	}
	// Their output is stored before the kill.
	for _, id := range ids {
		waitFor(t, func() bool {
			cm, err := c.GetCommand(ctx, "web", sess.ID, id)
			return err == nil && cm.Bytes > 0
		})
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.wait(10 * time.Second)

	s = start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	// The restart kills what the lost commands left running.
	waitFor(t, func() bool { return len(procsWithEnv("RDEV_SESSION="+sess.ID)) == 0 })
	c = s.client(t, admin)
	got, err := c.GetSession(ctx, "web", sess.ID)
	if err != nil || got.Status != "active" {
		t.Fatalf("session after restart: %+v %v", got, err)
	}
	for i, id := range ids {
		cm, err := c.GetCommand(ctx, "web", sess.ID, id)
		if err != nil || cm.Status != "lost" {
			t.Fatalf("command %s: %+v %v", id, cm, err)
		}
		var out bytes.Buffer
		exit, err := c.Follow(ctx, "web", sess.ID, id, 0, func(e client.Event) error {
			if e.Type == "stdout" {
				out.Write(e.Data)
			}
			return nil
		})
		if err != nil || exit.Reason != "lost" || out.String() != "before-"+strconv.Itoa(i)+"\n" {
			t.Fatalf("replay of %s: %q %+v %v", id, out.String(), exit, err)
		}
	}
	// The restarted server runs new commands in the same session.
	res, err := c.RunCommandWait(ctx, "web", sess.ID, client.CommandRequest{Argv: []string{"echo", "again"}})
	if err != nil || res.Stdout != "again\n" {
		t.Fatal(res, err)
	}
	s.stop()
}
