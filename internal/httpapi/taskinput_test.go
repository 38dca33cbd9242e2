package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"rdev.dev/rdev/internal/rdev"
)

// taskFixture is a harness with project web, a worker for kinds build and
// lint, and one task of each claimed by it.
type taskFixture struct {
	h              *harness
	worker         string
	idle           string // another worker of the same key, holding nothing
	claimed, other string // a claimed build task; a queued lint task
}

func newTaskFixture(t testing.TB) *taskFixture {
	h := newHarness(t)
	h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web"}).want(t, 201, "")
	var w struct{ ID string }
	r := h.do("POST", "/api/v1/workers", h.admin, map[string]any{"name": "w", "kinds": []string{"build", "lint"}, "capacity": 2})
	r.want(t, 201, "")
	json.Unmarshal(r.Data, &w)
	fx := &taskFixture{h: h, worker: w.ID}
	r = h.do("POST", "/api/v1/workers", h.admin, map[string]any{"name": "idle", "kinds": []string{"build", "lint"}, "capacity": 1})
	r.want(t, 201, "")
	json.Unmarshal(r.Data, &w)
	fx.idle = w.ID
	fx.claimNew(t)
	queueTasks(t, h.store, 1, "lint")
	ts, _, _ := h.store.ListTasks(context.Background(), rdev.TaskFilter{Kind: "lint"}, rdev.Page{Limit: 1})
	fx.other = ts[0].ID
	return fx
}

// claimNew queues a build task and has the worker claim it.
func (fx *taskFixture) claimNew(t testing.TB) {
	h := fx.h.with(t)
	queueTasks(t, h.store, 1, "build")
	var task struct{ ID string }
	r := h.do("POST", "/api/v1/tasks/claim", h.admin, map[string]any{"worker_id": fx.worker, "kinds": []string{"build"}})
	r.want(t, 200, "")
	json.Unmarshal(r.Data, &task)
	fx.claimed = task.ID
}

