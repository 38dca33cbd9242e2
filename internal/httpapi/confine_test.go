package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/egress"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
	"rdev.dev/rdev/internal/store/sqlite"
)

// queueFor queues a task of kind for project, created at the given age.
func queueFor(t *testing.T, st rdev.Store, project, kind string, age time.Duration) string {
	t.Helper()
	at := rdev.Timestamp(time.Now().Add(-age))
	task := &rdev.Task{ID: rdev.NewID("t"), Kind: kind, ProjectID: project, Status: rdev.TaskQueued, Payload: json.RawMessage(`{}`),
		MaxAttempts: 3, RunAfter: at, CreatedAt: at, UpdatedAt: at}
	if err := st.CreateTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	return task.ID
}

// registerWorker registers a worker of kind build with the key and
// returns its id.
func registerWorker(t *testing.T, h *harness, token string) string {
	t.Helper()
	r := h.do("POST", "/api/v1/workers", token, map[string]any{"name": "w", "kinds": []string{"build"}, "capacity": 1})
	r.want(t, 201, "")
	var w struct{ ID string }
	json.Unmarshal(r.Data, &w)
	return w.ID
}

// A worker belongs to the key that registered it: no other key may claim
// as it, act on its leases, heartbeat or delete it; a key with a project
// allow-list claims only its projects' tasks; the built-in worker cannot
// be deleted.
func TestWorkersConfinedToTheirKey(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"alpha", "beta"} {
		h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": p, "name": p}).want(t, 201, "")
	}
	fx := &taskFixture{h: h}
	alpha := h.key([]string{"alpha"}, rdev.ScopeWorkersExecute, rdev.ScopeWorkersRead)
	other := h.key(nil, rdev.ScopeWorkersExecute, rdev.ScopeWorkersRead)
	betaTask := queueFor(t, h.store, "beta", "build", 2*time.Hour) // the oldest: first in line
	alphaTask := queueFor(t, h.store, "alpha", "build", time.Hour)
	victim := registerWorker(t, h, other)

	// Claiming as another key's worker (its id shows in lease_owner).
	before := fx.snapshot(t)
	h.do("POST", "/api/v1/tasks/claim", alpha, map[string]any{"worker_id": victim}).want(t, 403, "FORBIDDEN")
	if after := fx.snapshot(t); after != before {
		t.Fatalf("a refused claim changed the tasks:\n%s\n%s", before, after)
	}

	// A restricted key's own worker gets only its projects' tasks, though
	// beta's task is older.
	own := registerWorker(t, h, alpha)
	r := h.do("POST", "/api/v1/tasks/claim", alpha, map[string]any{"worker_id": own})
	r.want(t, 200, "")
	var got rdev.Task
	json.Unmarshal(r.Data, &got)
	if got.ID != alphaTask {
		t.Fatalf("the alpha-only worker claimed %s of %s, want %s", got.ID, got.ProjectID, alphaTask)
	}
	if r := h.do("POST", "/api/v1/tasks/claim", alpha, map[string]any{"worker_id": own}); r.Status != 204 {
		t.Fatalf("a second claim: %d %s", r.Status, r.Body)
	}

	// The other key's worker holds beta's task; the alpha key cannot act
	// on that lease with the holder's id.
	h.do("POST", "/api/v1/tasks/claim", other, map[string]any{"worker_id": victim}).want(t, 200, "")
	before = fx.snapshot(t)
	task := "/api/v1/tasks/" + betaTask
	for _, req := range []struct {
		path string
		body any
	}{
		{task + "/complete", map[string]any{"worker_id": victim, "result": map[string]any{"verdict": "passed"}}},
		{task + "/complete-and-claim", map[string]any{"worker_id": victim}},
		{task + "/fail", map[string]any{"worker_id": victim, "error": "x"}},
		{task + "/heartbeat", map[string]any{"worker_id": victim}},
		{task + "/log?stream=stdout&worker_id=" + victim, "forged"},
		{"/api/v1/workers/" + victim + "/heartbeat", nil},
	} {
		h.do("POST", req.path, alpha, req.body).want(t, 403, "FORBIDDEN")
	}
	h.do("DELETE", "/api/v1/workers/"+victim, alpha, nil).want(t, 403, "FORBIDDEN")
	h.do("GET", "/api/v1/workers/"+victim, alpha, nil).want(t, 404, "NOT_FOUND")
	if after := fx.snapshot(t); after != before {
		t.Fatalf("refused lease actions changed the tasks:\n%s\n%s", before, after)
	}
	if n, _ := h.store.LastTaskLogID(context.Background(), betaTask); n != 0 {
		t.Fatalf("a forged log line was stored (%d events)", n)
	}
	// Its owner and an unrestricted admin may.
	h.do("POST", task+"/heartbeat", other, map[string]any{"worker_id": victim}).want(t, 200, "")
	h.do("POST", "/api/v1/workers/"+victim+"/heartbeat", h.admin, nil).want(t, 200, "")
	h.do("GET", "/api/v1/workers/"+own, alpha, nil).want(t, 200, "")

	// The built-in worker stays.
	builtIn, err := h.svc.RegisterWorker(context.Background(), nil, service.WorkerRequest{Name: "built-in", Kinds: []string{"review"}, Capacity: 1}, true)
	if err != nil {
		t.Fatal(err)
	}
	h.do("DELETE", "/api/v1/workers/"+builtIn.ID, other, nil).want(t, 403, "FORBIDDEN")
	r = h.do("DELETE", "/api/v1/workers/"+builtIn.ID, h.admin, nil)
	r.want(t, 409, "CONFLICT")
	if !strings.Contains(r.Error.Message, "built-in") {
		t.Errorf("deleting the built-in worker: %q", r.Error.Message)
	}
	h.do("GET", "/api/v1/workers/"+builtIn.ID, h.admin, nil).want(t, 200, "")
	h.do("POST", "/api/v1/tasks/claim", other, map[string]any{"worker_id": builtIn.ID}).want(t, 403, "FORBIDDEN")
}

