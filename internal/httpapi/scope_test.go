package httpapi_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/rdev"
)

// policy is SPEC §4 written out per route: which scopes admit a caller, and
// whether the route names a project (so a key whose allow-list excludes that
// project gets 404). public routes need no key. Every route of the router
// must have an entry, and every entry a route.
type policy struct {
	public  bool
	scopes  []rdev.Scope
	project bool
	git     bool // plain-text errors (git shows them), basic or bearer credentials
	preview bool // proxied to a session's app; checked in TestPreview
}

var (
	specProjectsRead  = []rdev.Scope{rdev.ScopeProjectsRead, rdev.ScopeAdmin}
	specProjectsWrite = []rdev.Scope{rdev.ScopeProjectsWrite, rdev.ScopeAdmin}
	specProjectsExec  = []rdev.Scope{rdev.ScopeProjectsExecute, rdev.ScopeAdmin}
	specAdmin         = []rdev.Scope{rdev.ScopeAdmin}
	specSessionsRead  = []rdev.Scope{rdev.ScopeSessionsRead, rdev.ScopeProjectsRead, rdev.ScopeAdmin}
	specSessionsAct   = []rdev.Scope{rdev.ScopeSessionsExecute, rdev.ScopeProjectsExecute, rdev.ScopeAdmin}
	specWorkersRead   = []rdev.Scope{rdev.ScopeWorkersRead, rdev.ScopeAdmin}
	specWorkersAct    = []rdev.Scope{rdev.ScopeWorkersExecute, rdev.ScopeAdmin}
	// Git reads: any key with a project scope (SPEC §5 Git), and workers,
	// which fetch the branches they review; pushes are decided per ref by
	// the git host.
	specGit = []rdev.Scope{rdev.ScopeProjectsRead, rdev.ScopeProjectsWrite, rdev.ScopeProjectsExecute, rdev.ScopeWorkersExecute, rdev.ScopeAdmin}
)

var specPolicy = map[string]policy{
	"GET /healthz":             {public: true},
	"GET /readyz":              {public: true},
	"GET /metrics":             {public: true},
	"GET /api/v1/openapi.json": {public: true},

	"GET /api/v1/projects":         {scopes: specProjectsRead},
	"POST /api/v1/projects":        {scopes: specProjectsWrite},
	"GET /api/v1/projects/{id}":    {scopes: specProjectsRead, project: true},
	"PATCH /api/v1/projects/{id}":  {scopes: specProjectsWrite, project: true},
	"DELETE /api/v1/projects/{id}": {scopes: specProjectsWrite, project: true},

	"POST /api/v1/projects/{id}/deploy":   {scopes: specProjectsExec, project: true},
	"POST /api/v1/projects/{id}/undeploy": {scopes: specProjectsExec, project: true},
	"GET /api/v1/projects/{id}/status":    {scopes: specProjectsRead, project: true},

	"GET /api/v1/projects/{id}/sessions":                  {scopes: specSessionsRead, project: true},
	"POST /api/v1/projects/{id}/sessions":                 {scopes: specSessionsAct, project: true},
	"GET /api/v1/projects/{id}/sessions/{sid}":            {scopes: specSessionsRead, project: true},
	"POST /api/v1/projects/{id}/sessions/{sid}/checkin":   {scopes: specSessionsAct, project: true},
	"POST /api/v1/projects/{id}/sessions/{sid}/keepalive": {scopes: specSessionsAct, project: true},
	"DELETE /api/v1/projects/{id}/sessions/{sid}":         {scopes: specAdmin, project: true},

	"POST /api/v1/projects/{id}/sessions/{sid}/commands":              {scopes: specSessionsAct, project: true},
	"GET /api/v1/projects/{id}/sessions/{sid}/commands":               {scopes: specSessionsRead, project: true},
	"GET /api/v1/projects/{id}/sessions/{sid}/commands/{cmd}":         {scopes: specSessionsRead, project: true},
	"GET /api/v1/projects/{id}/sessions/{sid}/commands/{cmd}/events":  {scopes: specSessionsRead, project: true},
	"POST /api/v1/projects/{id}/sessions/{sid}/commands/{cmd}/stdin":  {scopes: specSessionsAct, project: true},
	"POST /api/v1/projects/{id}/sessions/{sid}/commands/{cmd}/signal": {scopes: specSessionsAct, project: true},

	"GET /api/v1/projects/{id}/checkouts":                {scopes: specProjectsRead, project: true},
	"POST /api/v1/projects/{id}/checkouts":               {scopes: specProjectsExec, project: true},
	"GET /api/v1/projects/{id}/checkouts/{cid}":          {scopes: specProjectsRead, project: true},
	"POST /api/v1/projects/{id}/checkouts/{cid}/checkin": {scopes: specProjectsExec, project: true},

	"POST /api/v1/projects/{id}/sessions/{sid}/preview-links": {scopes: specSessionsAct, project: true},
	// Previews (every method): an API key that may read sessions, or a
	// signed link; a missing session is 404 before any key is asked for.
	"* /preview/{sid}/*":       {preview: true},
	"GET /api/v1/preview-auth": {preview: true},

	"GET /git/{repo}/*":  {scopes: specGit, project: true, git: true},
	"POST /git/{repo}/*": {scopes: specGit, project: true, git: true},

	"GET /api/v1/workers/pool":                    {scopes: specWorkersRead},
	"POST /api/v1/workers":                        {scopes: specWorkersAct},
	"GET /api/v1/workers/{wid}":                   {scopes: specWorkersRead},
	"POST /api/v1/workers/{wid}/heartbeat":        {scopes: specWorkersAct},
	"DELETE /api/v1/workers/{wid}":                {scopes: specWorkersAct},
	"POST /api/v1/tasks":                          {scopes: specWorkersAct},
	"GET /api/v1/tasks":                           {scopes: specWorkersRead},
	"POST /api/v1/tasks/claim":                    {scopes: specWorkersAct},
	"GET /api/v1/tasks/{tid}":                     {scopes: specWorkersRead},
	"POST /api/v1/tasks/{tid}/heartbeat":          {scopes: specWorkersAct},
	"POST /api/v1/tasks/{tid}/complete":           {scopes: specWorkersAct},
	"POST /api/v1/tasks/{tid}/fail":               {scopes: specWorkersAct},
	"POST /api/v1/tasks/{tid}/complete-and-claim": {scopes: specWorkersAct},
	"POST /api/v1/tasks/{tid}/cancel":             {scopes: specWorkersAct},
	"POST /api/v1/tasks/{tid}/log":                {scopes: specWorkersAct},
	"GET /api/v1/tasks/{tid}/events":              {scopes: specWorkersRead},

	"POST /api/v1/keys":        {scopes: specAdmin},
	"GET /api/v1/keys":         {scopes: specAdmin},
	"DELETE /api/v1/keys/{id}": {scopes: specAdmin},
	"GET /api/v1/audit":        {scopes: specAdmin},
}

