// Package egress is rdev's egress proxy: the only way out of a sandbox.
//
// Code started from a project's files runs in a network namespace with
// loopback only; HTTP_PROXY, HTTPS_PROXY and ALL_PROXY point at a relay
// that forwards each connection to a listener of this proxy, one listener
// per sandbox, so the listener names the project the connection speaks
// for. The proxy serves CONNECT tunnels and absolute-form HTTP requests
// after judging the target against the project's rdev.Egress, and serves
// rdev's own git host (the project's repository only) in process.
//
// Every address is judged before it is dialled, and only the judged
// address is dialled: names are resolved once, by the proxy, so a DNS
// server cannot answer one address to the check and another to the dial.
package egress

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"rdev.dev/rdev/internal/rdev"
)

// Bounds of one sandbox's connections.
const (
	// DialTimeout bounds the lookup and the connection to a target.
	DialTimeout = 10 * time.Second
	// DefaultIdleTimeout ends a tunnel in which neither side has sent a byte
	// for that long.
	DefaultIdleTimeout = 10 * time.Minute
	// HeaderTimeout bounds the reading of a request line and its headers.
	HeaderTimeout = 10 * time.Second
	// MaxHeaderBytes bounds a request line (the CONNECT line included) and
	// its headers.
	MaxHeaderBytes = 32 << 10
	// MaxConns bounds the connections Serve holds open for one sandbox
	// (more are closed at once), so that a sandbox cannot spend rdev's
	// file descriptors.
	MaxConns = 256
)

// Sandbox is who a listener speaks for and what it may reach. (The name is
// not Scope: rdev.Scope is an API key's permission.)
type Sandbox struct {
	ProjectID string
	SessionID string // empty outside a session
	TaskID    string // the review's task; empty outside a review
	Policy    rdev.Egress
	// Git is rdev's git host. It receives, in process and unchanged but for
	// the proxy headers, the requests for /git/<ProjectID>.git/... and no
	// others; it authenticates them itself. Nil: no git host.
	Git http.Handler
}

// Refusal is why the proxy refused a request.
type Refusal struct {
	Target string // host:port as asked, or the path asked of the git host
	Reason string // short, for a human: "loopback address 127.0.0.1"
	Class  string // one of the Class constants
}

// Proxy judges and carries a sandbox's outgoing connections. The zero
// value uses the system resolver and dialer; fields must not change once a
// handler is serving.
type Proxy struct {
	// LookupIPAddr resolves names; nil: net.DefaultResolver.LookupIPAddr.
	LookupIPAddr func(ctx context.Context, host string) ([]net.IPAddr, error)
	// Dial connects to an address the proxy has judged: always an ip:port
	// literal over "tcp". Nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Self is the host:port of rdev's public URL. Absolute-form requests to
	// it are served by Sandbox.Git (its repository paths only); CONNECT to
	// it is admitted in every mode and to a private address, since a push
	// over TLS needs it, but a loopback Self is served in process instead
	// of dialled, so a tunnel cannot reach rdev's API on the loopback side.
	Self string
	// IdleTimeout ends quiet tunnels; 0: DefaultIdleTimeout.
	IdleTimeout time.Duration
	Metrics     *Metrics // nil: none
	// OnRefuse is called for refused requests, for the audit log, on the
	// request's goroutine before the answer is written: for each of a
	// sandbox's first AuditBurst refusals, then at most AuditRate a
	// second (a loop of refused requests cannot flood the audit log; the
	// metrics count every refusal, and those not reported too).
	OnRefuse func(ctx context.Context, s Sandbox, r Refusal)
	Log      *slog.Logger // nil: none
}

// How often a sandbox's refusals are reported to OnRefuse: AuditBurst at
// once, then AuditRate a second.
const (
	AuditBurst            = 20
	AuditRate  rate.Limit = 1
)

// Handler serves the connections of one sandbox: CONNECT, absolute-form
// requests, and origin-form requests for the sandbox's repository. Its
// forwarding transport (and so its idle connections) belongs to s alone,
// so a connection judged for one project never serves another.
func (p *Proxy) Handler(s Sandbox) http.Handler { return p.newHandler(s) }

// Serve serves s's connections from ln until ln is closed, and then closes
// every connection it accepted, tunnels included, so that closing a
// sandbox's listener ends its egress. It returns nil once ln is closed, or
// the error that ended accepting.
func (p *Proxy) Serve(ln net.Listener, s Sandbox) error {
	h := p.newHandler(s)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: HeaderTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          h.errorLog(),
	}
	err := srv.Serve(limitListener(ln, MaxConns))
	srv.Close()
	h.closeAll()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// handler is one sandbox's proxy.
type handler struct {
	p         *Proxy
	s         Sandbox
	policy    policy
	reports   *rate.Limiter // of OnRefuse
	log       *slog.Logger
	self      target // zero when Proxy.Self is empty or unreadable
	transport *http.Transport

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // hijacked connections, closed by closeAll
	closed bool
}

func (p *Proxy) newHandler(s Sandbox) *handler {
	log := p.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("project", s.ProjectID)
	if s.SessionID != "" {
		log = log.With("session", s.SessionID)
	}
	if s.TaskID != "" {
		log = log.With("task", s.TaskID)
	}
	h := &handler{p: p, s: s, log: log, conns: map[net.Conn]struct{}{}, reports: rate.NewLimiter(AuditRate, AuditBurst)}
	var bad []string
	h.policy, bad = newPolicy(s.Policy)
	if len(bad) > 0 {
		log.Warn("egress rules that do not parse admit nothing", "rules", bad)
	}
	if p.Self != "" {
		t, rf := parseTarget(p.Self, 0)
		if rf != nil {
			log.Warn("egress proxy: Self is not host:port; rdev's git host is reachable by origin-form only", "self", p.Self)
		} else {
			h.self = t
		}
	}
	h.transport = h.newTransport()
	return h
}