// snapshot is every task as stored: what a refused request must not change.
func (fx *taskFixture) snapshot(t testing.TB) string {
	ts, _, err := fx.h.store.ListTasks(context.Background(), rdev.TaskFilter{}, rdev.Page{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(ts)
	return string(b)
}

func TestTaskBadInput(t *testing.T) {
	fx := newTaskFixture(t)
	h, w := fx.h, fx.worker
	claimed := "/api/v1/tasks/" + fx.claimed
	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code, field        string
	}{
		{"ClaimUnknownKind", "POST", "/api/v1/tasks/claim", map[string]any{"worker_id": w, "kinds": []string{"deploy"}}, 400, "BAD_REQUEST", "kinds[0]"},
		{"ClaimBadKind", "POST", "/api/v1/tasks/claim", map[string]any{"worker_id": w, "kinds": []string{"Build!"}}, 400, "BAD_REQUEST", "kinds[0]"},
		{"ClaimNoWorker", "POST", "/api/v1/tasks/claim", map[string]any{"kinds": []string{"build"}}, 400, "BAD_REQUEST", "worker_id"},
		{"ClaimUnknownWorker", "POST", "/api/v1/tasks/claim", map[string]any{"worker_id": "wnope"}, 400, "BAD_REQUEST", "worker_id"},
		{"ClaimWaitTooLong", "POST", "/api/v1/tasks/claim", map[string]any{"worker_id": w, "wait": 31}, 400, "BAD_REQUEST", "wait"},
		{"ClaimUnknownField", "POST", "/api/v1/tasks/claim", `{"worker_id":"` + w + `","kind":"build"}`, 400, "BAD_REQUEST", "kind"},
		{"CompleteByAnother", "POST", claimed + "/complete", map[string]any{"worker_id": fx.idle, "result": map[string]any{}}, 409, "LEASE_NOT_HELD", ""},
		{"CompleteQueued", "POST", "/api/v1/tasks/" + fx.other + "/complete", map[string]any{"worker_id": w}, 409, "LEASE_NOT_HELD", ""},
		{"CompleteNoWorker", "POST", claimed + "/complete", map[string]any{"result": map[string]any{}}, 400, "BAD_REQUEST", "worker_id"},
		{"CompleteResultNotObject", "POST", claimed + "/complete", `{"worker_id":"` + w + `","result":[1,2]}`, 400, "BAD_REQUEST", "result"},
		{"CompleteResultTooLarge", "POST", claimed + "/complete", map[string]any{"worker_id": w, "result": map[string]string{"x": strings.Repeat("a", 70<<10)}}, 400, "BAD_REQUEST", "result"},
		{"CompleteMissingTask", "POST", "/api/v1/tasks/tnope/complete", map[string]any{"worker_id": w}, 404, "NOT_FOUND", ""},
		{"FailByAnother", "POST", claimed + "/fail", map[string]any{"worker_id": fx.idle, "error": "x", "retry": true}, 409, "LEASE_NOT_HELD", ""},
		{"FailErrorTooLong", "POST", claimed + "/fail", map[string]any{"worker_id": w, "error": strings.Repeat("e", 5000)}, 400, "BAD_REQUEST", "error"},
		{"HeartbeatByAnother", "POST", claimed + "/heartbeat", map[string]any{"worker_id": fx.idle}, 409, "LEASE_NOT_HELD", ""},
		{"LogByAnother", "POST", claimed + "/log?worker_id=" + fx.idle + "&stream=stdout", "text", 409, "LEASE_NOT_HELD", ""},
		{"LogBadStream", "POST", claimed + "/log?worker_id=" + w + "&stream=stdin", "text", 400, "BAD_REQUEST", "stream"},
		{"CreateReviewByHand", "POST", "/api/v1/tasks", map[string]any{"kind": "review", "project_id": "web"}, 400, "BAD_REQUEST", "kind"},
		{"CreatePayloadNotObject", "POST", "/api/v1/tasks", `{"kind":"lint","project_id":"web","payload":"x"}`, 400, "BAD_REQUEST", "payload"},
		{"CreateUnknownProject", "POST", "/api/v1/tasks", map[string]any{"kind": "lint", "project_id": "nope"}, 404, "NOT_FOUND", ""},
		{"CreateAttempts", "POST", "/api/v1/tasks", map[string]any{"kind": "lint", "project_id": "web", "max_attempts": 101}, 400, "BAD_REQUEST", "max_attempts"},
		{"ListBadStatus", "GET", "/api/v1/tasks?status=done", nil, 400, "BAD_REQUEST", "status"},
		{"RegisterNoKinds", "POST", "/api/v1/workers", map[string]any{"name": "x", "kinds": []string{}, "capacity": 1}, 400, "BAD_REQUEST", "kinds"},
		{"RegisterCapacity", "POST", "/api/v1/workers", map[string]any{"name": "x", "kinds": []string{"a"}, "capacity": 0}, 400, "BAD_REQUEST", "capacity"},
		{"HeartbeatUnknownWorker", "POST", "/api/v1/workers/wnope/heartbeat", nil, 404, "NOT_FOUND", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fx.snapshot(t)
			r := h.do(tc.method, tc.path, h.admin, tc.body)
			r.want(t, tc.status, tc.code)
			if r.Error.Field != tc.field || r.Error.Message == "" {
				t.Fatalf("field %q message %q, want field %q", r.Error.Field, r.Error.Message, tc.field)
			}
			if after := fx.snapshot(t); after != before {
				t.Fatalf("a refused request changed the tasks:\n%s\n%s", before, after)
			}
		})
	}
	// Lease traffic is audited when refused only; outcomes always.
	h.do("POST", claimed+"/heartbeat", h.admin, map[string]any{"worker_id": w}).want(t, 200, "")
	h.do("POST", claimed+"/complete", h.admin, map[string]any{"worker_id": w}).want(t, 200, "")
	entries, _, err := h.store.ListAudit(context.Background(), rdev.AuditFilter{Page: rdev.Page{Limit: 500}})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		seen[fmt.Sprintf("%s %d", e.Route, e.Status)] = true
	}
	for want, present := range map[string]bool{
		"/api/v1/tasks/claim 200":           false,
		"/api/v1/tasks/{tid}/heartbeat 200": false,
		"/api/v1/tasks/claim 400":           true,
		"/api/v1/tasks/{tid}/heartbeat 409": true,
		"/api/v1/tasks/{tid}/log 409":       true,
		"/api/v1/tasks/{tid}/complete 200":  true,
		"/api/v1/tasks/{tid}/complete 409":  true,
		"/api/v1/workers 201":               true,
	} {
		if seen[want] != present {
			t.Errorf("audit entry %q present: %v, want %v", want, seen[want], present)
		}
	}
	// A key with a project allow-list registers a worker of its projects.
	scoped := h.key([]string{"web"}, rdev.ScopeWorkersExecute)
	r := h.do("POST", "/api/v1/workers", scoped, map[string]any{"name": "x", "kinds": []string{"a"}, "capacity": 1})
	r.want(t, 201, "")
	var sw rdev.Worker
	json.Unmarshal(r.Data, &sw)
	if fmt.Sprint(sw.Projects) != "[web]" || sw.KeyID == "" {
		t.Fatalf("a restricted key's worker: %+v", sw)
	}
}

