package egress

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// git serves a request for rdev's git host in process: the sandbox's own
// repository, by the two methods smart HTTP uses, and nothing else (not
// another project's repository, not the API).
func (h *handler) git(w http.ResponseWriter, r *http.Request) {
	prefix := "/git/" + h.s.ProjectID + ".git/"
	refuse := func(reason string) {
		h.refuse(w, r, kindGit, Refusal{Target: r.URL.Path, Reason: reason, Class: ClassGit})
	}
	switch {
	case h.s.Git == nil || h.s.ProjectID == "":
		refuse("rdev's git host is not served to this sandbox")
	case !ownRepository(r.URL, prefix):
		refuse("only " + prefix + " is served here")
	case r.Method != http.MethodGet && r.Method != http.MethodPost:
		refuse("method " + r.Method + " is not served by rdev's git host")
	default:
		out := r.Clone(r.Context())
		out.URL = &url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery}
		out.RequestURI = out.URL.RequestURI()
		removeHopHeaders(out.Header)
		// Always rdev's own host: a Host the sandbox chose could make the
		// handler route the request elsewhere (another session's preview
		// host).
		out.Host = h.self.asked
		h.p.Metrics.allowed(kindGit)
		h.s.Git.ServeHTTP(w, out)
	}
}

// ownRepository reports whether u is a path under prefix as written, with
// nothing a router could read differently: no escapes (a router may match
// the raw path), no dot segments, no doubled slashes.
func ownRepository(u *url.URL, prefix string) bool {
	p := u.Path
	if u.RawPath != "" || strings.Contains(u.EscapedPath(), "%") || !strings.HasPrefix(p, prefix) {
		return false
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") {
		clean += "/"
	}
	return clean == p
}
