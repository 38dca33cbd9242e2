package egress

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const established = "HTTP/1.1 200 Connection established\r\n\r\n"

// connect serves CONNECT host:port: judge, dial, answer 200, splice.
func (h *handler) connect(w http.ResponseWriter, r *http.Request) {
	// The authority of the CONNECT line, never a Host header: a
	// "CONNECT /path" names no target.
	t, rf := parseTarget(r.URL.Host, 0)
	if rf != nil {
		h.refuse(w, r, kindConnect, *rf)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), DialTimeout)
	defer cancel()
	self := h.isSelf(t)
	resolve := h.resolve
	if self {
		resolve = h.resolveSelf
	}
	addrs, rf, err := resolve(ctx, t)
	if rf != nil {
		h.refuse(w, r, kindConnect, *rf)
		return
	}
	if err != nil {
		h.fail(w, r, kindConnect, t, err)
		return
	}
	if self && slices.ContainsFunc(addrs, isLoopback) {
		h.tunnelToGit(w, r)
		return
	}
	up, err := h.dial(ctx, addrs, t.port)
	if err != nil {
		h.fail(w, r, kindConnect, t, err)
		return
	}
	client, brw, ok := h.hijack(w, r, t)
	if !ok {
		up.Close()
		return
	}
	h.p.Metrics.allowed(kindConnect)
	// A client may send its first bytes (a TLS hello) right behind the
	// CONNECT line, into the server's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		if _, err := up.Write(b); err != nil {
			client.Close()
			up.Close()
			return
		}
	}
	if !h.track(client) {
		client.Close()
		up.Close()
		return
	}
	defer h.untrack(client)
	h.p.Metrics.tunnelOpened()
	defer h.p.Metrics.tunnelClosed()
	splice(client, up, h.idleTimeout())
}

// resolveSelf judges CONNECT to rdev's public host. Any mode admits it,
// and a private address too (rdev behind a load balancer on a private
// network); a loopback address is returned for connect to serve in
// process rather than dial.
func (h *handler) resolveSelf(ctx context.Context, t target) ([]netip.Addr, *Refusal, error) {
	if t.host == "localhost" {
		return []netip.Addr{netip.IPv6Loopback()}, nil, nil
	}
	addrs := []netip.Addr{t.addr}
	if !t.addr.IsValid() {
		var err error
		if addrs, err = h.lookup(ctx, t.host); err != nil {
			return nil, nil, err
		}
	}
	for _, a := range addrs {
		if r, class := classify(a); r == reachNever && class != ClassLoopback {
			return nil, &Refusal{Target: t.asked, Reason: class + " address " + a.String(), Class: class}, nil
		}
	}
	return addrs, nil, nil
}

func isLoopback(a netip.Addr) bool {
	_, class := classify(a)
	return class == ClassLoopback
}

// tunnelToGit serves a CONNECT to a loopback Self: the tunnel carries
// plain HTTP for the git host, served in process with the same path rule
// as origin-form requests. A client speaking TLS inside it gets nothing.
func (h *handler) tunnelToGit(w http.ResponseWriter, r *http.Request) {
	client, brw, ok := h.hijack(w, r, target{asked: r.URL.Host})
	if !ok {
		return
	}
	if !h.track(client) {
		client.Close()
		return
	}
	defer h.untrack(client)
	h.p.Metrics.allowed(kindConnect)
	h.p.Metrics.tunnelOpened()
	defer h.p.Metrics.tunnelClosed()
	c := &bufferedConn{Conn: client, r: brw.Reader}
	ln := &oneConnListener{c: c, done: make(chan struct{})}
	srv := &http.Server{
		Handler:           http.HandlerFunc(h.git),
		ReadHeaderTimeout: HeaderTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		IdleTimeout:       h.idleTimeout(),
		ErrorLog:          h.errorLog(),
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				ln.Close()
			}
		},
	}
	srv.Serve(ln)
}

// hijack takes the client's connection and answers 200 on it. On failure
// it has answered or counted the failure itself.
func (h *handler) hijack(w http.ResponseWriter, r *http.Request, t target) (net.Conn, *bufio.ReadWriter, bool) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Not hijackable (HTTP/2): w still answers.
		h.fail(w, r, kindConnect, t, err)
		return nil, nil, false
	}
	// The server's deadlines were for reading a request; the tunnel sets
	// its own.
	c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(established)); err != nil {
		c.Close()
		h.p.Metrics.failed(kindConnect)
		return nil, nil, false
	}
	return c, brw, true
}

func (h *handler) idleTimeout() time.Duration {
	if h.p.IdleTimeout > 0 {
		return h.p.IdleTimeout
	}
	return DefaultIdleTimeout
}

// splice copies both ways until both sides are done, then closes both. A
// side that ends its writing (EOF) is passed on as a half close, so a
// client can send a request, shut its side and still read the answer.
func splice(client, up net.Conn, idle time.Duration) {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	c := idleConn{Conn: client, last: &last, idle: idle}
	u := idleConn{Conn: up, last: &last, idle: idle}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(u, c)
	}()
	pipe(c, u)
	wg.Wait()
	client.Close()
	up.Close()
}

var bufPool = sync.Pool{New: func() any { return new([32 << 10]byte) }}

func pipe(dst, src idleConn) {
	buf := bufPool.Get().(*[32 << 10]byte)
	defer bufPool.Put(buf)
	_, err := io.CopyBuffer(dst, src, buf[:])
	if err != nil {
		// An error or a quiet tunnel ends both directions at once.
		dst.Close()
		src.Close()
		return
	}
	if cw, ok := dst.Conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		dst.Close()
	}
}

// idleConn is one side of a tunnel. Its deadlines move with activity on
// either side: a download that streams for an hour over a silent upload
// is not idle.
type idleConn struct {
	net.Conn
	last *atomic.Int64 // unix nanoseconds of the tunnel's latest byte
	idle time.Duration
}

func (c idleConn) Read(b []byte) (int, error) {
	for {
		c.Conn.SetReadDeadline(time.Now().Add(c.idle))
		n, err := c.Conn.Read(b)
		if n > 0 {
			c.last.Store(time.Now().UnixNano())
		}
		if n == 0 && isTimeout(err) && time.Since(time.Unix(0, c.last.Load())) < c.idle {
			continue
		}
		return n, err
	}
}

func (c idleConn) Write(b []byte) (int, error) {
	c.Conn.SetWriteDeadline(time.Now().Add(c.idle))
	return c.Conn.Write(b)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// bufferedConn reads first what the server had buffered behind the
// CONNECT line.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufferedConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// oneConnListener hands one connection to an http.Server, then blocks
// until closed.
type oneConnListener struct {
	c    net.Conn
	once sync.Once
	done chan struct{}
	used atomic.Bool
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.used.CompareAndSwap(false, true) {
		return l.c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }
