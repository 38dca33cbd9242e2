package githost

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"path/filepath"
	"regexp"
	"strings"
)

// Access is what one credential may do with one repository.
type Access struct {
	// Push allows receive-pack at all.
	Push bool
	// OnlyRef, when set, is the one ref a push may update (a checkout
	// token's branch); no other ref, no deletion.
	OnlyRef string
	// Reason explains a refused push to the git client.
	Reason string
	// Actor names the credential for the audit log: a key id, or
	// "checkout/<id>" for a checkout token.
	Actor string
}

// Service returns the git service a smart-HTTP request asks for
// ("git-upload-pack" or "git-receive-pack"), or "" when the request is not
// one of the three smart-HTTP endpoints (dumb HTTP is not served).
func Service(method, suffix, query string) string {
	switch {
	case method == http.MethodGet && suffix == "info/refs" && (query == "git-upload-pack" || query == "git-receive-pack"):
		return query
	case method == http.MethodPost && (suffix == "git-upload-pack" || suffix == "git-receive-pack"):
		return suffix
	}
	return ""
}

// gitProtocolRe is the form of a Git-Protocol header git sends (e.g.
// "version=2"); anything else is dropped before it reaches git.
var gitProtocolRe = regexp.MustCompile(`^[0-9a-zA-Z]+=[0-9a-zA-Z.]+(:[0-9a-zA-Z]+=[0-9a-zA-Z.]+)*$`)

// Serve answers one smart-HTTP request for project id with git
// http-backend, streaming both bodies. The caller has checked that the
// project exists and that suffix names a service (Service), and refused a
// receive-pack that acc does not allow.
func (h *Host) Serve(w http.ResponseWriter, r *http.Request, id, suffix string, acc Access) {
	policy := "none"
	switch {
	case acc.Push && acc.OnlyRef == "":
		policy = "any"
	case acc.Push:
		policy = "ref:" + acc.OnlyRef
	}
	receive := "false"
	if acc.Push {
		receive = "true"
	}
	req := r.Clone(r.Context())
	req.URL.Path = "/git/" + id + ".git/" + suffix
	req.URL.RawPath = ""
	if p := req.Header.Get("Git-Protocol"); p != "" && !gitProtocolRe.MatchString(p) {
		req.Header.Del("Git-Protocol")
	}
	// Credentials are the server's business, not git's.
	req.Header.Del("Authorization")
	handler := &cgi.Handler{
		Path: h.git,
		Args: []string{"http-backend"},
		Root: "/git",
		Dir:  h.root,
		Env: []string{
			"GIT_PROJECT_ROOT=" + h.root,
			"GIT_HTTP_EXPORT_ALL=1",
			"REMOTE_USER=rdev",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_GLOBAL=/dev/null",
			"HOME=" + filepath.Dir(h.root),
			// Set on git's command line by environment: a client cannot
			// change either. Every receive-pack runs rdev's hook.
			"GIT_CONFIG_COUNT=2",
			"GIT_CONFIG_KEY_0=core.hooksPath", "GIT_CONFIG_VALUE_0=" + h.hooks,
			"GIT_CONFIG_KEY_1=http.receivepack", "GIT_CONFIG_VALUE_1=" + receive,
			"RDEV_PUSH_POLICY=" + policy,
		},
		Stderr: logWriter{h.log, id},
	}
	handler.ServeHTTP(w, req)
}

// logWriter sends http-backend's stderr to the log.
type logWriter struct {
	log *slog.Logger
	id  string
}

func (l logWriter) Write(p []byte) (int, error) {
	if s := strings.TrimSpace(string(p)); s != "" {
		l.log.Warn("git http-backend", "project", l.id, "stderr", s)
	}
	return len(p), nil
}

var _ io.Writer = logWriter{}
