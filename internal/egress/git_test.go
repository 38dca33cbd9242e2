package egress

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"rdev.dev/rdev/internal/rdev"
)

// The git host is reached in every mode, none included, and only for the
// sandbox's own repository; nothing is looked up or dialled for it.
func TestGitHost(t *testing.T) {
	const only = "only /git/p1.git/ is served here"
	post := "POST /git/p1.git/git-upload-pack HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n0000"
	tests := []struct {
		name   string
		self   string
		req    string
		status int
		body   string // served: what the git host answered; refused: the reason
	}{
		{"OriginForm", "", getLine("/git/p1.git/info/refs?service=git-upload-pack", "x"), 200, "git GET /git/p1.git/info/refs?service=git-upload-pack"},
		{"OriginFormPost", "", post, 200, "git POST /git/p1.git/git-upload-pack"},
		{"AbsoluteToSelf", "rdev.test:7420", getLine("http://rdev.test:7420/git/p1.git/info/refs?service=git-receive-pack", "rdev.test:7420"), 200, "git GET /git/p1.git/info/refs?service=git-receive-pack"},
		{"AbsoluteToSelfDefaultPort", "rdev.test:80", getLine("http://RDEV.test./git/p1.git/info/refs", "rdev.test"), 200, "git GET /git/p1.git/info/refs"},
		{"AbsoluteToLoopbackSelf", "127.0.0.1:7420", getLine("http://127.0.0.1:7420/git/p1.git/info/refs", "127.0.0.1:7420"), 200, "git GET /git/p1.git/info/refs"},
		// The Host the sandbox sends never reaches rdev: a preview host would
		// route the request to another session's preview.
		{"HostOfAPreview", "127.0.0.1:7420", getLine("/git/p1.git/info/refs", "s2.preview.localhost"), 200, "git GET /git/p1.git/info/refs"},
		{"OtherProject", "", getLine("/git/p2.git/info/refs", "x"), 403, only},
		{"OtherProjectThroughSelf", "rdev.test:7420", getLine("http://rdev.test:7420/git/p2.git/info/refs", "rdev.test:7420"), 403, only},
		{"API", "", getLine("/api/v1/projects", "x"), 403, only},
		{"APIThroughSelf", "rdev.test:7420", getLine("http://rdev.test:7420/api/v1/projects", "rdev.test:7420"), 403, only},
		{"DotDot", "", getLine("/git/p1.git/../p2.git/info/refs", "x"), 403, only},
		{"EscapedDotDot", "", getLine("/git/p1.git/%2e%2e/p2.git/info/refs", "x"), 403, only},
		{"EscapedSlash", "", getLine("/git/p1.git%2f..%2f..%2fapi/v1/projects", "x"), 403, only},
		{"DoubledSlash", "", getLine("/git/p1.git//info/refs", "x"), 403, only},
		{"NotTheSuffix", "", getLine("/git/p1.gitx/info/refs", "x"), 403, only},
		{"NoRepository", "", getLine("/git/p1.git", "x"), 403, only},
		{"Method", "", "PUT /git/p1.git/info/refs HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 403, "method PUT is not served by rdev's git host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Sandbox{ProjectID: "p1", Policy: egress(rdev.EgressNone)}, tt.self)
			resp, body, _, _ := e.send(t, tt.req)
			want := tt.body
			if tt.status != 200 {
				want = "rdev egress: " + tt.body + "\n"
			}
			if resp.StatusCode != tt.status || body != want {
				t.Errorf("got %s %q, want %d %q", resp.Status, body, tt.status, want)
			}
			if d, l := e.net.dials(), e.net.lookups(); len(d)+len(l) != 0 {
				t.Errorf("dialled %q and looked up %q for the git host", d, l)
			}
			r := e.refusals()
			if tt.status == 200 && len(r) != 0 {
				t.Errorf("refusals: %+v", r)
			}
			if tt.status != 200 && (len(r) != 1 || r[0].Class != ClassGit || r[0].Reason != tt.body) {
				t.Errorf("OnRefuse got %+v, want once class git", r)
			}
		})
	}
}

