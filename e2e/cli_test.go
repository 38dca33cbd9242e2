package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestCLI(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	cfg := t.TempDir()
	env := []string{"XDG_CONFIG_HOME=" + cfg}

	run := func(args ...string) string {
		t.Helper()
		return cliOK(t, env, args...)
	}

	t.Run("LoginRefusesBadKey", func(t *testing.T) {
		_, errOut, code := cli(t, env, "login", "--server", s.URL, "--token", "rdev_kaaaaaaaaaaaaaaaa_nope")
		if code == 0 || !strings.Contains(errOut, "missing or invalid API key") || !strings.Contains(errOut, "request id") {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if _, err := os.Stat(filepath.Join(cfg, "rdev", "config.json")); !os.IsNotExist(err) {
			t.Fatal("a refused login was saved")
		}
	})

	out := run("login", "--server", s.URL, "--token", admin)
	if !strings.Contains(out, "Logged in to "+s.URL) {
		t.Fatalf("login said %q", out)
	}
	fi, err := os.Stat(filepath.Join(cfg, "rdev", "config.json"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}

	t.Run("Projects", func(t *testing.T) {
		out := run("projects", "create", "web", "--name", "Web App", "--protected", "release/*")
		if !regexp.MustCompile(`(?m)^web\s+Web App\s+main\s+release/\*`).MatchString(out) {
			t.Fatalf("create printed:\n%s", out)
		}
		spec := filepath.Join(t.TempDir(), "api.json")
		os.WriteFile(spec, []byte(`{"id":"api","name":"API","components":[{"name":"srv","command":"./srv","port":9000}]}`), 0o600)
		run("projects", "create", "-f", spec)
		out = run("projects", "list")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.HasPrefix(lines[1], "api ") || !strings.HasPrefix(lines[2], "web ") {
			t.Fatalf("list printed:\n%s", out)
		}
		var p struct {
			ID         string
			Components []struct{ Name string }
		}
		if err := json.Unmarshal([]byte(run("projects", "get", "api", "-o", "json")), &p); err != nil || p.ID != "api" || p.Components[0].Name != "srv" {
			t.Fatalf("get -o json: %+v %v", p, err)
		}
		run("projects", "delete", "web")
		_, errOut, code := cli(t, env, "projects", "get", "web")
		if code == 0 || !strings.Contains(errOut, "Error: project not found") || !regexp.MustCompile(`status 404 NOT_FOUND, request id [0-9a-f]+`).MatchString(errOut) {
			t.Fatalf("get of a deleted project: exit %d\n%s", code, errOut)
		}
		_, errOut, code = cli(t, env, "projects", "create", "Bad_Id")
		if code == 0 || !strings.Contains(errOut, "DNS label") || !strings.Contains(errOut, "field: id") {
			t.Fatalf("invalid id: exit %d\n%s", code, errOut)
		}
	})

	t.Run("Keys", func(t *testing.T) {
		out := run("keys", "create", "--name", "reader", "--scope", "projects:read", "--project", "api", "--expires-in", "7d")
		tok := regexp.MustCompile(`rdev_\S+`).FindString(out)
		id := regexp.MustCompile(`Created key (k\w+)`).FindStringSubmatch(out)
		if tok == "" || id == nil {
			t.Fatalf("create printed:\n%s", out)
		}
		out = run("keys", "list")
		if !strings.Contains(out, id[1]) || !strings.Contains(out, "projects:read") || strings.Contains(out, tok) {
			t.Fatalf("list printed:\n%s", out)
		}
		// The new key works through the CLI, within its allow-list.
		rout, rerr, code := cli(t, []string{"RDEV_SERVER=" + s.URL, "RDEV_TOKEN=" + tok}, "projects", "list")
		if code != 0 || !strings.Contains(rout, "api") {
			t.Fatalf("reader list: %d %s %s", code, rout, rerr)
		}
		_, rerr, code = cli(t, []string{"RDEV_SERVER=" + s.URL, "RDEV_TOKEN=" + tok}, "keys", "list")
		if code == 0 || !strings.Contains(rerr, "403 FORBIDDEN") {
			t.Fatalf("reader listing keys: %d %s", code, rerr)
		}
		run("keys", "delete", id[1])
		_, rerr, code = cli(t, []string{"RDEV_SERVER=" + s.URL, "RDEV_TOKEN=" + tok}, "projects", "list")
		if code == 0 || !strings.Contains(rerr, "401 UNAUTHORIZED") {
			t.Fatalf("deleted key: %d %s", code, rerr)
		}
		_, errOut, code := cli(t, env, "keys", "create", "--name", "x", "--scope", "root")
		if code == 0 || !strings.Contains(errOut, `unknown scope "root"`) {
			t.Fatalf("bad scope: %d %s", code, errOut)
		}
	})

	t.Run("Audit", func(t *testing.T) {
		out := run("audit", "--target", "project/web")
		if !strings.Contains(out, "DELETE") || !strings.Contains(out, "/api/v1/projects/{id}") {
			t.Fatalf("audit printed:\n%s", out)
		}
	})

	t.Run("NoServer", func(t *testing.T) {
		_, errOut, code := cli(t, []string{"RDEV_SERVER=http://127.0.0.1:1", "RDEV_TOKEN=x"}, "projects", "list")
		if code == 0 || !strings.Contains(errOut, "connection refused") {
			t.Fatalf("unreachable server: %d %s", code, errOut)
		}
		_, errOut, code = cli(t, []string{"HOME=" + t.TempDir()}, "projects", "list")
		if code == 0 || !strings.Contains(errOut, "rdev login") {
			t.Fatalf("no login: %d %s", code, errOut)
		}
	})
	s.stop()
}
