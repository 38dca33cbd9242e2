package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestBadInput sends malformed and invalid requests: each gets a clear
// 400-class error naming the problem, and no record changes. The audit log
// records the refused attempts (with their status) and nothing else.
func TestBadInput(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web"}).want(t, 201, "")
	before := snapshot(t, h)

	huge := `{"id":"big","name":"` + strings.Repeat("x", 1<<20) + `"}`
	cases := []struct {
		name, method, path, body string
		status                   int
		code, field, msg         string
	}{
		{"TooLarge", "POST", "/api/v1/projects", huge, 413, "PAYLOAD_TOO_LARGE", "", "exceeds"},
		{"UnknownField", "POST", "/api/v1/projects", `{"id":"a","name":"a","colour":"red"}`, 400, "BAD_REQUEST", "colour", "unknown field"},
		{"MalformedJSON", "POST", "/api/v1/projects", `{"id":"a",`, 400, "BAD_REQUEST", "", "malformed JSON"},
		{"SyntaxError", "POST", "/api/v1/projects", `{"id" "a"}`, 400, "BAD_REQUEST", "", "malformed JSON at byte"},
		{"EmptyBody", "POST", "/api/v1/projects", ``, 400, "BAD_REQUEST", "", "empty"},
		{"TrailingData", "POST", "/api/v1/projects", `{"id":"a","name":"a"} {}`, 400, "BAD_REQUEST", "", "single JSON object"},
		{"NotAnObject", "POST", "/api/v1/projects", `[1,2]`, 400, "BAD_REQUEST", "", "expected a JSON object"},
		{"WrongType", "POST", "/api/v1/projects", `{"id":"a","name":7}`, 400, "BAD_REQUEST", "name", "must be a string"},
		{"InvalidID", "POST", "/api/v1/projects", `{"id":"-a","name":"a"}`, 400, "BAD_REQUEST", "id", "DNS label"},
		{"LongID", "POST", "/api/v1/projects", `{"id":"` + strings.Repeat("a", 41) + `","name":"a"}`, 400, "BAD_REQUEST", "id", "DNS label"},
		{"MissingName", "POST", "/api/v1/projects", `{"id":"a"}`, 400, "BAD_REQUEST", "name", "required"},
		{"BadDefaultBranch", "POST", "/api/v1/projects", `{"id":"a","name":"a","default_branch":"a..b"}`, 400, "BAD_REQUEST", "default_branch", ".."},
		{"BadPattern", "POST", "/api/v1/projects", `{"id":"a","name":"a","protected_branches":["rel[ease"]}`, 400, "BAD_REQUEST", "protected_branches[0]", ""},
		{"DuplicateComponent", "POST", "/api/v1/projects", `{"id":"a","name":"a","components":[{"name":"x","command":"c"},{"name":"x","command":"d"}]}`, 400, "BAD_REQUEST", "components[1].name", "duplicate"},
		{"PortTooHigh", "POST", "/api/v1/projects", `{"id":"a","name":"a","components":[{"name":"x","command":"c","port":70000}]}`, 400, "BAD_REQUEST", "components[0].port", "65535"},
		{"PortZero", "POST", "/api/v1/projects", `{"id":"a","name":"a","components":[{"name":"x","command":"c","port":0}]}`, 400, "BAD_REQUEST", "components[0].port", "65535"},
		{"ComponentUnknownField", "POST", "/api/v1/projects", `{"id":"a","name":"a","components":[{"name":"x","command":"c","cpu":2}]}`, 400, "BAD_REQUEST", "cpu", "unknown field"},
		{"ComponentNoCommand", "POST", "/api/v1/projects", `{"id":"a","name":"a","components":[{"name":"x"}]}`, 400, "BAD_REQUEST", "components[0].command", "required"},
		{"BadEnvName", "POST", "/api/v1/projects", `{"id":"a","name":"a","components":[{"name":"x","command":"c","env":{"1X":"y"}}]}`, 400, "BAD_REQUEST", "components[0].env", "invalid variable name"},
		{"RdevEnvName", "POST", "/api/v1/projects", `{"id":"a","name":"a","components":[{"name":"x","command":"c","env":{"RDEV_PROJECT":"b"}}]}`, 400, "BAD_REQUEST", "components[0].env", "RDEV_PROJECT: variables named RDEV_* are set by rdev"},
		{"PatchUnknownField", "PATCH", "/api/v1/projects/web", `{"id":"other"}`, 400, "BAD_REQUEST", "id", "unknown field"},
		{"PatchBadBranch", "PATCH", "/api/v1/projects/web", `{"default_branch":"-x"}`, 400, "BAD_REQUEST", "default_branch", "-"},
		{"PatchLongName", "PATCH", "/api/v1/projects/web", `{"name":"` + strings.Repeat("n", 101) + `"}`, 400, "BAD_REQUEST", "name", "100"},
		{"PatchBadPath", "PATCH", "/api/v1/projects/Web", `{"name":"x"}`, 400, "BAD_REQUEST", "id", "invalid project id"},
		{"DeleteBadPath", "DELETE", "/api/v1/projects/a_b", ``, 400, "BAD_REQUEST", "id", "invalid project id"},
		{"KeyUnknownScope", "POST", "/api/v1/keys", `{"name":"k","scopes":["root"]}`, 400, "BAD_REQUEST", "scopes[0]", "unknown scope"},
		{"KeyNoScopes", "POST", "/api/v1/keys", `{"name":"k","scopes":[]}`, 400, "BAD_REQUEST", "scopes", "at least one"},
		{"KeyTooLong", "POST", "/api/v1/keys", `{"name":"k","scopes":["admin"],"expires_in":"400d"}`, 400, "BAD_REQUEST", "expires_in", "cannot exceed 365 days"},
		{"KeyNegative", "POST", "/api/v1/keys", `{"name":"k","scopes":["admin"],"expires_in":"-1h"}`, 400, "BAD_REQUEST", "expires_in", "valid duration"},
		{"KeyBadProject", "POST", "/api/v1/keys", `{"name":"k","scopes":["admin"],"projects":["UP"]}`, 400, "BAD_REQUEST", "projects[0]", "invalid project id"},
		{"KeyNoName", "POST", "/api/v1/keys", `{"scopes":["admin"]}`, 400, "BAD_REQUEST", "name", "required"},
		{"BadLimit", "GET", "/api/v1/projects?limit=0", ``, 400, "BAD_REQUEST", "limit", "between 1 and 500"},
		{"BadLimitWord", "GET", "/api/v1/projects?limit=ten", ``, 400, "BAD_REQUEST", "limit", "between 1 and 500"},
		{"BadCursor", "GET", "/api/v1/projects?cursor=%21%21", ``, 400, "BAD_REQUEST", "cursor", "invalid cursor"},
		{"BadSince", "GET", "/api/v1/audit?since=yesterday", ``, 400, "BAD_REQUEST", "since", "RFC 3339"},
		{"BadGetPath", "GET", "/api/v1/projects/UPPER", ``, 400, "BAD_REQUEST", "id", "invalid project id"},
		{"NoRoute", "GET", "/api/v1/nothing", ``, 404, "NOT_FOUND", "", "no such route"},
		{"WrongMethod", "PUT", "/api/v1/projects/web", `{}`, 405, "METHOD_NOT_ALLOWED", "", "not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			r := h.do(tc.method, tc.path, h.admin, body)
			r.want(t, tc.status, tc.code)
			if r.Error.Field != tc.field || !strings.Contains(r.Error.Message, tc.msg) {
				t.Fatalf("field %q message %q; want field %q and a message containing %q", r.Error.Field, r.Error.Message, tc.field, tc.msg)
			}
			if r.Meta.RequestID == "" || r.Header.Get("X-Request-ID") != r.Meta.RequestID {
				t.Fatalf("request id: meta %q header %q", r.Meta.RequestID, r.Header.Get("X-Request-ID"))
			}
		})
	}
	after := snapshot(t, h)
	if after.projects != before.projects || after.keys != before.keys {
		t.Fatalf("a rejected request changed the store:\nprojects before %s\nafter %s\nkeys before %s\nafter %s",
			before.projects, after.projects, before.keys, after.keys)
	}
	// The audit log gained only the refused mutating attempts.
	r := h.do("GET", "/api/v1/audit?limit=500", h.admin, nil)
	var audit struct {
		Entries []struct {
			Status int
			Method string
		}
	}
	mustJSON(t, r.Data, &audit)
	for _, e := range audit.Entries[:len(audit.Entries)-1] { // the last is the seed project
		if e.Status < 400 {
			t.Errorf("audit entry with status %d after rejected requests only", e.Status)
		}
	}
}

type storeSnapshot struct{ projects, keys string }

func snapshot(t *testing.T, h *harness) storeSnapshot {
	t.Helper()
	var s storeSnapshot
	r := h.do("GET", "/api/v1/projects?limit=500", h.admin, nil)
	s.projects = string(r.Data)
	var ks struct{ Keys []map[string]any }
	mustJSON(t, h.do("GET", "/api/v1/keys?limit=500", h.admin, nil).Data, &ks)
	for _, k := range ks.Keys {
		delete(k, "last_used_at") // reading keys is itself a use
	}
	b, _ := json.Marshal(ks)
	s.keys = string(b)
	return s
}
