package service

import (
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strings"

	"rdev.dev/rdev/internal/egress"
	"rdev.dev/rdev/internal/rdev"
)

// importRoute decides how a project's import_from may be fetched for
// caller, before anything is fetched. An unrestricted admin key (or the
// server itself) imports anything git can clone, directly. Any other key
// imports a path on the server only under one of the operator's import
// roots, and otherwise only http(s) URLs of public addresses: the name is
// resolved and every address checked here, and git then fetches through an
// egress proxy in mode public, which checks each connection again (a name
// that resolves elsewhere the second time gains nothing). It returns the
// proxy URL git must use ("" for none) and a function that ends it.
func (s *Service) importRoute(ctx context.Context, caller *rdev.APIKey, projectID, src string) (string, func(), error) {
	none := func() {}
	if src == "" || caller == nil || caller.Unrestricted() {
		return "", none, nil
	}
	if path, ok := localPath(src); ok {
		if s.underImportRoot(path) {
			return "", none, nil
		}
		return "", none, importRefused("a path on the server can be imported only by an unrestricted admin key, or from under a directory the operator named with --import-root")
	}
	u, err := url.Parse(src)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", none, importRefused("keys other than an unrestricted admin key import only http(s) URLs")
	}
	if s.importProxy == nil {
		return "", none, importRefused("this server lets only unrestricted admin keys import")
	}
	host := u.Hostname()
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		lookup := s.importProxy.LookupIPAddr
		if lookup == nil {
			lookup = net.DefaultResolver.LookupIPAddr
		}
		ips, err := lookup(ctx, host)
		if err != nil || len(ips) == 0 {
			return "", none, rdev.Invalid("import_from", "cannot resolve %s", host)
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip.IP); ok {
				addrs = append(addrs, a.Unmap())
			}
		}
	}
	for _, a := range addrs {
		if class := egress.NonPublic(a); class != "" {
			return "", none, importRefused(host + " is a " + class + " address (" + a.String() + "): keys other than an unrestricted admin key import from public addresses only")
		}
	}
	return s.startImportProxy(projectID)
}

// startImportProxy serves the import proxy on a loopback port for one
// import, answering only to credentials made for it.
func (s *Service) startImportProxy(projectID string) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	public := rdev.Egress{Mode: rdev.EgressPublic}
	gw := &egress.Gateway{Proxy: s.importProxy, Key: key,
		Policy: func(context.Context, string) (rdev.Egress, error) { return public, nil }}
	srv := &http.Server{Handler: gw, ReadHeaderTimeout: egress.HeaderTimeout}
	go srv.Serve(ln)
	base := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	return gw.URL(base, projectID, ""), func() { srv.Close() }, nil
}

func importRefused(why string) error {
	return &rdev.ForbiddenError{Field: "import_from", Message: "cannot import: " + why}
}

// localPath returns the path src names on the server, if it names one.
func localPath(src string) (string, bool) {
	if p, ok := strings.CutPrefix(src, "file://"); ok {
		return p, true
	}
	if strings.HasPrefix(src, "/") {
		return src, true
	}
	return "", false
}

// underImportRoot reports whether path, its links resolved, lies under
// one of the operator's import roots.
func (s *Service) underImportRoot(path string) bool {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	for _, root := range s.importRoots {
		r, err := filepath.EvalSymlinks(root)
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(r, real); err == nil && rel != ".." && !strings.HasPrefix(rel, "../") {
			return true
		}
	}
	return false
}
