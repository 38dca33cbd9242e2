package egress

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"rdev.dev/rdev/internal/rdev"
)

var public = egress(rdev.EgressPublic)

func TestAllowed(t *testing.T) {
	tests := []struct {
		name   string
		policy rdev.Egress
		target string // host:port, as CONNECT and the absolute-form URL name it
		dial   string // the one address the proxy may dial
	}{
		{"PublicName", public, "public.test:80", "203.0.113.10:80"},
		{"PublicLiteral", public, "203.0.113.10:80", "203.0.113.10:80"},
		{"PublicLiteralV6", public, "[2001:db8::10]:80", "[2001:db8::10]:80"},
		{"PublicNAT64OfPublic", public, "[64:ff9b::cb00:710a]:80", "[64:ff9b::cb00:710a]:80"},
		{"NameNormalised", egress(rdev.EgressAllow, "public.test"), "PUBLIC.Test.:80", "203.0.113.10:80"},
		{"AllowName", egress(rdev.EgressAllow, "public.test"), "public.test:80", "203.0.113.10:80"},
		{"AllowNamePort", egress(rdev.EgressAllow, "public.test:80"), "public.test:80", "203.0.113.10:80"},
		{"AllowWildcard", egress(rdev.EgressAllow, "*.pkg.test"), "a.b.pkg.test:80", "203.0.113.12:80"},
		{"AllowNetPortPrivate", egress(rdev.EgressAllow, "10.1.2.0/24:5432"), "10.1.2.3:5432", "10.1.2.3:5432"},
		{"AllowNameAndNetPrivate", egress(rdev.EgressAllow, "db.test", "10.1.2.0/24"), "db.test:5432", "10.1.2.4:5432"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Sandbox{Policy: tt.policy}, "")
			for _, ip := range []string{"[2001:db8::10]:80", "[64:ff9b::cb00:710a]:80"} {
				e.net.route(ip, e.web.Listener.Addr().String())
			}
			want := "hello from " + tt.target + "/hello"

			resp, _, br, c := e.send(t, connectLine(tt.target))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("CONNECT %s: %s", tt.target, resp.Status)
			}
			if code, body := getThrough(t, c, br, tt.target, "/hello"); code != 200 || body != want {
				t.Errorf("GET through CONNECT: %d %q, want 200 %q", code, body, want)
			}

			resp, body, _, _ := e.send(t, getLine("http://"+tt.target+"/hello", tt.target))
			if resp.StatusCode != 200 || body != want {
				t.Errorf("absolute-form GET: %s %q, want 200 %q", resp.Status, body, want)
			}
			if got := e.net.dials(); !slices.Equal(got, []string{tt.dial, tt.dial}) {
				t.Errorf("dialled %q, want %s twice", got, tt.dial)
			}
			if n := testutil.ToFloat64(e.proxy.Metrics.requests.WithLabelValues(kindConnect, "allowed")); n != 1 {
				t.Errorf("allowed CONNECTs counted %v, want 1", n)
			}
			if n := testutil.ToFloat64(e.proxy.Metrics.requests.WithLabelValues(kindHTTP, "allowed")); n != 1 {
				t.Errorf("allowed forwards counted %v, want 1", n)
			}
			if r := e.refusals(); len(r) != 0 {
				t.Errorf("refusals: %+v", r)
			}
		})
	}
}

