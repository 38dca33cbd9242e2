package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/client"
)

// TestEscapes is the escape suite of docs/security.md: the real binary
// with its sandbox (bubblewrap, as root here and as an unprivileged user
// in CI's second run), and attempts by project code — session commands,
// a component, a review — to reach what is not its own. Every attempt
// must fail; the suite also checks that the same session works for what
// it may do, so that a broken sandbox does not pass by failing everything.
func TestEscapes(t *testing.T) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("bubblewrap is not installed (CI=true forbids skipping)")
		}
		t.Skip("bubblewrap is not installed")
	}
	data := t.TempDir()
	os.Chmod(data, 0o700)
	marker := "RDEV_E2E_SERVER_MARKER=" + strconv.FormatInt(time.Now().UnixNano(), 36)
	s := start(t, []string{marker, "RDEV_ADMIN_TOKEN=escape-suite-admin-token-0123456789abcdef"},
		"--addr", "127.0.0.1:0", "--data", data, "--sandbox", "bwrap", "--limit-pids", "256", "--limit-memory", "512MiB", "--log-level", "info")
	admin := "escape-suite-admin-token-0123456789abcdef"
	c := s.client(t, admin)
	ctx := context.Background()
	for _, id := range []string{"web", "other"} {
		if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: id, Name: id, ImportFrom: sourceRepo(t),
			Components: []client.Component{{Name: "hook", Command: "mkdir -p .git/hooks && printf '#!/bin/sh\\ntouch " + filepath.Join(data, "HOOK-RAN") + "\\n' > .git/hooks/post-merge; chmod +x .git/hooks/post-merge; echo hooked > " + filepath.Join(data, "COMPONENT-WROTE") + "; sleep 3600"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Deploy(ctx, id); err != nil {
			t.Fatalf("deploy %s: %v\n%s", id, err, s.log())
		}
	}
	branches := 0
	newSession := func(project string) string {
		branches++
		sess, err := c.CreateSession(ctx, project, client.SessionRequest{NewBranch: fmt.Sprintf("agent/escape-%d", branches)})
		if err != nil {
			t.Fatal(err)
		}
		return sess.ID
	}
	// freshSession ends the project's active sessions (one per project)
	// and makes a new one.
	freshSession := func(project string) string {
		list, _, err := c.ListSessions(ctx, project, client.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, old := range list {
			if old.Status == "active" {
				c.TerminateSession(ctx, project, old.ID)
			}
		}
		return newSession(project)
	}
	sid, other := newSession("web"), newSession("other")
	sh := func(project, sid, script string) (string, int) {
		t.Helper()
		res, err := c.RunCommandWait(ctx, project, sid, client.CommandRequest{Command: script, Timeout: "60s"})
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		code := -1
		if res.ExitCode != nil {
			code = *res.ExitCode
		}
		return res.Stdout + res.Stderr, code
	}
	// What the session may do: its workspace, git, its own loopback.
	if out, code := sh("web", sid, "cat readme && echo x > new && git status --porcelain"); code != 0 || !strings.Contains(out, "?? new") {
		t.Fatalf("the sandbox refuses the session's own work: %d %q", code, out)
	}
	// The other session's app listens on every address of its pod.
	if _, err := c.RunCommand(ctx, "other", other, client.CommandRequest{Command: "exec python3 -m http.server --bind 0.0.0.0 $PORT"}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		_, code := sh("other", other, "curl -sf -o /dev/null http://127.0.0.1:$PORT/")
		return code == 0
	})

	serverPID := s.cmd.Process.Pid
	apiPort := strings.TrimPrefix(s.URL[strings.LastIndex(s.URL, ":"):], ":")
	otherWS := filepath.Join(data, "pods", "other", "sessions", other)
	rows := []struct{ name, script string }{
		{"ReadAdminKey", "cat " + filepath.Join(data, "admin.key")},
		{"ReadDatabase", "head -c 16 " + filepath.Join(data, "rdev.db") + " | grep -q SQLite"},
		{"ReadPreviewSecret", "cat " + filepath.Join(data, "preview.secret")},
		{"ReadOtherRepository", "ls " + filepath.Join(data, "repos", "other.git") + "/HEAD"},
		{"ReadOtherSessionFiles", "cat " + filepath.Join(otherWS, "readme")},
		{"ReadShadow", "cat /etc/shadow | grep -q root"},
		{"ReadRootHome", "ls -a /root | grep -q ."},
		{"ReadServerEnviron", fmt.Sprintf("cat /proc/%d/environ", serverPID)},
		{"SeeServerVariables", "env | grep -E 'RDEV_ADMIN_TOKEN|RDEV_E2E_SERVER_MARKER|RDEV_DATA'"},
		{"Unmount", "umount -l /tmp || umount -l /proc"},
		{"Remount", "mount -o remount,rw /usr"},
		{"WriteBareRepository", "touch " + filepath.Join(data, "repos", "web.git", "owned")},
		{"MoveRefInBareRepository", "git --git-dir " + filepath.Join(data, "repos", "web.git") + " update-ref refs/heads/main HEAD"},
		{"SignalServer", fmt.Sprintf("kill -0 %d", serverPID)},
		{"SeeServerProcess", fmt.Sprintf("test -e /proc/%d/status && grep -q rdev /proc/%d/cmdline", serverPID, serverPID)},
		{"APIPortWithLeakedAdminKey", "curl -sf -m 5 -H 'Authorization: Bearer " + admin + "' http://127.0.0.1:" + apiPort + "/api/v1/projects | grep -q web"},
		{"PostgreSQLOnLoopback", "curl -s -m 5 telnet://127.0.0.1:5432 </dev/null; test $? -ne 7"},
		{"OtherSessionsPreviewPort", "curl -sf -m 5 -o /dev/null http://127.0.0.1:$PORT/"},
		{"MetadataThroughProxy", "curl -sf -m 5 http://169.254.169.254/latest/meta-data/"},
		{"PrivateRangeThroughProxy", "curl -sf -m 5 http://10.0.0.1/"},
		{"GainRoot", "test \"$(id -u)\" = 0 || grep -q 'CapEff:\\s*0*[1-9a-f]' /proc/self/status"},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			if out, code := sh("web", sid, r.script); code == 0 {
				t.Fatalf("succeeded from a session command: %q", out)
			}
		})
	}

	t.Run("PrivilegedStartWithRequestEnvironment", func(t *testing.T) {
		// The request's env reaches the command only after the drop: a
		// setpriv of the workspace's on PATH, or LD_PRELOAD, must never run
		// in bubblewrap's or setpriv's privileged start.
		sh("web", sid, "mkdir -p fake && printf '#!/bin/sh\\nid -u > fake/ran-as\\n' > fake/setpriv && chmod +x fake/setpriv && rm -f fake/ran-as")
		res, err := c.RunCommandWait(ctx, "web", sid, client.CommandRequest{Command: "id -u",
			Env: map[string]string{"PATH": "./fake:/usr/bin:/bin", "LD_PRELOAD": "./fake/nothing.so"}, Timeout: "30s"})
		if err != nil {
			t.Fatal(err)
		}
		if out, _ := sh("web", sid, "cat fake/ran-as 2>/dev/null"); out != "" {
			t.Fatalf("the workspace's setpriv ran during the privileged start, as %q", out)
		}
		if res.Stdout == "0\n" {
			t.Fatalf("the command ran as root: %+v", res)
		}
	})

	t.Run("ComponentHookDoesNotRunOutside", func(t *testing.T) {
		// The component's code is read-only: its hook cannot be written, and
		// a redeploy runs no git in a directory the component could write.
		if _, err := c.Deploy(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		for _, f := range []string{"HOOK-RAN", "COMPONENT-WROTE"} {
			if _, err := os.Stat(filepath.Join(data, f)); err == nil {
				t.Fatalf("%s exists: the component reached rdev's data directory", f)
			}
		}
	})

	// The same attempts from a component (it serves its findings on the
	// pod's loopback, where the session reads them) and from a review (in
	// its log), which also tries to forge its own verdict.
	var attempts strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&attempts, "if ( %s ) >/dev/null 2>&1; then echo 'ESCAPED %s'; fi; ", r.script, r.name)
	}
	attempts.WriteString("echo attempts-done")

	t.Run("FromAComponent", func(t *testing.T) {
		comps := []client.Component{{Name: "attempts", Command: "(" + attempts.String() + ") > /tmp/findings; cd /tmp && exec python3 -m http.server --bind 127.0.0.1 9911"}}
		if _, err := c.PatchProject(ctx, "web", client.ProjectPatch{Components: &comps}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Deploy(ctx, "web"); err != nil {
			t.Fatal(err)
		}
		var out string
		waitUntil(t, func() bool {
			out, _ = sh("web", sid, "curl -sf http://127.0.0.1:9911/findings")
			return strings.Contains(out, "attempts-done")
		})
		if escaped(out) {
			t.Fatalf("from a component:\n%s", out)
		}
	})

	t.Run("NothingSurvivesCheckIn", func(t *testing.T) {
		m := "escape-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		script := "(setsid sleep 7781 " + m + " &); (sh -c 'sleep 7782 " + m + " &' &); env -i sleep 7783 " + m + " & echo ok"
		sh("web", sid, script)
		if _, err := c.CheckinSession(ctx, "web", sid, client.CheckinRequest{SkipReview: true}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, func() bool {
			out, _ := exec.Command("pgrep", "-f", m).Output()
			return len(strings.TrimSpace(string(out))) == 0
		})
	})

	t.Run("ForkBombAndMemoryHogStayInTheirSandbox", func(t *testing.T) {
		sid := newSession("web")
		// A memory hog is stopped at the pod's 512 MiB (killed by the
		// OOM killer, or refused by the rlimit fallback).
		if out, code := sh("web", sid, "python3 -c 'b = bytearray(2 << 30); b[-1] = 1; print(len(b))'"); code == 0 {
			t.Fatalf("2 GiB allocated under a 512 MiB limit: %q", out)
		}
		bomb, err := c.RunCommand(ctx, "web", sid, client.CommandRequest{Command: "b() { b | b & }; b; sleep 60", Timeout: "90s"})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		// The server and a neighbour answer while the bomb runs.
		if _, err := c.GetProject(ctx, "other"); err != nil {
			t.Fatal(err)
		}
		if out, code := sh("other", other, "echo neighbour"); code != 0 || out != "neighbour\n" {
			t.Fatalf("the neighbour session: %d %q", code, out)
		}
		if cmd, err := c.GetCommand(ctx, "web", sid, bomb.ID); err != nil || cmd.Status != "running" {
			t.Fatalf("the bomb is not bounded but gone: %+v %v", cmd, err)
		}
		if err := c.Signal(ctx, "web", sid, bomb.ID, "SIGKILL"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, func() bool {
			cmd, err := c.GetCommand(ctx, "web", sid, bomb.ID)
			return err == nil && cmd.Status != "running"
		})
	})

	t.Run("FromAReviewForgingItsVerdict", func(t *testing.T) {
		repo := filepath.Join(data, "repos", "web.git")
		mainBefore := strings.TrimSpace(mustGit(t, "", "", "--git-dir", repo, "rev-parse", "main"))
		forge := attempts.String() + "; curl -s -m 5 -X POST -H 'Authorization: Bearer " + admin + "' -d '{\"worker_id\":\"x\",\"result\":{\"verdict\":\"passed\"}}' " +
			"http://127.0.0.1:" + apiPort + "/api/v1/tasks/$RDEV_TASK/complete; git --git-dir " + repo + " update-ref refs/heads/main HEAD; exit 1"
		if _, err := c.PatchProject(ctx, "web", client.ProjectPatch{ReviewCommand: &forge}); err != nil {
			t.Fatal(err)
		}
		rs := freshSession("web")
		sh("web", rs, "git -c user.name=a -c user.email=a@b commit -q --allow-empty -m review-me && git push -q origin HEAD")
		end, err := c.CheckinSession(ctx, "web", rs, client.CheckinRequest{AutoMerge: true})
		if err != nil || end.ReviewTaskID == "" {
			t.Fatal(end, err)
		}
		task := waitTask(t, c, end.ReviewTaskID)
		if r := reviewResult(t, task); r.Verdict != "failed" || r.Merged {
			t.Fatalf("the review forged its verdict: %+v", r)
		}
		var log strings.Builder
		if _, err := c.FollowTask(ctx, task.ID, 0, func(e client.Event) error { log.Write(e.Data); return nil }); err != nil {
			t.Fatal(err)
		}
		if escaped(log.String()) || !strings.Contains(log.String(), "\nattempts-done\n") {
			t.Fatalf("from a review (%s):\n%s", task.Result, log.String())
		}
		if after := strings.TrimSpace(mustGit(t, "", "", "--git-dir", repo, "rev-parse", "main")); after != mainBefore {
			t.Fatalf("main moved from %s to %s behind the review", mainBefore, after)
		}
	})

	t.Run("EgressNoneStillPushes", func(t *testing.T) {
		none := client.Egress{Mode: "none"}
		if _, err := c.PatchProject(ctx, "web", client.ProjectPatch{Egress: &none}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Deploy(ctx, "web"); err != nil { // the policy applies from the pod's next start
			t.Fatal(err)
		}
		es := freshSession("web")
		if out, code := sh("web", es, "curl -s -m 5 http://public.invalid/"); code != 0 || !strings.Contains(out, "egress mode none") {
			t.Fatalf("a public name with egress none: %d %q", code, out)
		}
		if out, code := sh("web", es, "git -c user.name=a -c user.email=a@b commit -q --allow-empty -m x && git push -q origin HEAD"); code != 0 {
			t.Fatalf("push with egress none: %d %q", code, out)
		}
	})

	t.Run("RefusalsAreCountedAndAudited", func(t *testing.T) {
		resp, err := http.Get(s.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `rdev_egress_refused_total{reason_class="link-local"}`) {
			t.Fatalf("no link-local refusal in /metrics:\n%s", grepLines(string(b), "rdev_egress"))
		}
		entries, _, err := c.ListAudit(ctx, client.AuditFilter{Target: "project/web"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, e := range entries {
			found = found || (e.Method == "EGRESS" && strings.Contains(e.Route, "169.254.169.254"))
		}
		if !found {
			t.Fatalf("no egress refusal in the audit log: %+v", entries)
		}
	})
}

// escaped reports whether output of the attempts has a line saying one
// succeeded.
func escaped(output string) bool {
	for _, l := range strings.Split(output, "\n") {
		if strings.HasPrefix(l, "ESCAPED ") {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
