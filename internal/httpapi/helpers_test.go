package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/githost"
	"rdev.dev/rdev/internal/httpapi"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
	"rdev.dev/rdev/internal/store/sqlite"
)

type harness struct {
	t     testing.TB
	store rdev.Store
	api   *httpapi.Server
	srv   *httptest.Server
	svc   *service.Service
	pods  *local.Cluster
	admin string
}

func newHarness(t testing.TB) *harness {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rdev.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newHarnessOn(t, st)
}

func newHarnessOn(t testing.TB, st rdev.Store) *harness {
	t.Helper()
	return newHarnessWith(t, st, local.SandboxNone, 0)
}

// newHarnessWith is newHarnessOn with a sandbox mode and output limit.
func newHarnessWith(t testing.TB, st rdev.Store, sandbox string, outputLimit int64) *harness {
	t.Helper()
	return newHarnessConfig(t, st, sandbox, outputLimit, nil)
}

// newHarnessConfig is newHarnessWith with a last say on the service's
// configuration.
func newHarnessConfig(t testing.TB, st rdev.Store, sandbox string, outputLimit int64, edit func(*service.Config)) *harness {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	git, err := githost.New(t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	pods, err := local.New(local.Config{Dir: t.TempDir(), RepoPath: git.Path, CredentialHelper: "!true", Log: log, Sandbox: sandbox, Executable: testExecutable(t), User: testUser(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pods.Close)
	cfg := service.Config{Store: st, Git: git, Cluster: pods, Now: time.Now, Log: log,
		PublicURL: "http://rdev.test:7420", PreviewDomain: "preview.localhost", PreviewSecret: []byte("0123456789abcdef0123456789abcdef"),
		OutputLimit: outputLimit}
	if edit != nil {
		edit(&cfg)
	}
	svc := service.New(cfg)
	api := httpapi.New(httpapi.Config{Service: svc, Log: log, Registry: prometheus.NewRegistry(), PreviewDomain: "preview.localhost"})
	h := &harness{t: t, store: st, api: api, svc: svc, pods: pods}
	h.srv = httptest.NewServer(api)
	t.Cleanup(h.srv.Close)
	h.admin = h.key(nil, rdev.ScopeAdmin)
	return h
}

// key stores a key with the scopes and allow-list and returns its token.
func (h *harness) key(projects []string, scopes ...rdev.Scope) string {
	h.t.Helper()
	id, token := rdev.NewKeyToken()
	if projects == nil {
		projects = []string{}
	}
	k := &rdev.APIKey{ID: id, Name: "test", Scopes: scopes, Projects: projects, Hash: rdev.HashToken(token), CreatedAt: rdev.Timestamp(time.Now())}
	if err := h.store.CreateKey(context.Background(), k); err != nil {
		h.t.Fatal(err)
	}
	return token
}

type response struct {
	Status int
	Header http.Header
	Body   []byte
	Data   json.RawMessage
	Error  struct {
		Code, Message, Field string
	}
	Meta struct {
		RequestID string `json:"request_id"`
	}
}

// with returns the harness reporting to t (a fuzz target's own t).
func (h *harness) with(t testing.TB) *harness {
	c := *h
	c.t = t
	return &c
}

// do sends a request; body may be nil, a string or []byte (sent as is), or a
// value encoded as JSON.
func (h *harness) do(method, path, token string, body any) *response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, h.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	r := &response{Status: resp.StatusCode, Header: resp.Header}
	r.Body, _ = io.ReadAll(resp.Body)
	var env struct {
		Data  json.RawMessage `json:"data"`
		Error *struct {
			Code, Message, Field string
		} `json:"error"`
		Meta struct {
			RequestID string `json:"request_id"`
		} `json:"meta"`
	}
	if json.Unmarshal(r.Body, &env) == nil {
		r.Data, r.Meta = env.Data, env.Meta
		if env.Error != nil {
			r.Error = *env.Error
		}
	}
	return r
}

func (r *response) want(t testing.TB, status int, code string) {
	t.Helper()
	if r.Status != status || r.Error.Code != code {
		t.Fatalf("got %d %q (%s), want %d %q", r.Status, r.Error.Code, r.Body, status, code)
	}
}