// routes returns "METHOD pattern" for every route of the router.
func routes(t *testing.T, r chi.Routes) []string {
	var out []string
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/preview/") {
			method = "*" // one handler for every method
		}
		if rt := method + " " + strings.TrimSuffix(route, "/"); !slices.Contains(out, rt) {
			out = append(out, rt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func TestScopeMatrix(t *testing.T) {
	h := newHarness(t)
	all := routes(t, h.api.Router())
	for _, rt := range all {
		if _, ok := specPolicy[rt]; !ok {
			t.Errorf("route %s has no entry in the scope policy table", rt)
		}
	}
	for rt := range specPolicy {
		if !slices.Contains(all, rt) {
			t.Errorf("policy names %s, which the router does not serve", rt)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// The project the routes name, and one the restricted key may see.
	if r := h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "p1", "name": "P1"}); r.Status != 201 {
		t.Fatalf("setup: %s", r.Body)
	}
	tokens := map[rdev.Scope]string{}
	for _, s := range rdev.Scopes {
		tokens[s] = h.key(nil, s)
	}
	for _, rt := range all {
		pol := specPolicy[rt]
		method, pattern, _ := strings.Cut(rt, " ")
		path := strings.NewReplacer("{id}", "p1", "{cid}", "cnosuchcheckoutxx", "{sid}", "snosuchsessionxx", "{cmd}", "xnosuchcommandxx").Replace(pattern)
		switch {
		case strings.HasPrefix(pattern, "/api/v1/keys/"):
			path = "/api/v1/keys/knosuchkeyxxxxxxx"
		case rt == "GET /git/{repo}/*":
			path = "/git/p1.git/info/refs?service=git-upload-pack"
		case rt == "POST /git/{repo}/*":
			path = "/git/p1.git/git-upload-pack"
		}
		// Bodies are empty objects: a caller the scope admits gets a 400 at
		// worst, one it refuses a 403 before the body is read.
		var body any
		if (method == "POST" || method == "PATCH") && !pol.git {
			body = "{}"
		}
		if pol.preview {
			// A preview of a session that does not exist: 404 whoever asks.
			if r := h.do("GET", strings.Replace(strings.TrimPrefix(rt, method+" "), "{sid}/*", "snosuch/", 1), h.admin, nil); r.Status != 404 {
				t.Errorf("%s of a missing session: %d", rt, r.Status)
			}
			continue
		}
		t.Run(rt, func(t *testing.T) {
			// Earlier routes may have deleted it.
			h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "p1", "name": "P1"})
			r := h.do(method, path, "", body)
			if pol.public {
				if r.Status != 200 {
					t.Fatalf("public route without a key: %d %s", r.Status, r.Body)
				}
				return
			}
			if r.Status != 401 || (r.Error.Code != "UNAUTHORIZED" && !pol.git) || r.Header.Get("WWW-Authenticate") == "" {
				t.Fatalf("no key: %d %s", r.Status, r.Body)
			}
			if r := h.do(method, path, "rdev_kxxxxxxxxxxxxxxxx_bogus", body); r.Status != 401 {
				t.Fatalf("unknown key: %d", r.Status)
			}
			for _, s := range rdev.Scopes {
				r := h.do(method, path, tokens[s], body)
				allowed := slices.Contains(pol.scopes, s)
				switch {
				case allowed && (r.Status == 401 || r.Status == 403):
					t.Errorf("scope %s should be admitted: %d %s", s, r.Status, r.Body)
				case !allowed && (r.Status != 403 || (r.Error.Code != "FORBIDDEN" && !pol.git)):
					t.Errorf("scope %s should get 403: %d %s", s, r.Status, r.Body)
				}
			}
			if pol.project {
				// Keys restricted to another project, with every scope the
				// route admits, see this one as missing.
				outside := h.key([]string{"other"}, pol.scopes...)
				// Valid bodies: input is checked before the project.
				switch rt {
				case "POST /api/v1/projects/{id}/checkouts", "POST /api/v1/projects/{id}/sessions":
					body = `{"branch":"main"}`
				case "POST /api/v1/projects/{id}/sessions/{sid}/commands":
					body = `{"command":"true"}`
				case "POST /api/v1/projects/{id}/sessions/{sid}/commands/{cmd}/signal":
					body = `{"signal":"SIGTERM"}`
				}
				if r := h.do(method, path, outside, body); r.Status != 404 || (r.Error.Code != "NOT_FOUND" && !pol.git) {
					t.Errorf("key outside the allow-list: %d %s, want 404", r.Status, r.Body)
				}
			}
		})
	}
}

