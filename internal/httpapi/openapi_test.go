package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/httpapi"
	"rdev.dev/rdev/internal/httpapi/openapitest"
	"rdev.dev/rdev/internal/rdev"
)

// TestOpenAPIMatchesRouter fails when a route is missing from the document
// or the document names a route the router does not serve.
func TestOpenAPIMatchesRouter(t *testing.T) {
	h := newHarness(t)
	doc, err := httpapi.OpenAPI()
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("invalid document: %v", err)
	}
	var documented []string
	for path, item := range doc.Paths.Map() {
		// The smart-HTTP endpoints are one wildcard route in the router.
		if strings.HasPrefix(path, "/git/{repo}/") {
			path = "/git/{repo}/*"
		}
		if strings.HasPrefix(path, "/preview/{sid}/") {
			documented = append(documented, "* /preview/{sid}/*")
			continue
		}
		for method := range item.Operations() {
			if !slices.Contains(documented, method+" "+path) {
				documented = append(documented, method+" "+path)
			}
		}
	}
	served := routes(t, h.api.Router())
	for _, r := range served {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is served but not in openapi.yaml", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(served, d) {
			t.Errorf("openapi.yaml documents %s, which the router does not serve", d)
		}
	}
	// The served copy is the same document, as JSON.
	r := h.do("GET", "/api/v1/openapi.json", "", nil)
	var served2 map[string]any
	if r.Status != 200 || json.Unmarshal(r.Body, &served2) != nil || served2["openapi"] != "3.0.3" {
		t.Fatalf("GET /api/v1/openapi.json: %d %.200s", r.Status, r.Body)
	}
}

