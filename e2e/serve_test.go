package e2e

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/postgres/pgtest"

	_ "modernc.org/sqlite"
)

// TestFreshStart is the README's first command on a fresh machine: no
// flags, no configuration; an admin key appears in the data directory.
func TestFreshStart(t *testing.T) {
	xdg := t.TempDir()
	// RDEV_ADDR is --addr's twin; port 0 keeps parallel runs apart.
	s := start(t, []string{"XDG_DATA_HOME=" + xdg, "RDEV_ADDR=127.0.0.1:0"})
	keyPath := filepath.Join(xdg, "rdev", "admin.key")
	fi, err := os.Stat(keyPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin key file: %v %v", fi, err)
	}
	if !strings.Contains(s.log(), keyPath) {
		t.Fatalf("the server did not say where the admin key is:\n%s", s.log())
	}
	if _, err := os.Stat(filepath.Join(xdg, "rdev", "rdev.db")); err != nil {
		t.Fatalf("no SQLite file in the data directory: %v", err)
	}
	c := s.client(t, readKey(t, keyPath))
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "hello", Name: "Hello"}); err != nil {
		t.Fatal(err)
	}
	if ps, _, err := c.ListProjects(ctx, client.ListOptions{}); err != nil || len(ps) != 1 {
		t.Fatal(ps, err)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(s.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	s.stop()
}

func TestFlagBeatsEnvironment(t *testing.T) {
	s := start(t, []string{"RDEV_ADDR=256.0.0.1:1", "RDEV_DATA=" + t.TempDir()}, "--addr", "127.0.0.1:0")
	s.stop()
	_, err := tryStart(t, []string{"RDEV_ADDR=256.0.0.1:1", "RDEV_DATA=" + t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("a bad RDEV_ADDR was not used or not reported: %v", err)
	}
}

func TestRestartKeepsState(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		data := t.TempDir()
		testRestart(t, func() *server { return start(t, nil, "--addr", "127.0.0.1:0", "--data", data) },
			filepath.Join(data, "admin.key"))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		db, data := pgtest.URL(t), t.TempDir()
		testRestart(t, func() *server {
			return start(t, []string{"RDEV_DATABASE=" + db}, "--addr", "127.0.0.1:0", "--data", data)
		}, filepath.Join(data, "admin.key"))
	})
}

func testRestart(t *testing.T, run func() *server, keyPath string) {
	ctx := context.Background()
	s := run()
	admin := readKey(t, keyPath)
	c := s.client(t, admin)
	port := 3000
	p, err := c.CreateProject(ctx, client.ProjectRequest{ID: "keep", Name: "Keep", ProtectedBranches: []string{"release/*"},
		Components: []rdev.Component{{Name: "web", Command: "npm start", Port: &port}}})
	if err != nil {
		t.Fatal(err)
	}
	k, err := c.CreateKey(ctx, client.KeyRequest{Name: "reader", Scopes: []rdev.Scope{rdev.ScopeProjectsRead}})
	if err != nil {
		t.Fatal(err)
	}
	audit, _, err := c.ListAudit(ctx, client.AuditFilter{})
	if err != nil || len(audit) != 2 {
		t.Fatalf("audit before restart: %v %v", audit, err)
	}
	s.stop()

	s = run()
	if got := readKey(t, keyPath); got != admin {
		t.Fatal("the restart replaced the admin key")
	}
	c = s.client(t, admin)
	got, err := c.GetProject(ctx, "keep")
	if err != nil || got.Name != p.Name || !got.CreatedAt.Equal(p.CreatedAt) || len(got.Components) != 1 || *got.Components[0].Port != 3000 {
		t.Fatalf("project after restart: %+v %v", got, err)
	}
	if _, err := s.client(t, k.Token).GetProject(ctx, "keep"); err != nil {
		t.Fatalf("the key made before the restart: %v", err)
	}
	keys, _, err := c.ListKeys(ctx, client.ListOptions{})
	if err != nil || len(keys) != 2 {
		t.Fatalf("keys after restart: %d %v (want the admin and the reader)", len(keys), err)
	}
	after, _, err := c.ListAudit(ctx, client.AuditFilter{})
	if err != nil || len(after) != 2 || after[0].ID != audit[0].ID || after[1].RequestID != audit[1].RequestID {
		t.Fatalf("audit after restart: %+v %v", after, err)
	}
	s.stop()
}

