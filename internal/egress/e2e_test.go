package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// A client configured with a proxy, as curl and git are through
// HTTP_PROXY and HTTPS_PROXY, works end to end: plain HTTP in absolute
// form, HTTPS through CONNECT, and it sees refusals.
func TestGoClientThroughProxy(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: public}, "")
	tlsWeb := httptest.NewTLSServer(http.HandlerFunc(web))
	t.Cleanup(tlsWeb.Close)
	e.net.name("secure.test", "203.0.113.20")
	e.net.route("203.0.113.20:443", tlsWeb.Listener.Addr().String())

	roots := x509.NewCertPool()
	roots.AddCert(tlsWeb.Certificate())
	tr := &http.Transport{
		Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "egress.invalid:3128"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		},
		// httptest's certificate names example.com.
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "example.com"},
	}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	for _, u := range []string{"http://public.test/hello", "https://secure.test/hello"} {
		resp, err := client.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := "hello from " + strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://"); resp.StatusCode != 200 || string(body) != want {
			t.Errorf("GET %s: %s %q, want %q", u, resp.Status, body, want)
		}
	}

	resp, err := client.Get("http://169.254.169.254/latest/meta-data/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 403 || string(body) != "rdev egress: link-local address 169.254.169.254\n" {
		t.Errorf("metadata over HTTP: %s %q", resp.Status, body)
	}
	if _, err := client.Get("https://127.0.0.1/"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("loopback over HTTPS: %v, want the proxy's Forbidden", err)
	}
}

// half is a server that reads until the client's EOF, then answers how
// much it read: it needs a tunnel that passes a half close on.
func half(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprintf(c, "read %d", n)
			}()
		}
	}()
	return ln
}

func TestTunnelHalfClose(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: public}, "")
	e.net.route("203.0.113.30:9", half(t).Addr().String())
	// The first bytes ride with the CONNECT line, as a TLS hello may.
	resp, _, br, c := e.send(t, connectLine("203.0.113.30:9")+"hello")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	io.WriteString(c, ", world")
	c.(*net.UnixConn).CloseWrite()
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "read 12" {
		t.Errorf("after a half close: %q, %v; want %q", got, err, "read 12")
	}
}

// Closing a sandbox's listener ends its tunnels.
func TestServeClosesTunnels(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: public}, "")
	ln, err := net.Listen("unix", e.sock+"2")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.proxy.Serve(ln, Sandbox{ProjectID: "p1", Policy: public}) }()
	c, err := net.Dial("unix", e.sock+"2")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, connectLine("public.test:80"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	ln.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("tunnel read after Serve returned: %v, want EOF", err)
	}
}

// A tunnel in which nothing moves ends after IdleTimeout.
func TestTunnelIdle(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: public}, "")
	e.proxy.IdleTimeout = 50 * time.Millisecond
	resp, _, br, _ := e.send(t, connectLine("public.test:80"))
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	start := time.Now()
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("idle tunnel: %v, want EOF", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("idle tunnel lasted %v", d)
	}
}

// An oversized CONNECT line is refused by the server before the proxy
// sees it.
func TestHeaderLimit(t *testing.T) {
	e := newEnv(t, Sandbox{Policy: public}, "")
	host := strings.Repeat("a", MaxHeaderBytes+1) + ":443"
	resp, _, _, _ := e.send(t, connectLine(host))
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("got %s, want 431", resp.Status)
	}
	if d, l := e.net.dials(), e.net.lookups(); len(d)+len(l) != 0 {
		t.Errorf("dialled %q and looked up %q", d, l)
	}
}

// The handler works without Serve, in any http.Server; a zero Proxy with
// mode none never reaches the system resolver or dialer.
func TestHandlerAlone(t *testing.T) {
	srv := httptest.NewServer((&Proxy{}).Handler(Sandbox{ProjectID: "p1", Policy: rdev.Egress{Mode: rdev.EgressNone}}))
	t.Cleanup(srv.Close)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, connectLine("public.test:443"))
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 403 {
		t.Fatalf("CONNECT in mode none: %v %v", resp, err)
	}
}
