package httpapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// previewCookie holds a signed link's token once it has been traded.
const previewCookie = "rdev_preview"

// previewSession returns the session a request's Host names in the host
// form <session>.<preview-domain>, or "".
func (s *Server) previewSession(r *http.Request) string {
	if s.previewDomain == "" {
		return ""
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	sid, ok := strings.CutSuffix(strings.ToLower(host), "."+s.previewDomain)
	if !ok || sid == "" || strings.Contains(sid, ".") {
		return ""
	}
	return sid
}

// servePathPreview serves the path form /preview/<session>/….
func (s *Server) servePathPreview(w http.ResponseWriter, r *http.Request) {
	sid := chi.URLParam(r, "sid")
	if !s.pathPreviews {
		previewError(w, http.StatusNotFound, "rdev: path-form previews are off on this server (a preview's script would share rdev's origin): "+
			"open the preview at its own host, "+sid+"."+s.previewDomain+", or start rdev with --preview-path-form")
		return
	}
	s.servePreview(w, r, sid, "/preview/"+sid)
}

// servePreview proxies a request to the session's preview port after
// checking access: an API key that may read the session, a signed link's
// token (traded for a cookie), or that cookie.
func (s *Server) servePreview(w http.ResponseWriter, r *http.Request, sid, prefix string) {
	sess, err := s.svc.PreviewTarget(r.Context(), sid)
	switch {
	case errors.Is(err, rdev.ErrSessionNotFound):
		previewError(w, http.StatusNotFound, "rdev: no preview for session "+sid+": it does not exist or has ended")
		return
	case err != nil:
		s.log.ErrorContext(r.Context(), "preview", "session", sid, "err", err)
		previewError(w, http.StatusInternalServerError, "rdev: internal error, request id "+requestID(r.Context()))
		return
	}
	cookiePath := prefix + "/"
	if prefix == "" {
		cookiePath = "/"
	}
	// A signed link: trade its token for a cookie scoped to this preview,
	// then send the browser to the same URL without it.
	if tok := r.URL.Query().Get(service.PreviewTokenParam); tok != "" {
		exp, ok := s.svc.PreviewTokenValid(sid, tok)
		if !ok {
			previewError(w, http.StatusUnauthorized, "rdev: this preview link is invalid or has expired")
			return
		}
		http.SetCookie(w, &http.Cookie{Name: previewCookie, Value: tok, Path: cookiePath, Expires: exp,
			HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: r.TLS != nil})
		q := r.URL.Query()
		q.Del(service.PreviewTokenParam)
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return
	}
	authorized := false
	if c, err := r.Cookie(previewCookie); err == nil {
		_, authorized = s.svc.PreviewTokenValid(sid, c.Value)
	}
	if !authorized {
		tok, ok := bearer(r)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="rdev preview"`)
			previewError(w, http.StatusUnauthorized, "rdev: this preview is private: send an API key that may read the session, or open a signed link (rdev preview "+sid+")")
			return
		}
		switch err := s.svc.AuthorizePreviewKey(r.Context(), tok, sess); {
		case errors.Is(err, rdev.ErrUnauthorized):
			w.Header().Set("WWW-Authenticate", `Bearer realm="rdev preview"`)
			previewError(w, http.StatusUnauthorized, "rdev: invalid API key")
			return
		case errors.Is(err, rdev.ErrForbidden):
			previewError(w, http.StatusForbidden, "rdev: this API key may not read sessions")
			return
		case err != nil:
			previewError(w, http.StatusNotFound, "rdev: no preview for session "+sid+": it does not exist or has ended")
			return
		}
	}
	s.svc.TouchPreview(r.Context(), sid)
	// The session's preview is reached by DialPreview wherever its pod's
	// network is; the host names it for the shared transport.
	target := &url.URL{Scheme: "http", Host: sid + previewHostSuffix}
	proxy := &httputil.ReverseProxy{
		Transport: s.previewTransport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, prefix)
			if pr.Out.URL.Path == "" {
				pr.Out.URL.Path = "/"
			}
			pr.Out.URL.RawPath = ""
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			// rdev's credentials stay with rdev.
			pr.Out.Header.Del("Authorization")
			stripCookie(pr.Out, previewCookie)
		},
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			previewError(w, http.StatusBadGateway, "rdev: nothing answers on the session's preview port (is the app listening on $PORT?)")
		},
	}
	proxy.ServeHTTP(w, r)
}

// previewHostSuffix marks the made-up host of a session's preview in the
// preview transport's dials (.invalid never resolves).
const previewHostSuffix = ".preview.rdev.invalid"

// newPreviewTransport returns the transport of every preview: its dials
// go to the session's preview port through the cluster.
func newPreviewTransport(svc *service.Service) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			sid, ok := strings.CutSuffix(host, previewHostSuffix)
			if !ok {
				return nil, errors.New("not a preview host: " + host)
			}
			return svc.DialPreview(ctx, sid)
		},
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 0,
		ForceAttemptHTTP2:     false,
	}
}

// stripCookie removes one cookie from a request's Cookie headers.
func stripCookie(r *http.Request, name string) {
	cs := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cs {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
}

func previewError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write([]byte(msg + "\n"))
}

func (s *Server) createPreviewLink(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid := chi.URLParam(r, "sid")
	setTarget(r, "session/"+sid)
	var req struct {
		TTL string `json:"ttl,omitempty"`
	}
	if err := decodeOptional(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	link, err := s.svc.CreatePreviewLink(r.Context(), caller(r.Context()), id, sid, req.TTL)
	if err != nil {
		s.respondError(w, r, err, "Failed to create preview link")
		return
	}
	respond(w, r, http.StatusCreated, link)
}

// previewAuth is the forward-auth endpoint an ingress calls before it
// sends a request to a session's preview: the original host in
// X-Forwarded-Host (<session>.<preview-domain>), the original URI in
// X-Forwarded-Uri (as Traefik sends them) or both in X-Original-URL (as
// ingress-nginx does), and the client's Cookie and Authorization headers.
// 200 admits; 401, 403 and 404 refuse, as the proxy itself would.
func (s *Server) previewAuth(w http.ResponseWriter, r *http.Request) {
	host, uri := r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Forwarded-Uri")
	if host == "" {
		// ingress-nginx's auth-url sends the whole original URL instead.
		if u, err := url.Parse(r.Header.Get("X-Original-URL")); err == nil && u.Host != "" {
			host, uri = u.Host, u.RequestURI()
		}
	}
	fr := r.Clone(r.Context())
	fr.Host = host
	sid := s.previewSession(fr)
	if sid == "" {
		previewError(w, http.StatusNotFound, "rdev: neither X-Forwarded-Host nor X-Original-URL names a session preview (<session>."+s.previewDomain+")")
		return
	}
	if _, err := s.svc.PreviewTarget(r.Context(), sid); err != nil {
		previewError(w, http.StatusNotFound, "rdev: no preview for session "+sid+": it does not exist or has ended")
		return
	}
	if u, err := url.ParseRequestURI(uri); err == nil {
		if tok := u.Query().Get(service.PreviewTokenParam); tok != "" {
			if _, ok := s.svc.PreviewTokenValid(sid, tok); ok {
				w.WriteHeader(http.StatusOK)
				return
			}
		}
	}
	if c, err := r.Cookie(previewCookie); err == nil {
		if _, ok := s.svc.PreviewTokenValid(sid, c.Value); ok {
			w.WriteHeader(http.StatusOK)
			return
		}
	}
	// Never an API key: the ingress passes the request on as it came, so
	// a key sent to the preview would reach the app.
	previewError(w, http.StatusUnauthorized, "rdev: this preview is private: open a signed link (rdev preview SESSION, or POST …/preview-links), "+
		"or send its token as the "+previewCookie+" cookie; API keys are not accepted here, since the app would receive them")
}
