package githost

import (
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
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

// Serve answers one smart-HTTP request for project id by running git's
// upload-pack or receive-pack in stateless-RPC mode, streaming the request
// body to it and its output to the client (Go's CGI handler cannot take the
// chunked bodies git sends for large pushes). The caller has checked that
// the project exists and that the request names a service (Service), and
// refused a receive-pack that acc does not allow.
func (h *Host) Serve(w http.ResponseWriter, r *http.Request, id, suffix string, acc Access) {
	service := Service(r.Method, suffix, r.URL.Query().Get("service"))
	policy := "none"
	switch {
	case acc.Push && acc.OnlyRef == "":
		policy = "any"
	case acc.Push:
		policy = "ref:" + acc.OnlyRef
	}
	// A credential that may push anything needs no hook; the directory
	// without one also keeps any hook in the repository itself from running.
	hooks := h.hooks
	if policy == "any" {
		hooks = h.noHooks
	}
	env := append(gitEnv(),
		"HOME="+filepath.Dir(h.root),
		// Set on git's command line by environment: a client cannot change
		// them. Every receive-pack runs rdev's hook, and checks every object
		// it receives as git fsck does (a tree with a .git entry, a
		// malicious .gitmodules, a malformed commit are refused).
		"GIT_CONFIG_COUNT=2",
		"GIT_CONFIG_KEY_0=core.hooksPath", "GIT_CONFIG_VALUE_0="+hooks,
		"GIT_CONFIG_KEY_1=receive.fsckObjects", "GIT_CONFIG_VALUE_1=true",
		"RDEV_PUSH_POLICY="+policy,
	)
	v2 := false
	if p := r.Header.Get("Git-Protocol"); p != "" && gitProtocolRe.MatchString(p) {
		env = append(env, "GIT_PROTOCOL="+p)
		v2 = strings.Contains(p, "version=2")
	}
	name := strings.TrimPrefix(service, "git-")
	w.Header().Set("Cache-Control", "no-cache, max-age=0, must-revalidate")
	w.Header().Set("Expires", "Fri, 01 Jan 1980 00:00:00 GMT")
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "application/x-"+service+"-advertisement")
		cmd := exec.CommandContext(r.Context(), h.git, name, "--stateless-rpc", "--advertise-refs", h.Path(id))
		cmd.Env = env
		out := &flushWriter{w: w}
		if !v2 {
			out.prefix = append(pktLine("# service="+service+"\n"), "0000"...)
		}
		cmd.Stdout = out
		cmd.Stderr = logWriter{h.log, id}
		if err := cmd.Run(); err != nil && !out.wrote {
			http.Error(w, "rdev: git failed", http.StatusInternalServerError)
			h.log.Error("git advertise-refs", "project", id, "service", service, "err", err)
		}
		return
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, "rdev: bad gzip request body", http.StatusBadRequest)
			return
		}
		defer zr.Close()
		body = zr
	}
	w.Header().Set("Content-Type", "application/x-"+service+"-result")
	cmd := exec.CommandContext(r.Context(), h.git, name, "--stateless-rpc", h.Path(id))
	cmd.Env = env
	cmd.Stdin = body
	out := &flushWriter{w: w}
	cmd.Stdout = out
	cmd.Stderr = logWriter{h.log, id}
	if err := cmd.Run(); err != nil {
		h.log.Warn("git "+name, "project", id, "err", err)
		if !out.wrote {
			http.Error(w, "rdev: git failed", http.StatusInternalServerError)
		}
	}
}

func pktLine(s string) []byte {
	return []byte(fmt.Sprintf("%04x%s", len(s)+4, s))
}

// flushWriter writes an optional prefix before the first bytes and flushes
// after every write, so the client sees git's progress as it comes.
type flushWriter struct {
	w      http.ResponseWriter
	prefix []byte
	wrote  bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if !f.wrote {
		f.wrote = true
		if len(f.prefix) > 0 {
			if _, err := f.w.Write(f.prefix); err != nil {
				return 0, err
			}
		}
	}
	n, err := f.w.Write(p)
	if err == nil {
		http.NewResponseController(f.w).Flush()
	}
	return n, err
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
