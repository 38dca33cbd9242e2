package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rdev.dev/rdev/internal/rdev"
)

// gatewayEnv is rdev's API port serving the gateway beside the API, as
// on Kubernetes, with the package's "internet" (see env).
type gatewayEnv struct {
	*env
	gw  *Gateway
	srv *httptest.Server

	mu       sync.Mutex
	policies map[string]rdev.Egress
	refused  map[string][]string // by project: "task target"
}

func newGatewayEnv(t *testing.T) *gatewayEnv {
	e := &gatewayEnv{env: newEnv(t, Sandbox{Policy: public}, ""), policies: map[string]rdev.Egress{}, refused: map[string][]string{}}
	proxy := &Proxy{LookupIPAddr: e.net.lookup, Dial: e.net.dial, Metrics: NewMetrics(prometheus.NewRegistry()),
		OnRefuse: func(_ context.Context, s Sandbox, r Refusal) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.refused[s.ProjectID] = append(e.refused[s.ProjectID], s.TaskID+" "+r.Target)
		}}
	e.gw = &Gateway{Proxy: proxy, Key: []byte("k3y"), Git: http.HandlerFunc(fakeGit),
		Policy: func(_ context.Context, id string) (rdev.Egress, error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			p, ok := e.policies[id]
			if !ok {
				return rdev.Egress{}, errors.New("no such project")
			}
			return p, nil
		}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if IsProxyRequest(r) {
			e.gw.ServeHTTP(w, r)
			return
		}
		fmt.Fprintf(w, "api %s", r.URL.Path)
	}))
	t.Cleanup(e.srv.Close)
	proxy.Self = e.srv.Listener.Addr().String()
	return e
}

func (e *gatewayEnv) policy(project string, p rdev.Egress) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.policies[project] = p
}

// client is an HTTP client whose proxy is proxyURL, as curl and git are
// with HTTP_PROXY set.
func (e *gatewayEnv) client(t *testing.T, proxyURL string) *http.Client {
	u, err := url.Parse(proxyURL)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(u)}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestGateway(t *testing.T) {
	e := newGatewayEnv(t)
	e.policy("alpha", public)
	e.policy("beta", rdev.Egress{Mode: rdev.EgressNone})
	base := &url.URL{Scheme: "http", Host: e.srv.Listener.Addr().String()}

	t.Run("ServesEachProjectWithItsPolicy", func(t *testing.T) {
		alpha := e.client(t, e.gw.URL(base, "alpha", ""))
		if code, body := get(t, alpha, "http://public.test/x"); code != 200 || body != "hello from public.test/x" {
			t.Fatalf("alpha to the internet: %d %q", code, body)
		}
		before := len(e.net.dials())
		beta := e.client(t, e.gw.URL(base, "beta", "t1"))
		if code, body := get(t, beta, "http://public.test/x"); code != 403 || !strings.Contains(body, "egress mode none") {
			t.Fatalf("beta (egress none) to the internet: %d %q", code, body)
		}
		if len(e.net.dials()) != before {
			t.Fatalf("a refused request was dialled: %v", e.net.dials()[before:])
		}
		e.mu.Lock()
		got := e.refused["beta"]
		e.mu.Unlock()
		if len(got) != 1 || got[0] != "t1 public.test" {
			t.Fatalf("refusals of beta: %q, want the review's", got)
		}
	})

	t.Run("APIStillServed", func(t *testing.T) {
		if code, body := get(t, http.DefaultClient, e.srv.URL+"/api/v1/projects"); code != 200 || body != "api /api/v1/projects" {
			t.Fatalf("an origin-form request: %d %q", code, body)
		}
	})

	t.Run("RefusesWhoCannotNameItself", func(t *testing.T) {
		user, pass := e.gw.Credentials("alpha", "")
		for name, proxyURL := range map[string]string{
			"no credentials":      base.String(),
			"wrong password":      "http://alpha:" + strings.Repeat("0", len(pass)) + "@" + base.Host,
			"another's password":  "http://beta:" + pass + "@" + base.Host,
			"a task added":        "http://" + user + ".t9:" + pass + "@" + base.Host,
			"not a project":       (&url.URL{Scheme: "http", Host: base.Host, User: url.UserPassword("../x", e.gw.sign("../x"))}).String(),
			"signed by other key": (&Gateway{Key: []byte("other")}).URL(base, "alpha", ""),
		} {
			before, looked := len(e.net.dials()), len(e.net.lookups())
			code, body := get(t, e.client(t, proxyURL), "http://public.test/x")
			if code != http.StatusProxyAuthRequired || !strings.Contains(body, "HTTP_PROXY") {
				t.Errorf("%s: %d %q", name, code, body)
			}
			if len(e.net.dials()) != before || len(e.net.lookups()) != looked {
				t.Errorf("%s: looked up or dialled: %v %v", name, e.net.lookups(), e.net.dials())
			}
		}
	})

	t.Run("OwnRepositoryOnly", func(t *testing.T) {
		alpha := e.client(t, e.gw.URL(base, "alpha", ""))
		if code, body := get(t, alpha, e.srv.URL+"/git/alpha.git/info/refs?service=git-upload-pack"); code != 200 || body != "git GET /git/alpha.git/info/refs?service=git-upload-pack" {
			t.Fatalf("own repository: %d %q", code, body)
		}
		for _, path := range []string{"/git/beta.git/info/refs", "/api/v1/projects"} {
			if code, _ := get(t, alpha, e.srv.URL+path); code != 403 {
				t.Fatalf("%s through alpha's proxy: %d", path, code)
			}
		}
	})

	t.Run("PolicyChangeAppliesToTheNextRequest", func(t *testing.T) {
		gamma := e.client(t, e.gw.URL(base, "gamma", ""))
		// A project rdev cannot read: nowhere.
		if code, _ := get(t, gamma, "http://public.test/x"); code != 403 {
			t.Fatalf("a project with no policy: %d", code)
		}
		e.policy("gamma", public)
		if code, _ := get(t, gamma, "http://public.test/x"); code != 200 {
			t.Fatalf("after its policy became public: %d", code)
		}
		e.policy("gamma", rdev.Egress{Mode: rdev.EgressAllow, Allow: []string{"other.test"}})
		if code, _ := get(t, gamma, "http://public.test/x"); code != 403 {
			t.Fatalf("public.test after the allow-list dropped it: %d", code)
		}
		if code, _ := get(t, gamma, "http://other.test/x"); code != 200 {
			t.Fatalf("other.test on the allow-list: %d", code)
		}
	})
}

func TestIsProxyRequest(t *testing.T) {
	for _, c := range []struct {
		method, uri string
		want        bool
	}{
		{"CONNECT", "example.com:443", true},
		{"GET", "http://example.com/", true},
		{"POST", "https://example.com/x", true},
		{"GET", "/api/v1/projects", false},
		{"OPTIONS", "*", false},
		{"GET", "", false},
	} {
		r := &http.Request{Method: c.method, RequestURI: c.uri}
		if got := IsProxyRequest(r); got != c.want {
			t.Errorf("%s %s: %v, want %v", c.method, c.uri, got, c.want)
		}
	}
}
