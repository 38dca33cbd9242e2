package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"rdev.dev/rdev/internal/rdev"
)

type ctxKey struct{}

// reqState is what the middleware learns about a request: put in its
// context once, filled in as the request passes (one allocation instead of
// a context layer per value).
type reqState struct {
	id           string
	caller       *rdev.APIKey // set by authenticate
	target       string       // set by handlers of mutating routes, for the audit log
	leaseTraffic bool         // a worker's claim, heartbeat or log: audited only when refused
}

func state(ctx context.Context) *reqState {
	st, _ := ctx.Value(ctxKey{}).(*reqState)
	if st == nil {
		return &reqState{}
	}
	return st
}

func requestID(ctx context.Context) string { return state(ctx).id }

// caller returns the authenticated key; routes behind authenticate have one.
func caller(ctx context.Context) *rdev.APIKey { return state(ctx).caller }

// leaseTraffic marks the routes of a worker's lease traffic (claims,
// heartbeats, log appends): several per task, and what they change — the
// owner, the lease, attempts, the log — is kept on the task and worker
// records, so only their refusals go to the audit log.
func leaseTraffic(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		state(r.Context()).leaseTraffic = true
		next.ServeHTTP(w, r)
	})
}

// setTarget names the resource a mutating request acts on, for the audit log.
func setTarget(r *http.Request, target string) { state(r.Context()).target = target }

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// withRequestID takes the client's X-Request-ID when it is sane, or makes
// one, and echoes it on the response.
func withRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-ID")
		if !validRequestID(id) {
			var b [12]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		w.Header().Set("X-Request-ID", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, &reqState{id: id})))
	})
}

// observe logs each request and records its metrics under its route pattern.
func (s *Server) observe(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		s.metrics.inFlight.Inc()
		defer s.metrics.inFlight.Dec()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.ErrorContext(r.Context(), "panic", "request_id", requestID(r.Context()), "panic", v, "stack", string(debugStack()))
				if ww.Status() == 0 {
					s.respondError(ww, r, errPanic, "internal error")
				}
			}
			route := routePattern(r)
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			d := time.Since(start)
			s.metrics.requests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
			s.metrics.duration.WithLabelValues(r.Method, route).Observe(d.Seconds())
			if s.logRequests {
				s.log.InfoContext(r.Context(), "request", "request_id", requestID(r.Context()), "method", r.Method,
					"route", route, "path", r.URL.Path, "status", status, "bytes", ww.BytesWritten(), "duration_ms", float64(d.Microseconds())/1000)
			}
		}()
		next.ServeHTTP(ww, r)
	})
}

func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			return p
		}
	}
	return "unmatched"
}

// authenticate admits requests that show a usable API key and puts it in
// the context; others get 401. Mutating requests of known callers are
// written to the audit log after they finish.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok {
			s.respondError(w, r, rdev.ErrUnauthorized, "")
			return
		}
		k, err := s.svc.Authenticate(r.Context(), token)
		if err != nil {
			s.respondError(w, r, err, "internal error")
			return
		}
		st := state(r.Context())
		st.caller = k
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		defer func() {
			status := ww.Status()
			if status == 0 {
				status = http.StatusOK
			}
			if st.leaseTraffic && status < 400 {
				return // the task and worker records hold what it changed
			}
			if st.leaseTraffic && status < 400 {
				return // the task and worker records hold what it changed
			}
			target := st.target
			if target == "" {
				target = r.URL.Path
			}
			e := &rdev.AuditEntry{KeyID: k.ID, Method: r.Method, Route: routePattern(r), Target: target,
				ProjectID: auditProject(r, target), Status: status, RequestID: requestID(r.Context())}
			actx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
			defer cancel()
			if err := s.svc.Audit(actx, e); err != nil {
				s.log.ErrorContext(r.Context(), "audit append failed", "request_id", e.RequestID, "err", err)
			}
		}()
		next.ServeHTTP(ww, r)
	})
}

func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// requireScope admits callers whose key carries any of scopes; others get 403.
func (s *Server) requireScope(scopes ...rdev.Scope) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if k := caller(r.Context()); k == nil || !k.HasScope(scopes...) {
				s.respondError(w, r, rdev.ErrForbidden, "")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// Handler time budgets by class (SPEC §3).
const (
	TimeoutFast          = 5 * time.Second
	TimeoutStandard      = 15 * time.Second
	TimeoutOrchestration = 2 * time.Minute
)

// timeout bounds the handler's work with a context deadline.
func timeout(d time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, cancel := context.WithTimeout(r.Context(), d)
			defer cancel()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// auditProject is the project a request acted on: its route's {id}, or
// the project it created; "" when it named none.
func auditProject(r *http.Request, target string) string {
	if id := chi.URLParam(r, "id"); id != "" && strings.HasPrefix(routePattern(r), "/api/v1/projects/{id}") {
		return id
	}
	if id, ok := strings.CutPrefix(target, "project/"); ok {
		return id
	}
	return ""
}
