package egress

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"rdev.dev/rdev/internal/rdev"
)

// Gateway serves the proxy on a port shared by many sandboxes, where a
// listener cannot say who is asking: pods on Kubernetes reach rdev over
// the cluster network, not through a socket of their own. Each sandbox
// names itself with proxy credentials (Basic, in the proxy URL of its
// HTTP_PROXY variables) that rdev derived from its identity with a key
// only rdev holds: user "<project>" for a project's pods, "<project>.<task>"
// for a review. A forged or missing credential gets 407; a valid one
// only ever selects its own project's policy, read when the request
// arrives.
type Gateway struct {
	Proxy *Proxy
	// Key signs the credentials; it never leaves rdev.
	Key []byte
	// Policy returns the project's egress policy now.
	Policy func(ctx context.Context, projectID string) (rdev.Egress, error)
	// Git is rdev's git host, served for each project's own repository.
	Git http.Handler

	mu       sync.Mutex
	handlers map[string]*handler // by identity and policy
}

// maxGatewayHandlers bounds the handlers a gateway keeps (one per
// sandbox identity and policy); past it they are dropped and made again.
const maxGatewayHandlers = 4096

// IsProxyRequest reports whether r asks a proxy rather than a server:
// CONNECT, or a request line in absolute form.
func IsProxyRequest(r *http.Request) bool {
	return r.Method == http.MethodConnect || (r.RequestURI != "" && r.RequestURI[0] != '/' && r.RequestURI != "*")
}

// Credentials returns the proxy user and password of a project's pods
// (taskID empty) or of one review.
func (g *Gateway) Credentials(projectID, taskID string) (user, password string) {
	user = projectID
	if taskID != "" {
		user += "." + taskID
	}
	return user, g.sign(user)
}

// URL returns the proxy URL a sandbox is given: base (rdev's address as
// the sandbox reaches it, scheme and host) with the sandbox's credentials.
func (g *Gateway) URL(base *url.URL, projectID, taskID string) string {
	user, pass := g.Credentials(projectID, taskID)
	u := url.URL{Scheme: base.Scheme, Host: base.Host, User: url.UserPassword(user, pass)}
	return u.String()
}

func (g *Gateway) sign(user string) string {
	m := hmac.New(sha256.New, g.Key)
	m.Write([]byte("rdev egress proxy\x00" + user))
	return hex.EncodeToString(m.Sum(nil))
}

// identify returns the sandbox a request's Proxy-Authorization names, or
// false when it names none rightly.
func (g *Gateway) identify(r *http.Request) (projectID, taskID string, ok bool) {
	auth := r.Header.Get("Proxy-Authorization")
	scheme, enc, found := strings.Cut(auth, " ")
	if !found || !strings.EqualFold(scheme, "Basic") || len(enc) > 1024 {
		return "", "", false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return "", "", false
	}
	user, pass, found := strings.Cut(string(raw), ":")
	if !found || len(g.Key) == 0 || subtle.ConstantTimeCompare([]byte(pass), []byte(g.sign(user))) != 1 {
		return "", "", false
	}
	projectID, taskID, _ = strings.Cut(user, ".")
	if rdev.ValidateProjectID(projectID) != nil {
		return "", "", false
	}
	return projectID, taskID, true
}

// ServeHTTP serves one proxy request of a sandbox that named itself.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	projectID, taskID, ok := g.identify(r)
	if !ok {
		w.Header().Set("Proxy-Authenticate", `Basic realm="rdev egress"`)
		plain(w, http.StatusProxyAuthRequired, "rdev's egress proxy serves rdev's sandboxes only: use the HTTP_PROXY rdev gave this pod")
		return
	}
	r.Header.Del("Proxy-Authorization")
	policy := rdev.Egress{Mode: rdev.EgressNone}
	if g.Policy != nil {
		if p, err := g.Policy(r.Context(), projectID); err == nil {
			policy = p
		}
	}
	g.handler(Sandbox{ProjectID: projectID, TaskID: taskID, Policy: policy, Git: g.Git}).ServeHTTP(w, r)
}

// handler returns the handler of s, kept while its policy is unchanged so
// that its transport's idle connections are reused.
func (g *Gateway) handler(s Sandbox) *handler {
	pol, _ := json.Marshal(s.Policy)
	key := s.ProjectID + "\x00" + s.TaskID + "\x00" + string(pol)
	g.mu.Lock()
	defer g.mu.Unlock()
	if h, ok := g.handlers[key]; ok {
		return h
	}
	if g.handlers == nil || len(g.handlers) >= maxGatewayHandlers {
		for _, h := range g.handlers {
			h.transport.CloseIdleConnections()
		}
		g.handlers = map[string]*handler{}
	}
	// The policy this identity had before: its idle connections go.
	prefix := s.ProjectID + "\x00" + s.TaskID + "\x00"
	for k, h := range g.handlers {
		if strings.HasPrefix(k, prefix) {
			h.transport.CloseIdleConnections()
			delete(g.handlers, k)
		}
	}
	h := g.Proxy.newHandler(s)
	g.handlers[key] = h
	return h
}