// A key with a project allow-list cannot reach past it through the keys
// it makes or sees.
func TestRestrictedAdminKeys(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"alpha", "beta"} {
		h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": p, "name": p}).want(t, 201, "")
	}
	ra := h.key([]string{"alpha"}, rdev.ScopeAdmin)
	for name, body := range map[string]map[string]any{
		"unrestricted":     {"name": "x", "scopes": []string{"admin"}},
		"another project":  {"name": "x", "scopes": []string{"projects:read"}, "projects": []string{"beta"}},
		"one more project": {"name": "x", "scopes": []string{"projects:read"}, "projects": []string{"alpha", "beta"}},
	} {
		r := h.do("POST", "/api/v1/keys", ra, body)
		r.want(t, 403, "FORBIDDEN")
		if !strings.Contains(r.Error.Message, "allow-list") {
			t.Errorf("%s: %q", name, r.Error.Message)
		}
	}
	r := h.do("POST", "/api/v1/keys", ra, map[string]any{"name": "mine", "scopes": []string{"projects:read"}, "projects": []string{"alpha"}})
	r.want(t, 201, "")
	var mine struct{ ID string }
	json.Unmarshal(r.Data, &mine)

	// A key that is not admin cannot give more than it has.
	reader := h.key([]string{"alpha"}, rdev.ScopeProjectsRead)
	h.do("POST", "/api/v1/keys", reader, map[string]any{"name": "y", "scopes": []string{"projects:read"}, "projects": []string{"alpha"}}).want(t, 403, "FORBIDDEN")

	// It sees and deletes only keys inside its allow-list.
	r = h.do("GET", "/api/v1/keys?limit=200", ra, nil)
	r.want(t, 200, "")
	var list struct{ Keys []rdev.APIKey }
	json.Unmarshal(r.Data, &list)
	if len(list.Keys) == 0 {
		t.Fatal("a restricted admin sees no key, not even its own")
	}
	for _, k := range list.Keys {
		if len(k.Projects) == 0 || !subset(k.Projects, []string{"alpha"}) {
			t.Errorf("a restricted admin sees key %s for %v", k.ID, k.Projects)
		}
	}
	keys, _, err := h.store.ListKeys(context.Background(), rdev.Page{Limit: 200})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if len(k.Projects) == 0 {
			h.do("DELETE", "/api/v1/keys/"+k.ID, ra, nil).want(t, 404, "NOT_FOUND")
		}
	}
	h.do("DELETE", "/api/v1/keys/"+mine.ID, ra, nil).want(t, 200, "")

	// It reads only its projects' audit entries.
	h.do("PATCH", "/api/v1/projects/beta", h.admin, map[string]any{"name": "B"}).want(t, 200, "")
	h.do("PATCH", "/api/v1/projects/alpha", h.admin, map[string]any{"name": "A"}).want(t, 200, "")
	r = h.do("GET", "/api/v1/audit?limit=500", ra, nil)
	r.want(t, 200, "")
	var audit struct{ Entries []rdev.AuditEntry }
	json.Unmarshal(r.Data, &audit)
	sawAlpha := false
	for _, e := range audit.Entries {
		if e.ProjectID != "alpha" {
			t.Errorf("a restricted admin reads %+v", e)
		}
		sawAlpha = sawAlpha || e.Target == "project/alpha"
	}
	if !sawAlpha {
		t.Errorf("a restricted admin does not read its own project's entries: %+v", audit.Entries)
	}
	r = h.do("GET", "/api/v1/audit?limit=500&target=project/beta", h.admin, nil)
	json.Unmarshal(r.Data, &audit)
	if len(audit.Entries) == 0 || audit.Entries[0].ProjectID != "beta" {
		t.Errorf("the admin's audit of beta: %+v", audit.Entries)
	}
}