func TestAllowList(t *testing.T) {
	h := newHarness(t)
	for _, id := range []string{"a", "b", "c"} {
		h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": id, "name": id}).want(t, 201, "")
	}
	tok := h.key([]string{"a", "c"}, rdev.ScopeProjectsRead, rdev.ScopeProjectsWrite)
	r := h.do("GET", "/api/v1/projects", tok, nil)
	if r.Status != 200 || !strings.Contains(string(r.Data), `"id":"a"`) || !strings.Contains(string(r.Data), `"id":"c"`) || strings.Contains(string(r.Data), `"id":"b"`) {
		t.Fatalf("list with allow-list: %s", r.Body)
	}
	h.do("GET", "/api/v1/projects/b", tok, nil).want(t, 404, "NOT_FOUND")
	h.do("GET", "/api/v1/projects/a", tok, nil).want(t, 200, "")
	h.do("POST", "/api/v1/projects", tok, map[string]any{"id": "d", "name": "d"}).want(t, 403, "FORBIDDEN")
	h.do("POST", "/api/v1/projects", tok, map[string]any{"id": "c", "name": "c"}).want(t, 409, "PROJECT_EXISTS")
	h.do("DELETE", "/api/v1/projects/b", tok, nil).want(t, 404, "NOT_FOUND")
	h.do("GET", "/api/v1/projects/b", h.admin, nil).want(t, 200, "")
}

func TestExpiredAndDeletedKeys(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/api/v1/keys", h.admin, map[string]any{"name": "short", "scopes": []string{"projects:read"}, "expires_in": "1ms"})
	r.want(t, 201, "")
	var k struct{ ID, Token string }
	mustJSON(t, r.Data, &k)
	waitFor(t, func() bool { return h.do("GET", "/api/v1/projects", k.Token, nil).Status == 401 })

	r = h.do("POST", "/api/v1/keys", h.admin, map[string]any{"name": "doomed", "scopes": []string{"projects:read"}})
	mustJSON(t, r.Data, &k)
	h.do("GET", "/api/v1/projects", k.Token, nil).want(t, 200, "")
	h.do("DELETE", "/api/v1/keys/"+k.ID, h.admin, nil).want(t, 200, "")
	h.do("GET", "/api/v1/projects", k.Token, nil).want(t, 401, "UNAUTHORIZED")
	h.do("DELETE", "/api/v1/keys/"+k.ID, h.admin, nil).want(t, 404, "NOT_FOUND")
	// A right id with a wrong secret is refused too.
	h.do("GET", "/api/v1/projects", k.Token[:len(k.Token)-2]+"xx", nil).want(t, 401, "UNAUTHORIZED")
}