// TestInFlightRequestFinishesOnSIGTERM sends half a request body, signals
// the server, checks it stopped accepting, sends the rest, and gets 201.
func TestInFlightRequestFinishesOnSIGTERM(t *testing.T) {
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	u, _ := url.Parse(s.URL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := `{"id":"inflight","name":"Sent across a shutdown"}`
	fmt.Fprintf(conn, "POST /api/v1/projects HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		u.Host, admin, len(body), body[:10])
	// The request is in flight once the server counts two (it and /metrics).
	waitFor(t, func() bool { return inFlight(t, s.URL) >= 2 })
	s.cmd.Process.Signal(syscall.SIGTERM)
	// Wait until the listener is closed: shutdown has begun.
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", u.Host, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return true
	})
	fmt.Fprint(conn, body[10:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 201 {
		t.Fatalf("in-flight request: %d %s", resp.StatusCode, drain(resp.Body))
	}
	resp.Body.Close()
	if err := s.wait(30 * time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, s.log())
	}
	s = start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	if _, err := s.client(t, admin).GetProject(context.Background(), "inflight"); err != nil {
		t.Fatalf("the request finished during shutdown was not kept: %v", err)
	}
	s.stop()
}

func inFlight(t *testing.T, base string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "rdev_http_requests_in_flight "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func TestAdminTokenSeed(t *testing.T) {
	data := t.TempDir()
	token := "automation-admin-token-0123456789abcdef"
	s := start(t, []string{"RDEV_ADMIN_TOKEN=" + token}, "--addr", "127.0.0.1:0", "--data", data)
	if _, err := os.Stat(filepath.Join(data, "admin.key")); !os.IsNotExist(err) {
		t.Fatalf("admin.key written although RDEV_ADMIN_TOKEN was given: %v", err)
	}
	if _, _, err := s.client(t, token).ListKeys(context.Background(), client.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	s.stop()
	_, err := tryStart(t, []string{"RDEV_ADMIN_TOKEN=short"}, "--addr", "127.0.0.1:0", "--data", t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "RDEV_ADMIN_TOKEN must be at least 32 characters") {
		t.Fatalf("short token: %v", err)
	}
}

func TestFailedMigrationStopsStart(t *testing.T) {
	data := t.TempDir()
	// A database whose tables clash with the first migration.
	path := filepath.Join(data, "rdev.db")
	if out, err := sqlite3(path, "CREATE TABLE projects (x INTEGER);"); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	_, err := tryStart(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	if err == nil || !strings.Contains(err.Error(), "migration 1") || !strings.Contains(err.Error(), "failed") {
		t.Fatalf("want a clear migration failure, got: %v", err)
	}
}

func TestBadDatabaseURL(t *testing.T) {
	_, err := tryStart(t, nil, "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--database", "mysql://x")
	if err == nil || !strings.Contains(err.Error(), "--database must be") {
		t.Fatalf("got %v", err)
	}
	_, err = tryStart(t, nil, "--addr", "127.0.0.1:0", "--data", t.TempDir(), "--database", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("got %v", err)
	}
}

// Bad cluster settings stop the server before it listens, saying why.
func TestBadClusterSettings(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: \"https://127.0.0.1:1\"}\n"+
		"users:\n- name: u\n  user: {token: x}\ncontexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\n"), 0o600)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cluster", "nomad"}, `--cluster must be local or kube, not "nomad"`},
		{[]string{"--cluster", "kube"}, "--cluster kube needs --workspace-image"},
		{[]string{"--cluster", "kube", "--workspace-image", "w", "--workspace-root", "rel"}, "--workspace-root must be an absolute path"},
		{[]string{"--cluster", "kube", "--workspace-image", "w", "--preview-mode", "magic"}, `--preview-mode must be proxy or ingress, not "magic"`},
		{[]string{"--preview-mode", "ingress"}, "--preview-mode ingress needs --cluster kube"},
		{[]string{"--cluster", "kube", "--workspace-image", "w", "--kube-qps", "0"}, "--kube-qps must be positive"},
		{[]string{"--gc-concurrency", "0"}, "--gc-concurrency must be positive"},
		{[]string{"--cluster", "kube", "--workspace-image", "w", "--kubeconfig", filepath.Join(t.TempDir(), "none")}, "kubernetes client configuration"},
		{[]string{"--cluster", "kube", "--workspace-image", "w", "--kubeconfig", kubeconfig, "--namespace", "rdev"}, "kubernetes at https://127.0.0.1:1, namespace rdev"},
		{[]string{"--cluster", "kube", "--workspace-image", "w"}, "no Kubernetes configuration: rdev is not running in a cluster and found no kubeconfig"},
	} {
		_, err := tryStart(t, nil, append([]string{"--addr", "127.0.0.1:0", "--data", t.TempDir()}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.args, err, c.want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 20s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sqlite3 runs SQL against the database file at path.
func sqlite3(path, stmt string) (string, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return "", err
	}
	defer db.Close()
	_, err = db.Exec(stmt)
	return "", err
}