// TestResponsesMatchOpenAPI drives every route through the SDK, success and
// failure, validating each response against the document.
func TestResponsesMatchOpenAPI(t *testing.T) {
	h := newHarness(t)
	v := openapitest.New(t)
	hc := &http.Client{Transport: v.Transport(t, nil)}
	c := client.New(h.srv.URL, h.admin).WithHTTPClient(hc)
	ctx := context.Background()
	port := 8080
	p, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web", ProtectedBranches: []string{"release/*"},
		Components: []rdev.Component{{Name: "app", Command: "npm start", Port: &port, Env: map[string]string{"A": "b"}}}})
	if err != nil || p.ID != "web" {
		t.Fatal(p, err)
	}
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web"}); client.ErrorCode(err) != "PROJECT_EXISTS" {
		t.Fatal(err)
	}
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "Bad", Name: "x"}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	if _, err := c.GetProject(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetProject(ctx, "nope"); client.ErrorCode(err) != "NOT_FOUND" {
		t.Fatal(err)
	}
	name := "Renamed"
	if p, err := c.PatchProject(ctx, "web", client.ProjectPatch{Name: &name}); err != nil || p.Name != name {
		t.Fatal(p, err)
	}
	if ps, _, err := c.ListProjects(ctx, client.ListOptions{Limit: 1}); err != nil || len(ps) != 1 {
		t.Fatal(ps, err)
	}
	k, err := c.CreateKey(ctx, client.KeyRequest{Name: "ci", Scopes: []rdev.Scope{rdev.ScopeProjectsRead}, ExpiresIn: "7d"})
	if err != nil || !strings.HasPrefix(k.Token, "rdev_") || k.ExpiresAt == nil {
		t.Fatal(k, err)
	}
	if _, err := c.CreateKey(ctx, client.KeyRequest{Name: "bad", Scopes: []rdev.Scope{"root"}}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	if ks, _, err := c.ListKeys(ctx, client.ListOptions{}); err != nil || len(ks) != 2 {
		t.Fatal(ks, err)
	}
	if err := c.DeleteKey(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	// Checkouts, on an imported repository.
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "src", Name: "Src", ImportFrom: makeRepo(t, "feature/a")}); err != nil {
		t.Fatal(err)
	}
	co, err := c.CreateCheckout(ctx, "src", client.CheckoutRequest{NewBranch: "agent/one", ExpiresIn: "2h"})
	if err != nil || co.Token == "" || co.Branch != "agent/one" {
		t.Fatal(co, err)
	}
	if _, err := c.CreateCheckout(ctx, "src", client.CheckoutRequest{Branch: "agent/one"}); client.ErrorCode(err) != "CHECKOUT_EXISTS" {
		t.Fatal(err)
	}
	if _, err := c.CreateCheckout(ctx, "src", client.CheckoutRequest{Branch: "main"}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	if _, err := c.CreateCheckout(ctx, "src", client.CheckoutRequest{Branch: "nope"}); client.ErrorCode(err) != "NOT_FOUND" {
		t.Fatal(err)
	}
	if got, err := c.GetCheckout(ctx, "src", co.ID); err != nil || got.Status != "active" {
		t.Fatal(got, err)
	}
	if cs, _, err := c.ListCheckouts(ctx, "src", client.ListOptions{}); err != nil || len(cs) != 1 {
		t.Fatal(cs, err)
	}
	res, err := c.CheckinCheckout(ctx, "src", co.ID, client.CheckinRequest{AutoMerge: true})
	if err != nil || res.ReviewTaskID == "" || res.Status != "checked_in" {
		t.Fatal(res, err)
	}
	if _, err := c.CheckinCheckout(ctx, "src", co.ID, client.CheckinRequest{}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	// Deploy and sessions.
	if _, err := c.CreateSession(ctx, "src", client.SessionRequest{NewBranch: "agent/s"}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatalf("session before deploy: %v", err)
	}
	port = 3000
	if _, err := c.PatchProject(ctx, "src", client.ProjectPatch{Components: &[]rdev.Component{{Name: "app", Command: "sleep 60", Port: &port}}}); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Deploy(ctx, "src"); err != nil || !st.Running {
		t.Fatal(st, err)
	}
	if st, err := c.Status(ctx, "src"); err != nil || !st.Running || len(st.Processes) != 1 {
		t.Fatal(st, err)
	}
	sess, err := c.CreateSession(ctx, "src", client.SessionRequest{NewBranch: "agent/s", ExpiresIn: "2h"})
	if err != nil || sess.Branch != "agent/s" {
		t.Fatal(sess, err)
	}
	if _, err := c.CreateSession(ctx, "src", client.SessionRequest{NewBranch: "agent/t"}); client.ErrorCode(err) != "SESSION_EXISTS" {
		t.Fatal(err)
	}
	if _, err := c.GetSession(ctx, "src", sess.ID); err != nil {
		t.Fatal(err)
	}
	if ss, _, err := c.ListSessions(ctx, "src", client.ListOptions{}); err != nil || len(ss) != 1 {
		t.Fatal(ss, err)
	}
	if _, err := c.KeepaliveSession(ctx, "src", sess.ID); err != nil {
		t.Fatal(err)
	}
	if l, err := c.CreatePreviewLink(ctx, "src", sess.ID, "5m"); err != nil || l.URL == "" {
		t.Fatal(l, err)
	}
	ran, err := c.RunCommandWait(ctx, "src", sess.ID, client.CommandRequest{Command: "echo hi"})
	if err != nil || ran.Stdout != "hi\n" || ran.Status != "exited" {
		t.Fatal(ran, err)
	}
	cat, err := c.RunCommand(ctx, "src", sess.ID, client.CommandRequest{Argv: []string{"cat"}, Stdin: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteStdin(ctx, "src", sess.ID, cat.ID, []byte("x"), false); err != nil {
		t.Fatal(err)
	}
	if err := c.Signal(ctx, "src", sess.ID, cat.ID, "SIGTERM"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetCommand(ctx, "src", sess.ID, ran.ID); err != nil {
		t.Fatal(err)
	}
	if cs, _, err := c.ListCommands(ctx, "src", sess.ID, client.ListOptions{}); err != nil || len(cs) != 2 {
		t.Fatal(cs, err)
	}
	ereq, _ := http.NewRequest("GET", h.srv.URL+"/api/v1/projects/src/sessions/"+sess.ID+"/commands/"+ran.ID+"/events", nil)
	ereq.Header.Set("Authorization", "Bearer "+h.admin)
	if eresp, err := hc.Do(ereq); err != nil || eresp.StatusCode != 200 {
		t.Fatal(eresp, err)
	} else {
		eresp.Body.Close()
	}
	if end, err := c.CheckinSession(ctx, "src", sess.ID, client.CheckinRequest{}); err != nil || end.Message != "Session ended. Review task queued." {
		t.Fatal(end, err)
	}
	s2, err := c.CreateSession(ctx, "src", client.SessionRequest{Branch: "agent/s"})
	if err != nil {
		t.Fatal(err)
	}
	if end, err := c.TerminateSession(ctx, "src", s2.ID); err != nil || end.Status != "terminated" {
		t.Fatal(end, err)
	}
	if _, err := c.TerminateSession(ctx, "src", s2.ID); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	if st, err := c.Undeploy(ctx, "src"); err != nil || st.Running {
		t.Fatal(st, err)
	}
	if err := c.DeleteProject(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if es, _, err := c.ListAudit(ctx, client.AuditFilter{Target: "project/web"}); err != nil || len(es) < 3 {
		t.Fatal(es, err)
	}
	// Workers and tasks: the checked-in checkout's review, and a task of a
	// team's own kind.
	wk, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: "ci", Kinds: []string{"review", "lint"}, Capacity: 2})
	if err != nil || !wk.Online {
		t.Fatal(wk, err)
	}
	if _, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: "bad", Kinds: []string{"Review"}, Capacity: 1}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	if err := c.WorkerHeartbeat(ctx, wk.ID); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetWorker(ctx, wk.ID); err != nil || got.Capacity != 2 {
		t.Fatal(got, err)
	}
	if _, err := c.Claim(ctx, wk.ID, []string{"deploy"}, 0); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	// Two reviews are queued (the checkout's and the session's).
	review, err := c.Claim(ctx, wk.ID, []string{"review"}, time.Second)
	if err != nil || review == nil || review.Status != "claimed" {
		t.Fatal(review, err)
	}
	other, err := c.Claim(ctx, wk.ID, []string{"review"}, time.Second)
	if err != nil || other == nil {
		t.Fatal(other, err)
	}
	if other.ID == res.ReviewTaskID {
		review, other = other, review
	}
	if review.ID != res.ReviewTaskID {
		t.Fatalf("claimed %s and %s, not the checkout's review %s", review.ID, other.ID, res.ReviewTaskID)
	}
	if _, err := c.CompleteTask(ctx, other.ID, wk.ID, client.ReviewResult{Verdict: "failed", Reason: "tests failed"}); err != nil {
		t.Fatal(err)
	}
	if got, err := c.GetSession(ctx, "src", sess.ID); err != nil || got.Review == nil || got.Review.TaskID != other.ID ||
		got.Review.Verdict != "failed" || got.Review.Reason != "tests failed" {
		t.Fatalf("the session's review: %+v %v", got.Review, err)
	}
	if cancelled, err := c.HeartbeatTask(ctx, review.ID, wk.ID); err != nil || cancelled {
		t.Fatal(cancelled, err)
	}
	if err := c.AppendTaskLog(ctx, review.ID, wk.ID, "stdout", []byte("ok\n")); err != nil {
		t.Fatal(err)
	}
	idle, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: "idle", Kinds: []string{"review"}, Capacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CompleteTask(ctx, review.ID, idle.ID, client.ReviewResult{Verdict: "passed"}); client.ErrorCode(err) != "LEASE_NOT_HELD" {
		t.Fatal(err)
	}
	if _, err := c.CompleteTask(ctx, review.ID, wk.ID, map[string]string{"verdict": "maybe"}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	done, err := c.CompleteTask(ctx, review.ID, wk.ID, client.ReviewResult{Verdict: "passed"})
	if err != nil || done.Status != "succeeded" || !strings.Contains(string(done.Result), `"merged":true`) {
		t.Fatal(done, err)
	}
	if got, err := c.GetCheckout(ctx, "src", co.ID); err != nil || got.Review == nil || got.Review.Verdict != "passed" || !got.Review.Merged {
		t.Fatal(got, err)
	}
	treq, _ := http.NewRequest("GET", h.srv.URL+"/api/v1/tasks/"+review.ID+"/events", nil)
	treq.Header.Set("Authorization", "Bearer "+h.admin)
	if tresp, err := hc.Do(treq); err != nil || tresp.StatusCode != 200 {
		t.Fatal(tresp, err)
	} else {
		tresp.Body.Close()
	}
	lint, err := c.CreateTask(ctx, client.TaskRequest{Kind: "lint", ProjectID: "src", Payload: []byte(`{"path":"."}`), MaxAttempts: 2})
	if err != nil || lint.Status != "queued" {
		t.Fatal(lint, err)
	}
	if _, err := c.CreateTask(ctx, client.TaskRequest{Kind: "lint", ProjectID: "src", Payload: []byte(`[1]`)}); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err)
	}
	if got, err := c.Claim(ctx, wk.ID, nil, 0); err != nil || got == nil || got.ID != lint.ID {
		t.Fatal(got, err)
	}
	if f, err := c.FailTask(ctx, lint.ID, wk.ID, "flaky", true); err != nil || f.Status != "queued" {
		t.Fatal(f, err)
	}
	if none, err := c.Claim(ctx, wk.ID, nil, 0); err != nil || none != nil {
		t.Fatalf("claimed during the backoff: %+v %v", none, err)
	}
	if x, err := c.CancelTask(ctx, lint.ID); err != nil || x.Status != "cancelled" {
		t.Fatal(x, err)
	}
	if _, err := c.CancelTask(ctx, lint.ID); client.ErrorCode(err) != "TASK_FINISHED" {
		t.Fatal(err)
	}
	if got, err := c.GetTask(ctx, lint.ID); err != nil || got.Attempts != 1 {
		t.Fatal(got, err)
	}
	if _, err := c.GetTask(ctx, "tnope"); client.ErrorCode(err) != "NOT_FOUND" {
		t.Fatal(err)
	}
	if ts, _, err := c.ListTasks(ctx, client.TaskFilter{Project: "src"}); err != nil || len(ts) < 3 {
		t.Fatal(ts, err)
	}
	if pl, err := c.Pool(ctx); err != nil || pl.WorkersOnline != 2 || pl.Capacity != 3 { // ci and idle
		t.Fatal(pl, err)
	}
	// One round trip per task: complete and claim the next.
	var queued []string
	for range 2 {
		q, err := c.CreateTask(ctx, client.TaskRequest{Kind: "lint", ProjectID: "src"})
		if err != nil {
			t.Fatal(err)
		}
		queued = append(queued, q.ID)
	}
	first, err := c.Claim(ctx, wk.ID, []string{"lint"}, 0)
	if err != nil || first == nil || first.ID != queued[0] {
		t.Fatal(first, err)
	}
	done1, next, err := c.CompleteAndClaim(ctx, first.ID, wk.ID, map[string]int{"n": 1}, []string{"lint"}, 0)
	if err != nil || done1.Status != "succeeded" || next == nil || next.ID != queued[1] {
		t.Fatal(done1, next, err)
	}
	if _, _, err := c.CompleteAndClaim(ctx, next.ID, "wother", nil, nil, 0); client.ErrorCode(err) != "BAD_REQUEST" {
		t.Fatal(err) // an unknown worker
	}
	if done2, none, err := c.CompleteAndClaim(ctx, next.ID, wk.ID, nil, []string{"lint"}, 0); err != nil || done2.Status != "succeeded" || none != nil {
		t.Fatal(done2, none, err)
	}
	if err := c.DeregisterWorker(ctx, wk.ID); err != nil {
		t.Fatal(err)
	}
	// Unauthenticated and operational routes.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/projects"} {
		resp, err := hc.Get(h.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	seen := v.Seen()
	for _, r := range routes(t, h.api.Router()) {
		if strings.Contains(r, " /git/") || strings.Contains(r, " /preview/") || strings.HasSuffix(r, "/preview-auth") {
			continue // git's own protocol, and the session's app: tested with git and TestPreview
		}
		if seen[r] == 0 {
			t.Errorf("no response of %s was validated", r)
		}
	}
}