func subset(a, of []string) bool {
	for _, x := range a {
		found := false
		for _, y := range of {
			found = found || x == y
		}
		if !found {
			return false
		}
	}
	return true
}

// The default branch must exist (unless the repository is empty): moving
// it to a missing branch would silently drop the old one's protection.
func TestDefaultBranchMustExist(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web", "import_from": makeRepo(t, "dev")}).want(t, 201, "")
	r := h.do("PATCH", "/api/v1/projects/web", h.admin, map[string]any{"default_branch": "no-such-branch"})
	r.want(t, 400, "BAD_REQUEST")
	if r.Error.Field != "default_branch" || !strings.Contains(r.Error.Message, "no-such-branch") {
		t.Fatalf("error %+v", r.Error)
	}
	var p rdev.Project
	json.Unmarshal(h.do("GET", "/api/v1/projects/web", h.admin, nil).Data, &p)
	if p.DefaultBranch != "main" {
		t.Fatalf("default branch %q after a refused change", p.DefaultBranch)
	}
	h.do("PATCH", "/api/v1/projects/web", h.admin, map[string]any{"default_branch": "dev"}).want(t, 200, "")
	// An empty project may name any branch: its first push makes it.
	h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "empty", "name": "Empty"}).want(t, 201, "")
	h.do("PATCH", "/api/v1/projects/empty", h.admin, map[string]any{"default_branch": "trunk"}).want(t, 200, "")
}

// fakeInternet is the import proxy's resolver and dialer in tests: names
// resolve to the addresses given, and only addresses routed to a loopback
// server can be dialled; every dial is recorded. Nothing leaves the host.
type fakeInternet struct {
	mu     sync.Mutex
	names  map[string][]string // name → addresses, in turn for each lookup
	looked map[string]int
	routes map[string]string // ip:port → loopback address
	dialed []string
}

func (f *fakeInternet) lookup(_ context.Context, host string) ([]net.IPAddr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	addrs, ok := f.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	a := addrs[min(f.looked[host], len(addrs)-1)]
	f.looked[host]++
	return []net.IPAddr{{IP: net.ParseIP(a)}}, nil
}