// errorLog takes the http.Server's complaints (bad requests, TLS spoken to
// a plain listener): the sandbox's doing, so debug level.
func (h *handler) errorLog() *log.Logger {
	return slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		h.connect(w, r)
	case r.URL.Host == "":
		// Origin-form: the relay for rdev's git host, or a client that thinks
		// it speaks to a web server; only the git host answers here.
		h.git(w, r)
	default:
		h.forward(w, r)
	}
}

// isSelf reports whether t is rdev's public host:port.
func (h *handler) isSelf(t target) bool {
	return h.self.host != "" && t.host == h.self.host && t.port == h.self.port
}

// resolve judges t and returns the addresses to dial, in order. A
// refusal is returned before any lookup when the name alone decides it.
func (h *handler) resolve(ctx context.Context, t target) ([]netip.Addr, *Refusal, error) {
	if t.addr.IsValid() {
		if rf := h.policy.admitAddr(t, t.addr, false); rf != nil {
			return nil, rf, nil
		}
		return []netip.Addr{t.addr}, nil, nil
	}
	if rf := h.policy.admitName(t); rf != nil {
		return nil, rf, nil
	}
	addrs, err := h.lookup(ctx, t.host)
	if err != nil {
		return nil, nil, err
	}
	if rf := h.policy.admitAll(t, addrs); rf != nil {
		return nil, rf, nil
	}
	return addrs, nil, nil
}

// errNoAddress is a lookup that succeeded with no address.
var errNoAddress = errors.New("no address")

func (h *handler) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	lookup := h.p.LookupIPAddr
	if lookup == nil {
		lookup = net.DefaultResolver.LookupIPAddr
	}
	ips, err := lookup(ctx, host)
	if err != nil {
		return nil, err
	}
	addrs := make([]netip.Addr, 0, len(ips))
	for _, ip := range ips {
		a, ok := netip.AddrFromSlice(ip.IP)
		if !ok {
			continue
		}
		// net.IP holds IPv4 answers in the 16-byte mapped form.
		addrs = append(addrs, a.Unmap().WithZone(ip.Zone))
	}
	if len(addrs) == 0 {
		return nil, errNoAddress
	}
	return addrs, nil
}

// dial connects to the first of addrs that answers. Every address has been
// judged; each later one gets a share of the time left, as net.Dialer does.
func (h *handler) dial(ctx context.Context, addrs []netip.Addr, port uint16) (net.Conn, error) {
	dial := h.p.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var first error
	for i, a := range addrs {
		dctx, cancel := ctx, context.CancelFunc(func() {})
		if dl, ok := ctx.Deadline(); ok && i < len(addrs)-1 {
			share := max(time.Until(dl)/time.Duration(len(addrs)-i), 2*time.Second)
			dctx, cancel = context.WithTimeout(ctx, share)
		}
		c, err := dial(dctx, "tcp", netip.AddrPortFrom(a.Unmap(), port).String())
		cancel()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// refuse answers 403 with the reason, counts it and reports it.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, kind string, rf Refusal) {
	h.p.Metrics.refused(kind, rf.Class)
	if h.p.OnRefuse != nil {
		if h.reports.Allow() {
			h.p.OnRefuse(r.Context(), h.s, rf)
		} else {
			h.p.Metrics.unreported()
		}
	}
	h.log.DebugContext(r.Context(), "egress refused", "kind", kind, "target", rf.Target, "reason", rf.Reason)
	plain(w, http.StatusForbidden, rf.Reason)
}

// fail answers a request the policy admitted but the network did not
// carry. The reason names the target, never the error's text, which may
// describe rdev's side of the network.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, kind string, t target, err error) {
	h.p.Metrics.failed(kind)
	if errors.Is(err, errUnchecked) {
		h.log.ErrorContext(r.Context(), "egress transport asked to dial a target it was not given", "target", t.asked, "err", err)
	} else {
		h.log.DebugContext(r.Context(), "egress failed", "kind", kind, "target", t.asked, "err", err)
	}
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		plain(w, http.StatusGatewayTimeout, "timed out reaching "+t.asked)
	case errors.As(err, &dnsErr) || errors.Is(err, errNoAddress):
		plain(w, http.StatusBadGateway, "cannot resolve "+t.host)
	default:
		plain(w, http.StatusBadGateway, "cannot connect to "+t.asked)
	}
}

func plain(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	io.WriteString(w, "rdev egress: "+strings.ReplaceAll(msg, "\n", " ")+"\n")
}

// track registers a hijacked connection for closeAll; false when the
// handler is closed (the caller then closes c).
func (h *handler) track(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.conns[c] = struct{}{}
	return true
}

func (h *handler) untrack(c net.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
}

func (h *handler) closeAll() {
	h.mu.Lock()
	h.closed = true
	conns := h.conns
	h.conns = nil
	h.mu.Unlock()
	for c := range conns {
		c.Close()
	}
	h.transport.CloseIdleConnections()
}

// limitListener hands out at most n open connections of ln at once; a
// connection past that is closed as soon as it is accepted (waiting for a
// slot could outlast ln). Unlike x/net's netutil.LimitListener, its
// connections keep CloseWrite, which net/http needs to close gracefully
// after an error answer and tunnels need to pass on a half-close.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limited{Listener: ln, slots: make(chan struct{}, n)}
}

type limited struct {
	net.Listener
	slots chan struct{}
}

func (l *limited) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
		default:
			c.Close()
		}
	}
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
