package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rdev.dev/rdev/internal/rdev"
)

// Tests talk to loopback only. "The internet" is a loopback server reached
// under a name: fakeNet resolves the name to a public-looking address and
// routes a dial of that address to the loopback server. Any other lookup
// answers "no such host" and any other dial fails the test, so neither the
// system resolver nor a real non-loopback address is ever used.
type fakeNet struct {
	t      testing.TB
	mu     sync.Mutex
	names  map[string][]string // name → addresses
	routes map[string]string   // ip:port as the proxy dials it → loopback address
	looked []string
	dialed []string
}

func newFakeNet(t testing.TB) *fakeNet {
	return &fakeNet{t: t, names: map[string][]string{}, routes: map[string]string{}}
}

// name makes host resolve to addrs.
func (n *fakeNet) name(host string, addrs ...string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.names[host] = addrs
}

// route sends dials of addr (an ip:port) to the loopback address to.
func (n *fakeNet) route(addr, to string) {
	n.t.Helper()
	if h, _, err := net.SplitHostPort(to); err != nil || !net.ParseIP(h).IsLoopback() {
		n.t.Fatalf("route %s to %s: tests reach loopback only", addr, to)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.routes[addr] = to
}

func (n *fakeNet) lookup(_ context.Context, host string) ([]net.IPAddr, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.looked = append(n.looked, host)
	addrs, ok := n.names[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	var out []net.IPAddr
	for _, a := range addrs {
		out = append(out, net.IPAddr{IP: net.ParseIP(a)})
	}
	return out, nil
}

func (n *fakeNet) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	n.dialed = append(n.dialed, addr)
	to, ok := n.routes[addr]
	n.mu.Unlock()
	if !ok || network != "tcp" {
		n.t.Errorf("proxy dialled %s %s, which the test did not expect", network, addr)
		return nil, errors.New("unexpected dial")
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", to)
}

func (n *fakeNet) dials() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.dialed)
}

func (n *fakeNet) lookups() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.looked)
}

// env is a proxy serving one sandbox on a unix socket, as in production,
// with "the internet" of the package's tests:
//
//	public.test   203.0.113.10  the web server (port 80)
//	other.test    203.0.113.11  the web server
//	a.b.pkg.test  203.0.113.12  the web server
//	metadata.test 169.254.169.254
//	rebind.test   203.0.113.10 and 10.0.0.7
//	db.test       10.1.2.4      the web server on port 5432
//	localhost     127.0.0.1 and ::1
type env struct {
	net   *fakeNet
	proxy *Proxy
	reg   *prometheus.Registry
	sock  string
	web   *httptest.Server

	mu      sync.Mutex
	refused []Refusal
}

func newEnv(t testing.TB, sb Sandbox, self string) *env {
	t.Helper()
	e := &env{net: newFakeNet(t), reg: prometheus.NewRegistry()}
	e.web = httptest.NewServer(http.HandlerFunc(web))
	t.Cleanup(e.web.Close)
	webAddr := e.web.Listener.Addr().String()
	for name, ip := range map[string]string{"public.test": "203.0.113.10", "other.test": "203.0.113.11", "a.b.pkg.test": "203.0.113.12"} {
		e.net.name(name, ip)
		e.net.route(ip+":80", webAddr)
	}
	e.net.name("metadata.test", "169.254.169.254")
	e.net.name("rebind.test", "203.0.113.10", "10.0.0.7")
	e.net.name("db.test", "10.1.2.4")
	e.net.name("localhost", "127.0.0.1", "::1")
	e.net.route("10.1.2.4:5432", webAddr)
	e.net.route("10.1.2.3:5432", webAddr)

	if sb.ProjectID == "" {
		sb.ProjectID = "p1"
	}
	if sb.Git == nil {
		sb.Git = http.HandlerFunc(fakeGit)
	}
	e.proxy = &Proxy{
		LookupIPAddr: e.net.lookup,
		Dial:         e.net.dial,
		Self:         self,
		Metrics:      NewMetrics(e.reg),
		OnRefuse: func(_ context.Context, s Sandbox, r Refusal) {
			if s.ProjectID != sb.ProjectID {
				t.Errorf("OnRefuse for project %q, want %q", s.ProjectID, sb.ProjectID)
			}
			e.mu.Lock()
			e.refused = append(e.refused, r)
			e.mu.Unlock()
		},
	}
	// A short directory: a unix socket path is limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "egress")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	e.sock = filepath.Join(dir, "s")
	ln, err := net.Listen("unix", e.sock)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.proxy.Serve(ln, sb) }()
	t.Cleanup(func() {
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

func (e *env) refusals() []Refusal {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.refused)
}

// web is the internet's one server.
func web(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/headers":
		var keys []string
		for k := range r.Header {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprint(w, strings.Join(keys, ","))
	default:
		fmt.Fprintf(w, "hello from %s%s", r.Host, r.URL.Path)
	}
}

// fakeGit stands for rdev's git host.
func fakeGit(w http.ResponseWriter, r *http.Request) {
	fmt.Fprintf(w, "git %s %s", r.Method, r.URL.RequestURI())
	if strings.Contains(r.Host, "preview") {
		fmt.Fprintf(w, " host %s", r.Host)
	}
}

// dialProxy connects to the proxy as the sandbox's relay does.
func (e *env) dialProxy(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("unix", e.sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

// send writes one raw request on a new connection and reads the answer.
// The connection, positioned after the answer's head, stays open for a
// tunnel's bytes.
func (e *env) send(t testing.TB, raw string) (*http.Response, string, *bufio.Reader, net.Conn) {
	t.Helper()
	c := e.dialProxy(t)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", raw, err)
	}
	if method == http.MethodConnect && resp.StatusCode == http.StatusOK {
		return resp, "", br, c
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body), br, c
}

func connectLine(target string) string {
	return "CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n"
}

func getLine(uri, host string) string {
	return "GET " + uri + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n"
}

// getThrough sends an HTTP GET inside an established tunnel, which stays
// open for another.
func getThrough(t testing.TB, c net.Conn, br *bufio.Reader, host, path string) (int, string) {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("GET %s through the tunnel: %v", path, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func egress(mode string, allow ...string) rdev.Egress {
	return rdev.Egress{Mode: mode, Allow: allow}
}