func (f *fakeInternet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	f.mu.Lock()
	f.dialed = append(f.dialed, addr)
	to, ok := f.routes[addr]
	f.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("test network: no route to %s", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, network, to)
}

func (f *fakeInternet) dials() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.dialed)
}

// Keys other than an unrestricted admin import only http(s) URLs of public
// addresses, checked on the resolved addresses before any connection and
// again at each connection; paths on the server only under --import-root.
func TestImportConfined(t *testing.T) {
	// "The internet": a repository served over plain HTTP (git's dumb
	// protocol) by a loopback server, reached as public.test.
	repo := makeRepo(t, "dev")
	served := t.TempDir()
	for _, args := range [][]string{{"clone", "-q", "--bare", repo, filepath.Join(served, "app.git")}, {"-C", filepath.Join(served, "app.git"), "update-server-info"}} {
		if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	web := httptest.NewServer(http.FileServer(http.Dir(served)))
	defer web.Close()
	net := &fakeInternet{looked: map[string]int{},
		names: map[string][]string{"public.test": {"203.0.113.10"}, "internal.test": {"10.0.0.7"}, "meta.test": {"169.254.169.254"},
			"rebind.test": {"203.0.113.10", "10.0.0.7"}},
		routes: map[string]string{"203.0.113.10:80": web.Listener.Addr().String()}}
	root := t.TempDir()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rdev.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := newHarnessConfig(t, st, local.SandboxNone, 0, func(c *service.Config) {
		c.ImportProxy = &egress.Proxy{LookupIPAddr: net.lookup, Dial: net.dial}
		c.ImportRoots = []string{root}
	})
	writer := h.key(nil, rdev.ScopeProjectsWrite)
	create := func(token, id, src string) *response {
		return h.do("POST", "/api/v1/projects", token, map[string]any{"id": id, "name": id, "import_from": src})
	}
	for name, src := range map[string]string{
		"a path on the server":   repo,
		"a file URL":             "file://" + repo,
		"loopback":               web.URL + "/app.git",
		"a private address":      "http://internal.test/app.git",
		"the metadata address":   "http://meta.test/app.git",
		"a private literal":      "http://10.0.0.7/app.git",
		"git protocol":           "git://public.test/app.git",
		"ssh":                    "ssh://git@public.test/app.git",
		"scp-like ssh":           "git@public.test:app.git",
		"a path out of the root": root + "/../" + filepath.Base(filepath.Dir(repo)) + "/" + filepath.Base(repo),
	} {
		r := create(writer, "x", src)
		r.want(t, 403, "FORBIDDEN")
		if r.Error.Field != "import_from" || !strings.Contains(r.Error.Message, "cannot import") {
			t.Errorf("%s: %+v", name, r.Error)
		}
	}
	if d := net.dials(); len(d) != 0 {
		t.Fatalf("refused imports dialled %q", d)
	}
	// A public name is imported through the proxy, every branch of it.
	create(writer, "pub", "http://public.test/app.git").want(t, 201, "")
	if _, err := h.svc.Git().ResolveBranch(context.Background(), "pub", "dev"); err != nil {
		t.Fatalf("the imported project lacks dev: %v", err)
	}
	// A name that answers a public address to the check and a private one
	// to the connection is refused at the connection, which is never made.
	before := len(net.dials())
	r := create(writer, "rebound", "http://rebind.test/app.git")
	if r.Status == 201 {
		t.Fatal("a rebinding name was imported")
	}
	for _, d := range net.dials()[before:] {
		if !strings.HasPrefix(d, "203.0.113.10") {
			t.Fatalf("dialled %s", d)
		}
	}
	// Under the operator's import root, a path is fine; an unrestricted
	// admin key imports anything.
	inRoot := filepath.Join(root, "app")
	if out, err := exec.Command("git", "clone", "-q", repo, inRoot).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	create(writer, "rooted", inRoot).want(t, 201, "")
	create(h.admin, "local", repo).want(t, 201, "")
}
