package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
// the branch rule, and a check-in that leaves no process behind — on the
// local cluster with and without bubblewrap, and on Kubernetes (a real API
// server, controllers and the test node: every command through pods/exec).
func TestSessionEndToEnd(t *testing.T) {
	for _, sandbox := range []string{"bwrap", "none", "kube"} {
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
	args := []string{"--addr", "127.0.0.1:0", "--data", data}
	// The session's workspace, as this machine sees it.
	workspace := func(sid string) string { return filepath.Join(data, "pods", "web", "sessions", sid) }
	if sandbox == "kube" {
		root := t.TempDir()
		args = append(args, "--sandbox", "none", "--cluster", "kube", "--kubeconfig", kubeCluster(t, "rdev"), "--namespace", "rdev",
			"--workspace-image", "rdev-test/workspace", "--workspace-root", root)
		workspace = func(sid string) string { return filepath.Join(root, sid) }
	} else {
		args = append(args, "--sandbox", sandbox)
	}
	s := start(t, nil, args...)
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
	out, errOut, code := cli(t, env, "session", "create", "web", "--new-branch", "agent/e2e", "-o", "json")
	if code != 0 {
		t.Fatalf("session create: %s %s", out, errOut)
	}
	var created struct {
		ID    string `json:"id"`
		Token string `json:"token"`
	}
	if err := json.Unmarshal([]byte(out), &created); err != nil || created.ID == "" || created.Token == "" {
		t.Fatalf("session create -o json: %v %s", err, out)
	}
	sid, sessionToken := created.ID, created.Token
	// An unconfined server says so on every session and status.
	if sess, err := c.GetSession(ctx, "web", sid); err != nil || (sess.Sandbox == "none") != (sandbox == "none") {
		t.Fatalf("session's sandbox field with --sandbox %s: %+v %v", sandbox, sess, err)
	}
	if st, err := c.Status(ctx, "web"); err != nil || (st.Sandbox == "none") != (sandbox == "none") {
		t.Fatalf("status's sandbox field with --sandbox %s: %+v %v", sandbox, st, err)
	}
	var previewCookie, previewHost string

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
		if b, _ := os.ReadFile(filepath.Join(workspace(sid), ".git", "config")); strings.Contains(string(b), "rdevco_") {
			t.Fatal("the checkout token is in the workspace's .git/config")
		}
	})

	t.Run("ResumeTenMegabytesByteExact", func(t *testing.T) {
		cmd, err := c.RunCommand(ctx, "web", sid, client.CommandRequest{Command: "i=0; while [ $i -lt 100000 ]; do printf '%099d\n' $i; i=$((i+1)); done"})
		if err != nil {
			t.Fatal(err)
		}
		// First connection: about half, then drop it.
		var got bytes.Buffer
		cctx, cancel := context.WithCancel(ctx)
		last, _ := c.FollowOnce(cctx, "web", sid, cmd.ID, 0, func(e client.Event) error {
			if got.Len() > 5<<20 {
				// Drop the connection; this event was not taken.
				cancel()
				return context.Canceled
			}
			if e.Type == "stdout" {
				got.Write(e.Data)
			}
			return nil
		})
		cancel()
		if last == 0 || got.Len() < 5<<20 {
			t.Fatalf("first connection read %d bytes up to event %d", got.Len(), last)
		}
		exit, err := c.Follow(ctx, "web", sid, cmd.ID, last, func(e client.Event) error {
			if e.Type == "stdout" {
				got.Write(e.Data)
			}
			return nil
		})
		if err != nil || exit.ExitCode == nil || *exit.ExitCode != 0 {
			t.Fatal(exit, err)
		}
		var want bytes.Buffer
		for i := range 100000 {
			fmt.Fprintf(&want, "%099d\n", i)
		}
		if !bytes.Equal(got.Bytes(), want.Bytes()) {
			t.Fatalf("resumed output: %d bytes, want %d", got.Len(), want.Len())
		}
	})

	t.Run("Preview", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("python3 (the session's web server) is not installed (CI=true forbids skipping)")
			}
			t.Skip("python3 not installed")
		}
		os.WriteFile(filepath.Join(workspace(sid), "hello.txt"), []byte("hello from the session\n"), 0o644)
		if _, err := c.RunCommand(ctx, "web", sid, client.CommandRequest{Command: "exec python3 -m http.server --bind 127.0.0.1 $PORT"}); err != nil {
			t.Fatal(err)
		}
		sess, _ := c.GetSession(ctx, "web", sid)
		u, _ := url.Parse(sess.PreviewURL)
		get := func(path, token, cookie string) (int, string, *http.Response) {
			req, _ := http.NewRequest("GET", s.URL+path, nil)
			req.Host = u.Host
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b), resp
		}
		waitFor(t, func() bool { code, _, _ := get("/hello.txt", admin, ""); return code == 200 })
		if code, body, _ := get("/hello.txt", admin, ""); code != 200 || body != "hello from the session\n" {
			t.Fatalf("with a key: %d %q", code, body)
		}
		if code, _, _ := get("/hello.txt", "", ""); code != 401 {
			t.Fatalf("without a key: %d", code)
		}
		out, _, code := cli(t, env, "preview", sid)
		link, err := url.Parse(strings.TrimSpace(out))
		if code != 0 || err != nil || link.Query().Get("rdev_preview_token") == "" {
			t.Fatalf("rdev preview: %d %q", code, out)
		}
		code, _, resp := get("/hello.txt?"+link.RawQuery, "", "")
		if code != 303 || len(resp.Cookies()) != 1 {
			t.Fatalf("signed link: %d %v", code, resp.Cookies())
		}
		cookie := resp.Cookies()[0].Name + "=" + resp.Cookies()[0].Value
		if code, body, _ := get("/hello.txt", "", cookie); code != 200 || body != "hello from the session\n" {
			t.Fatalf("by cookie: %d %q", code, body)
		}
		previewCookie = cookie
		previewHost = u.Host
	})

	// On Kubernetes rdev's data is in another pod: nothing to hide (the test
	// node runs pods on this machine, so it would be visible here).
	if sandbox != "kube" {
		t.Run("SandboxHidesTheDataDirectory", func(t *testing.T) {
			_, _, code := cli(t, env, "exec", sid, "--", "cat "+filepath.Join(data, "admin.key"))
			if (sandbox == "bwrap") != (code != 0) {
				t.Fatalf("reading admin.key from a command (sandbox %s): exit %d", sandbox, code)
			}
		})
	}

	t.Run("CheckinLeavesNoProcess", func(t *testing.T) {
		if _, err := c.RunCommand(ctx, "web", sid, client.CommandRequest{Command: "sleep 300 & sleep 300 & wait"}); err != nil {
			t.Fatal(err)
		}
		// And one left in the background by a command that has ended.
		if _, err := c.RunCommandWait(ctx, "web", sid, client.CommandRequest{Command: "setsid nohup sleep 300 >/dev/null 2>&1 &"}); err != nil {
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
		if _, err := os.Stat(workspace(sid)); !os.IsNotExist(err) {
			t.Fatal("the workspace is still there")
		}
		// The preview is gone, cookie or key.
		if previewHost != "" {
			for _, hdr := range [][2]string{{"Cookie", previewCookie}, {"Authorization", "Bearer " + admin}} {
				req, _ := http.NewRequest("GET", s.URL+"/hello.txt", nil)
				req.Host = previewHost
				req.Header.Set(hdr[0], hdr[1])
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 404 {
					t.Fatalf("preview after check-in with %s: %d", hdr[0], resp.StatusCode)
				}
			}
		}
		// The session's token is refused.
		if code := httpStatus(t, s.URL+"/git/web.git/info/refs?service=git-upload-pack", sessionToken); code != 403 {
			t.Fatalf("the session's git token after check-in: %d", code)
		}
	})
	s.stop()
}

// deployedSession makes project "web" from the source repository, deploys
// it and starts a session on a new branch, as the admin.
func deployedSession(t *testing.T, s *server, data, branch string) (string, *client.Client, *client.CreatedSession) {
	t.Helper()
	admin := readKey(t, filepath.Join(data, "admin.key"))
	c := s.client(t, admin)
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ImportFrom: sourceRepo(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Deploy(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	sess, err := c.CreateSession(ctx, "web", client.SessionRequest{NewBranch: branch})
	if err != nil {
		t.Fatal(err)
	}
	return admin, c, sess
}

// TestKilledServerLosesCommandsKeepsOutput: kill -9 of the server while
// three commands run; after a restart the session is intact and the three
// commands are lost, with their output up to then replayable.
func TestKilledServerLosesCommandsKeepsOutput(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin, c, sess := deployedSession(t, s, data, "agent/k9")
	ctx := context.Background()
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