// FuzzTaskBodies: any body to queue a task, and any result completing one,
// is answered 201/200 or a clear 400 that writes nothing.
func FuzzTaskBodies(f *testing.F) {
	for _, s := range [][2]string{
		{`{"kind":"lint","project_id":"web","payload":{"a":1}}`, `{"verdict":"passed"}`},
		{`{"kind":"lint","project_id":"web","max_attempts":0}`, `{}`},
		{`{"kind":"","project_id":"web"}`, `[]`},
		{`{"kind":"lint","project_id":"web","payload":[1]}`, `"x"`},
		{`{"kind":"lint"}`, `null`},
		{`{"kind":"lint","project_id":"web","payload":{}}{}`, `{"a":`},
		{`not json`, `{"a":"\u0000"}`},
	} {
		f.Add([]byte(s[0]), []byte(s[1]))
	}
	fx := newTaskFixture(f)
	f.Fuzz(func(t *testing.T, create, result []byte) {
		h := fx.h.with(t)
		before := fx.snapshot(t)
		r := h.do("POST", "/api/v1/tasks", h.admin, create)
		switch r.Status {
		case 201:
		case 400, 404, 413:
			if r.Error.Message == "" {
				t.Fatalf("refusal without a message: %s", r.Body)
			}
			if after := fx.snapshot(t); after != before {
				t.Fatalf("a refused create wrote: %s", create)
			}
		default:
			t.Fatalf("create %q: %d %s", create, r.Status, r.Body)
		}
		// Completing the claimed task with the fuzzed result, as another
		// worker first (409, always), then as its owner.
		body := append(append([]byte(`{"worker_id":"`+fx.idle+`","result":`), result...), '}')
		before = fx.snapshot(t)
		if r := h.do("POST", "/api/v1/tasks/"+fx.claimed+"/complete", h.admin, body); r.Status != 409 && r.Status != 400 {
			t.Fatalf("completion by a stranger: %d %s", r.Status, r.Body)
		}
		body = append(append([]byte(`{"worker_id":"`+fx.worker+`","result":`), result...), '}')
		r = h.do("POST", "/api/v1/tasks/"+fx.claimed+"/complete", h.admin, body)
		switch r.Status {
		case 200:
			// Accepted: a fresh claimed task for the next input.
			fx.claimNew(t)
		case 400, 413:
			if after := fx.snapshot(t); after != before {
				t.Fatalf("a refused completion wrote: %s", result)
			}
		default:
			t.Fatalf("complete with %q: %d %s", result, r.Status, r.Body)
		}
	})
}

// The log of a finished task replays exactly: the same events, ending with
// the same exit event, from any point.
func TestTaskLogReplay(t *testing.T) {
	fx := newTaskFixture(t)
	h := fx.h
	base := "/api/v1/tasks/" + fx.claimed
	h.do("POST", base+"/log?worker_id="+fx.worker+"&stream=stdout", h.admin, "built\n").want(t, 200, "")
	h.do("POST", base+"/log?worker_id="+fx.worker+"&stream=stderr", h.admin, "warned\n").want(t, 200, "")
	h.do("POST", base+"/complete", h.admin, map[string]any{"worker_id": fx.worker}).want(t, 200, "")
	read := func(after int64) []sseEvent {
		resp := h.stream(t, base+"/events", after)
		defer resp.Body.Close()
		return readSSE(t, resp.Body, nil)
	}
	all := read(0)
	if len(all) != 3 || all[0].Data["data"] != "built\n" || all[1].Type != "stderr" || all[2].Type != "exit" ||
		all[2].ID != 3 || all[2].Data["reason"] != "succeeded" {
		t.Fatalf("events: %+v", all)
	}
	if tail := read(2); len(tail) != 1 || tail[0].ID != 3 || tail[0].Type != "exit" {
		t.Fatalf("after 2: %+v", tail)
	}
	if none := read(3); len(none) != 0 {
		t.Fatalf("after the exit: %+v", none)
	}
}
