package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// The allow-list dimension of the scope matrix: every route of tasks,
// workers, keys and audit, tried by a key without an allow-list
// ("unrestricted"), a key restricted to the project acted on ("target")
// and one restricted to another project ("other"), each with the scopes
// the route asks for. The worker acted as was registered by the target
// key.
func TestAllowListMatrix(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"alpha", "beta"} {
		h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": p, "name": p}).want(t, 201, "")
	}
	type who struct {
		name           string
		workers, admin string
	}
	keys := func(name string, projects []string) who {
		return who{name, h.key(projects, rdev.ScopeWorkersRead, rdev.ScopeWorkersExecute), h.key(projects, rdev.ScopeAdmin)}
	}
	unrestricted, target, other := keys("unrestricted", nil), keys("target", []string{"alpha"}), keys("other", []string{"beta"})
	all := []who{unrestricted, target, other}
	task := queueFor(t, h.store, "alpha", "build", time.Hour)
	worker := registerWorker(t, h, target.workers)

	// expect sends the request as each caller in turn (the order of
	// want: unrestricted, target, other).
	expect := func(method, path string, body any, admin bool, want ...int) {
		t.Helper()
		for i, w := range all {
			token := w.workers
			if admin {
				token = w.admin
			}
			if r := h.do(method, path, token, body); r.Status != want[i] {
				t.Errorf("%s %s as %s: %d %s, want %d", method, path, w.name, r.Status, r.Body, want[i])
			}
		}
	}
	// sees reports, per caller, whether a list holds an entry.
	sees := func(path string, admin bool, field string, holds func(json.RawMessage) bool, want ...bool) {
		t.Helper()
		for i, w := range all {
			token := w.workers
			if admin {
				token = w.admin
			}
			r := h.do("GET", path, token, nil)
			var body map[string]json.RawMessage
			json.Unmarshal(r.Data, &body)
			if got := r.Status == 200 && holds(body[field]); got != want[i] {
				t.Errorf("GET %s as %s shows it: %v, want %v (%d %s)", path, w.name, got, want[i], r.Status, r.Body)
			}
		}
	}
	has := func(s string) func(json.RawMessage) bool {
		return func(raw json.RawMessage) bool { return strings.Contains(string(raw), s) }
	}

	// Tasks.
	sees("/api/v1/tasks?limit=500", false, "tasks", has(task), true, true, false)
	expect("GET", "/api/v1/tasks/"+task, nil, false, 200, 200, 404)
	expect("POST", "/api/v1/tasks", map[string]any{"kind": "lint", "project_id": "alpha"}, false, 201, 201, 404)
	// Acting as the target key's worker: that key only (the unrestricted
	// key is not an unrestricted admin).
	expect("POST", "/api/v1/tasks/claim", map[string]any{"worker_id": worker, "kinds": []string{"build"}}, false, 403, 200, 403)
	for _, path := range []string{"/heartbeat", "/complete"} {
		expect("POST", "/api/v1/tasks/"+task+path, map[string]any{"worker_id": worker}, false, 403, 200, 403)
	}
	// Cancel: whoever may see the task.
	for i, w := range all {
		id := queueFor(t, h.store, "alpha", "build", 0)
		want := []int{200, 200, 404}[i]
		if r := h.do("POST", "/api/v1/tasks/"+id+"/cancel", w.workers, nil); r.Status != want {
			t.Errorf("cancel as %s: %d %s, want %d", w.name, r.Status, r.Body, want)
		}
	}
	// Workers.
	expect("GET", "/api/v1/workers/"+worker, nil, false, 200, 200, 404)
	expect("POST", "/api/v1/workers/"+worker+"/heartbeat", nil, false, 403, 200, 403)
	expect("GET", "/api/v1/workers/pool", nil, false, 200, 200, 200)

	// Keys, with admin keys.
	var made []string
	for i, w := range all {
		want := []int{201, 201, 403}[i]
		r := h.do("POST", "/api/v1/keys", w.admin, map[string]any{"name": "k", "scopes": []string{"projects:read"}, "projects": []string{"alpha"}})
		if r.Status != want {
			t.Errorf("a key for alpha made by %s: %d %s, want %d", w.name, r.Status, r.Body, want)
		}
		var k struct{ ID string }
		json.Unmarshal(r.Data, &k)
		if k.ID != "" {
			made = append(made, k.ID)
		}
	}
	sees("/api/v1/keys?limit=500", true, "keys", has(made[0]), true, true, false)
	if r := h.do("DELETE", "/api/v1/keys/"+made[0], other.admin, nil); r.Status != 404 {
		t.Errorf("another project's admin deleting alpha's key: %d", r.Status)
	}
	if r := h.do("DELETE", "/api/v1/keys/"+made[0], target.admin, nil); r.Status != 200 {
		t.Errorf("alpha's admin deleting alpha's key: %d", r.Status)
	}
	if r := h.do("DELETE", "/api/v1/keys/"+made[1], unrestricted.admin, nil); r.Status != 200 {
		t.Errorf("the unrestricted admin deleting alpha's key: %d", r.Status)
	}

	// Audit: alpha's entries (a PATCH of alpha by the server's admin).
	h.do("PATCH", "/api/v1/projects/alpha", h.admin, map[string]any{"name": "Alpha"}).want(t, 200, "")
	sees("/api/v1/audit?limit=500&target=project/alpha", true, "entries", has(`"project_id":"alpha"`), true, true, false)

	// The worker, last: deleted by its key only.
	for _, step := range []struct {
		w    who
		want int
	}{{unrestricted, 403}, {other, 403}, {target, 204}} {
		if r := h.do("DELETE", "/api/v1/workers/"+worker, step.w.workers, nil); r.Status != step.want {
			t.Errorf("DELETE the worker as %s: %d %s, want %d", step.w.name, r.Status, r.Body, step.want)
		}
	}
}