// A CONNECT to a loopback Self is served in process: the tunnel carries
// plain HTTP for the git host, under the same path rule, and nothing is
// dialled.
func TestConnectToLoopbackSelf(t *testing.T) {
	for _, self := range []string{"127.0.0.1:7420", "localhost:7420", "[::1]:7420", "rdev.test:7420"} {
		t.Run(self, func(t *testing.T) {
			e := newEnv(t, Sandbox{ProjectID: "p1", Policy: egress(rdev.EgressNone)}, self)
			e.net.name("rdev.test", "127.0.0.1")
			resp, _, br, c := e.send(t, connectLine(self))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT %s: %s", self, resp.Status)
			}
			if code, body := getThrough(t, c, br, self, "/git/p1.git/info/refs"); code != 200 || body != "git GET /git/p1.git/info/refs" {
				t.Errorf("own repository: %d %q", code, body)
			}
			if code, body := getThrough(t, c, br, self, "/api/v1/projects"); code != 403 || body != "rdev egress: only /git/p1.git/ is served here\n" {
				t.Errorf("API: %d %q", code, body)
			}
			if d := e.net.dials(); len(d) != 0 {
				t.Errorf("dialled %q", d)
			}
		})
	}
}

// A CONNECT to a public Self is dialled in every mode, to a private
// address too, never to a link-local one.
func TestConnectToSelf(t *testing.T) {
	tests := []struct {
		name, addr string
		status     int
	}{
		{"Private", "10.0.0.5", 200},
		{"Public", "203.0.113.50", 200},
		{"LinkLocal", "169.254.169.254", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Sandbox{ProjectID: "p1", Policy: egress(rdev.EgressNone)}, "rdev.test:443")
			e.net.name("rdev.test", tt.addr)
			e.net.route(tt.addr+":443", e.web.Listener.Addr().String())
			resp, _, br, c := e.send(t, connectLine("rdev.test:443"))
			if resp.StatusCode != tt.status {
				t.Fatalf("CONNECT: %s, want %d", resp.Status, tt.status)
			}
			var wantDials []string
			if tt.status == 200 {
				wantDials = []string{tt.addr + ":443"}
				if code, body := getThrough(t, c, br, "rdev.test", "/hello"); code != 200 || body != "hello from rdev.test/hello" {
					t.Errorf("through the tunnel: %d %q", code, body)
				}
			}
			if d := e.net.dials(); !slices.Equal(d, wantDials) {
				t.Errorf("dialled %q, want %q", d, wantDials)
			}
		})
	}
}

// Refusals reach the registry under their class, and each request counts
// once under its outcome.
func TestMetrics(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: egress(rdev.EgressAllow, "public.test")}, "")
	for _, req := range []string{
		connectLine("127.0.0.1:80"),
		connectLine("other.test:80"),
		getLine("http://169.254.169.254/", "169.254.169.254"),
		getLine("/api/v1/projects", "x"),
		getLine("/git/p1.git/info/refs", "x"),
		getLine("http://public.test/", "public.test"),
	} {
		e.send(t, req)
	}
	want := `
# HELP rdev_egress_refused_total Requests the egress proxy refused, by class of reason (loopback, link-local, private, policy, ...).
# TYPE rdev_egress_refused_total counter
rdev_egress_refused_total{reason_class="git"} 1
rdev_egress_refused_total{reason_class="link-local"} 1
rdev_egress_refused_total{reason_class="loopback"} 1
rdev_egress_refused_total{reason_class="policy"} 1
# HELP rdev_egress_requests_total Requests to the egress proxy by kind (connect, http, git) and outcome (allowed, refused, failed).
# TYPE rdev_egress_requests_total counter
rdev_egress_requests_total{kind="connect",outcome="refused"} 2
rdev_egress_requests_total{kind="git",outcome="allowed"} 1
rdev_egress_requests_total{kind="git",outcome="refused"} 1
rdev_egress_requests_total{kind="http",outcome="allowed"} 1
rdev_egress_requests_total{kind="http",outcome="refused"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "rdev_egress_refused_total", "rdev_egress_requests_total"); err != nil {
		t.Error(err)
	}
	if n := len(e.refusals()); n != 4 {
		t.Errorf("OnRefuse called %d times, want 4", n)
	}
}
