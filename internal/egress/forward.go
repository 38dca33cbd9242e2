package egress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
	"time"
)

// Request kinds, the values of the kind label.
const (
	kindConnect = "connect"
	kindHTTP    = "http"
	kindGit     = "git"
)

// checkedKey carries a judged target from forward to the transport's
// dialer, which dials nothing else: looking the name up again there would
// let a DNS server answer the dial differently from the check.
type checkedKey struct{}

type checked struct {
	hostport string
	addrs    []netip.Addr
	port     uint16
}

var errUnchecked = errors.New("egress: dial of a target that was not judged")

func (h *handler) newTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil, // never the environment's proxy: this is the proxy
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			c, ok := ctx.Value(checkedKey{}).(*checked)
			if !ok || addr != c.hostport {
				return nil, errUnchecked
			}
			ctx, cancel := context.WithTimeout(ctx, DialTimeout)
			defer cancel()
			return h.dial(ctx, c.addrs, c.port)
		},
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
		// Bodies pass as they are; the transport must not ask for gzip and
		// then undo it behind the client's back.
		DisableCompression: true,
	}
}

// forward serves an absolute-form request: rdev's git host when it names
// Self, otherwise judged and sent on over plain HTTP.
func (h *handler) forward(w http.ResponseWriter, r *http.Request) {
	port := uint16(80)
	if r.URL.Scheme == "https" {
		port = 443
	}
	t, rf := parseTarget(r.URL.Host, port)
	if rf != nil {
		h.refuse(w, r, kindHTTP, *rf)
		return
	}
	if h.isSelf(t) {
		h.git(w, r)
		return
	}
	if r.URL.Scheme != "http" {
		h.refuse(w, r, kindHTTP, Refusal{Target: t.asked, Reason: "only http:// is forwarded; https goes through CONNECT", Class: ClassInvalid})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), DialTimeout)
	addrs, rf, err := h.resolve(ctx, t)
	cancel()
	if rf != nil {
		h.refuse(w, r, kindHTTP, *rf)
		return
	}
	if err != nil {
		h.fail(w, r, kindHTTP, t, err)
		return
	}
	out := r.Clone(context.WithValue(r.Context(), checkedKey{}, &checked{hostport: t.hostport(), addrs: addrs, port: t.port}))
	out.RequestURI = ""
	out.URL.Host = t.hostport()
	out.Close = false
	removeHopHeaders(out.Header)
	if _, ok := out.Header["User-Agent"]; !ok {
		out.Header["User-Agent"] = []string{""} // send none rather than Go's
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, err := h.transport.RoundTrip(out)
	if err != nil {
		h.fail(w, r, kindHTTP, t, err)
		return
	}
	defer resp.Body.Close()
	h.p.Metrics.allowed(kindHTTP)
	removeHopHeaders(resp.Header)
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	copyFlushing(w, resp.Body)
}

// copyFlushing passes each chunk on as it comes, for streamed answers
// (logs, server-sent events, git's progress).
func copyFlushing(w http.ResponseWriter, body io.Reader) {
	rc := http.NewResponseController(w)
	buf := bufPool.Get().(*[32 << 10]byte)
	defer bufPool.Put(buf)
	for {
		n, err := body.Read(buf[:])
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// hopHeaders are meaningful for one connection only, and
// Proxy-Authorization would hand a client's proxy credential to the
// target.
var hopHeaders = []string{
	"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func removeHopHeaders(h http.Header) {
	for _, v := range h.Values("Connection") {
		for _, k := range strings.Split(v, ",") {
			if k = textproto.TrimString(k); k != "" {
				h.Del(k)
			}
		}
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
	for k := range h {
		if strings.HasPrefix(k, "Proxy-") {
			delete(h, k)
		}
	}
}