func TestRefusedBeforeDial(t *testing.T) {
	none := egress(rdev.EgressNone)
	allow := func(rules ...string) rdev.Egress { return egress(rdev.EgressAllow, rules...) }
	notListed := "not in the project's allow-list"
	tests := []struct {
		name    string
		policy  rdev.Egress
		req     string
		target  string // Refusal.Target
		reason  string
		class   string
		lookups []string // the names the proxy may look up
	}{
		{"ConnectLoopback", public, connectLine("127.0.0.1:80"), "127.0.0.1:80", "loopback address 127.0.0.1", ClassLoopback, nil},
		{"ConnectLoopbackV6", public, connectLine("[::1]:443"), "[::1]:443", "loopback address ::1", ClassLoopback, nil},
		{"ConnectMetadata", public, connectLine("169.254.169.254:80"), "169.254.169.254:80", "link-local address 169.254.169.254", ClassLinkLocal, nil},
		{"ConnectMappedMetadata", public, connectLine("[::ffff:169.254.169.254]:80"), "[::ffff:169.254.169.254]:80", "link-local address ::ffff:169.254.169.254", ClassLinkLocal, nil},
		{"ConnectPrivate", public, connectLine("10.0.0.1:443"), "10.0.0.1:443", "private address 10.0.0.1", ClassPrivate, nil},
		{"ConnectNameToMetadata", public, connectLine("metadata.test:80"), "metadata.test:80", "link-local address 169.254.169.254", ClassLinkLocal, []string{"metadata.test"}},
		{"ConnectNamePublicAndPrivate", public, connectLine("rebind.test:443"), "rebind.test:443", "private address 10.0.0.7", ClassPrivate, []string{"rebind.test"}},
		{"ConnectUnspecified", public, connectLine("0.0.0.0:80"), "0.0.0.0:80", "unspecified address 0.0.0.0", ClassUnspecified, nil},
		{"ConnectNAT64OfLoopback", public, connectLine("[64:ff9b::7f00:1]:80"), "[64:ff9b::7f00:1]:80", "loopback address 64:ff9b::7f00:1", ClassLoopback, nil},
		{"ConnectPortZero", public, connectLine("public.test:0"), "public.test:0", "the port must be between 1 and 65535", ClassInvalid, nil},
		{"ConnectPortTooBig", public, connectLine("public.test:65536"), "public.test:65536", "the port must be between 1 and 65535", ClassInvalid, nil},
		{"ConnectPathForm", public, "CONNECT /x HTTP/1.1\r\nHost: public.test:80\r\n\r\n", "", "the target must be host:port", ClassInvalid, nil},
		{"ConnectNoPort", public, connectLine("public.test"), "public.test", "the target must be host:port", ClassInvalid, nil},
		{"GetLoopback", public, getLine("http://127.0.0.1/", "127.0.0.1"), "127.0.0.1", "loopback address 127.0.0.1", ClassLoopback, nil},
		{"GetMetadata", public, getLine("http://169.254.169.254/latest/meta-data/", "169.254.169.254"), "169.254.169.254", "link-local address 169.254.169.254", ClassLinkLocal, nil},
		{"GetNameToMetadata", public, getLine("http://metadata.test/", "metadata.test"), "metadata.test", "link-local address 169.254.169.254", ClassLinkLocal, []string{"metadata.test"}},
		{"GetHTTPS", public, getLine("https://public.test/", "public.test"), "public.test", "only http:// is forwarded; https goes through CONNECT", ClassInvalid, nil},
		{"NoneConnect", none, connectLine("public.test:443"), "public.test:443", "egress mode none", ClassPolicy, nil},
		{"NoneGet", none, getLine("http://public.test/", "public.test"), "public.test", "egress mode none", ClassPolicy, nil},
		{"NoneLiteral", none, connectLine("203.0.113.10:80"), "203.0.113.10:80", "egress mode none", ClassPolicy, nil},
		{"AllowUnlisted", allow("public.test"), connectLine("other.test:80"), "other.test:80", notListed, ClassPolicy, nil},
		{"AllowWildcardNotApex", allow("*.pkg.test"), connectLine("pkg.test:80"), "pkg.test:80", notListed, ClassPolicy, nil},
		{"AllowNameOtherPort", allow("public.test:443"), connectLine("public.test:80"), "public.test:80", notListed, ClassPolicy, nil},
		{"AllowLiteralNotByName", allow("public.test"), connectLine("203.0.113.10:80"), "203.0.113.10:80", notListed, ClassPolicy, nil},
		{"AllowGetUnlisted", allow("public.test"), getLine("http://other.test/", "other.test"), "other.test", notListed, ClassPolicy, nil},
		{"AllowNetOtherPort", allow("10.1.2.0/24:5432"), connectLine("10.1.2.3:22"), "10.1.2.3:22", "private address 10.1.2.3", ClassPrivate, nil},
		{"AllowNameToPrivate", allow("db.test"), connectLine("db.test:5432"), "db.test:5432", "private address 10.1.2.4", ClassPrivate, []string{"db.test"}},
		{"AllowNetNeverLoopback", allow("127.0.0.0/8"), connectLine("127.0.0.1:80"), "127.0.0.1:80", "loopback address 127.0.0.1", ClassLoopback, nil},
		{"AllowNetNeverMetadata", allow("169.254.0.0/16"), connectLine("169.254.169.254:80"), "169.254.169.254:80", "link-local address 169.254.169.254", ClassLinkLocal, nil},
		{"AllowNetNeverUnspecified", allow("0.0.0.0/0"), connectLine("0.0.0.0:80"), "0.0.0.0:80", "unspecified address 0.0.0.0", ClassUnspecified, nil},
		{"AllowNameNeverLoopback", allow("localhost"), connectLine("localhost:80"), "localhost:80", "loopback address 127.0.0.1", ClassLoopback, []string{"localhost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, Sandbox{Policy: tt.policy}, "")
			resp, body, _, _ := e.send(t, tt.req)
			if resp.StatusCode != http.StatusForbidden || body != "rdev egress: "+tt.reason+"\n" {
				t.Errorf("got %s %q, want 403 %q", resp.Status, body, "rdev egress: "+tt.reason)
			}
			if d := e.net.dials(); len(d) != 0 {
				t.Errorf("dialled %q", d)
			}
			if l := e.net.lookups(); !slices.Equal(l, tt.lookups) {
				t.Errorf("looked up %q, want %q", l, tt.lookups)
			}
			want := Refusal{Target: tt.target, Reason: tt.reason, Class: tt.class}
			if r := e.refusals(); len(r) != 1 || r[0] != want {
				t.Errorf("OnRefuse got %+v, want once %+v", r, want)
			}
			kind := kindHTTP
			if strings.HasPrefix(tt.req, "CONNECT") {
				kind = kindConnect
			}
			if n := testutil.ToFloat64(e.proxy.Metrics.requests.WithLabelValues(kind, "refused")); n != 1 {
				t.Errorf("refused %s requests counted %v, want 1", kind, n)
			}
			if n := testutil.ToFloat64(e.proxy.Metrics.refusals.WithLabelValues(tt.class)); n != 1 {
				t.Errorf("refusals of class %s counted %v, want 1", tt.class, n)
			}
		})
	}
}

func TestForwardStripsProxyHeaders(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: public}, "")
	req := "GET http://public.test/headers HTTP/1.1\r\nHost: public.test\r\n" +
		"Proxy-Authorization: Basic eDp5\r\nProxy-Foo: 1\r\nConnection: close, X-Secret\r\n" +
		"X-Secret: 1\r\nKeep-Alive: 5\r\nX-Keep: 1\r\n\r\n"
	resp, body, _, _ := e.send(t, req)
	if resp.StatusCode != 200 || body != "X-Keep" {
		t.Errorf("the target saw headers %q (%s), want only X-Keep", body, resp.Status)
	}
}

func TestUnresolvedIsBadGateway(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: public}, "")
	resp, body, _, _ := e.send(t, connectLine("nowhere.test:443"))
	if resp.StatusCode != http.StatusBadGateway || body != "rdev egress: cannot resolve nowhere.test\n" {
		t.Errorf("got %s %q", resp.Status, body)
	}
	if n := testutil.ToFloat64(e.proxy.Metrics.requests.WithLabelValues(kindConnect, "failed")); n != 1 {
		t.Errorf("failed CONNECTs counted %v, want 1", n)
	}
	if r := e.refusals(); len(r) != 0 {
		t.Errorf("a failure is no refusal: %+v", r)
	}
}

// A sandbox that loops on refused requests cannot flood the audit log:
// past AuditBurst its refusals reach OnRefuse at most AuditRate a second;
// the metrics count every one, and those not reported.
func TestRefusalReportsBounded(t *testing.T) {
	e := newEnv(t, Sandbox{}, "")
	const n = 3 * AuditBurst
	start := time.Now()
	for range n {
		if resp, _, _, _ := e.send(t, connectLine("169.254.169.254:80")); resp.StatusCode != http.StatusForbidden {
			t.Fatalf("got %s", resp.Status)
		}
	}
	// The bound grows with the time the loop took, so a slow machine
	// cannot make this fail.
	reported := len(e.refusals())
	most := AuditBurst + int(time.Since(start).Seconds()*float64(AuditRate)) + 1
	if reported < AuditBurst || reported > most {
		t.Errorf("%d of %d refusals reported, want between %d and %d", reported, n, AuditBurst, most)
	}
	if got := testutil.ToFloat64(e.proxy.Metrics.refusals.WithLabelValues(ClassLinkLocal)); got != n {
		t.Errorf("refusals counted %v, want %d", got, n)
	}
	if got := testutil.ToFloat64(e.proxy.Metrics.quiet); int(got) != n-reported {
		t.Errorf("unreported refusals counted %v, want %d", got, n-reported)
	}
}

// A sandbox cannot spend rdev's file descriptors: past MaxConns open
// connections, the next is closed at once; once one ends, a new one is
// served again.
func TestServeBoundsConnections(t *testing.T) {
	e := newEnv(t, Sandbox{}, "")
	held := make([]net.Conn, MaxConns)
	for i := range held {
		held[i] = e.dialProxy(t)
	}
	// Every held connection has been accepted once the last one answers a
	// request.
	if _, err := io.WriteString(held[MaxConns-1], connectLine("169.254.169.254:80")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(held[MaxConns-1]), nil)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("the last held connection: %v %v", resp, err)
	}
	extra := e.dialProxy(t)
	if _, err := extra.Read(make([]byte, 1)); err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a connection past MaxConns: read %v, want it closed", err)
	}
	held[0].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := e.dialProxy(t)
		io.WriteString(c, connectLine("169.254.169.254:80"))
		if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil && resp.StatusCode == http.StatusForbidden {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no connection served after one ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
