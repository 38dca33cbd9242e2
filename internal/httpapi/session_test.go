package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/postgres"
	"rdev.dev/rdev/internal/store/postgres/pgtest"
	"rdev.dev/rdev/internal/store/sqlite"
)

// sessionsHarness has project "web" (running, with branches feature/a and
// release/1, release/* protected), project "idle" (not running) and
// project "other" (running).
func sessionsHarness(t *testing.T, h *harness) {
	for _, p := range []map[string]any{
		{"id": "web", "name": "Web", "protected_branches": []string{"release/*"}, "import_from": makeRepo(t, "feature/a", "release/1", "taken")},
		{"id": "idle", "name": "Idle", "import_from": makeRepo(t, "feature/a")},
		{"id": "other", "name": "Other", "import_from": makeRepo(t, "feature/a")},
	} {
		h.do("POST", "/api/v1/projects", h.admin, p).want(t, 201, "")
	}
	h.do("POST", "/api/v1/projects/web/deploy", h.admin, nil).want(t, 200, "")
	h.do("POST", "/api/v1/projects/other/deploy", h.admin, nil).want(t, 200, "")
}

// TestSessionContract covers every message, status and code of SPEC §5
// Sessions.
func TestSessionContract(t *testing.T) {
	h := newHarness(t)
	sessionsHarness(t, h)
	// "taken" has a plain checkout: a session on it conflicts.
	h.do("POST", "/api/v1/projects/web/checkouts", h.admin, `{"branch":"taken"}`).want(t, 201, "")

	create := []struct {
		name, project, body string
		status              int
		code, msg           string
	}{
		{"BadProjectID", "Bad_ID", `{"branch":"feature/a"}`, 400, "BAD_REQUEST", "invalid project id"},
		{"UnreadableBody", "web", `{"branch":`, 400, "BAD_REQUEST", "invalid request body"},
		{"NotJSON", "web", `branch=feature/a`, 400, "BAD_REQUEST", "invalid request body"},
		{"UnknownField", "web", `{"branch":"feature/a","colour":1}`, 400, "BAD_REQUEST", "invalid request body"},
		{"Neither", "web", `{}`, 400, "BAD_REQUEST", "branch or new_branch is required"},
		{"Both", "web", `{"branch":"a","new_branch":"b"}`, 400, "BAD_REQUEST", "specify either branch or new_branch, not both"},
		{"BothBeatsBadExpiry", "web", `{"branch":"a","new_branch":"b","expires_in":"x"}`, 400, "BAD_REQUEST", "specify either branch or new_branch, not both"},
		{"InvalidNewBranch", "web", `{"new_branch":"a..b"}`, 400, "BAD_REQUEST", "invalid branch name"},
		{"InvalidNewBranchBeatsExpiry", "web", `{"new_branch":"-a","expires_in":"x"}`, 400, "BAD_REQUEST", "invalid branch name"},
		{"BadExpiry", "web", `{"new_branch":"n","expires_in":"tomorrow"}`, 400, "BAD_REQUEST", "expires_in must be a valid duration (e.g., 24h, 7d)"},
		{"ZeroDays", "web", `{"new_branch":"n","expires_in":"0d"}`, 400, "BAD_REQUEST", "expires_in must be a valid duration (e.g., 24h, 7d)"},
		{"TooLong", "web", `{"new_branch":"n","expires_in":"31d"}`, 400, "BAD_REQUEST", "expires_in cannot exceed 30 days"},
		{"TooLongHours", "web", `{"new_branch":"n","expires_in":"800h"}`, 400, "BAD_REQUEST", "expires_in cannot exceed 30 days"},
		{"ProjectMissing", "nope", `{"branch":"feature/a"}`, 404, "NOT_FOUND", "project not found"},
		{"NotRunning", "idle", `{"branch":"feature/a"}`, 400, "BAD_REQUEST", "project pod is not running"},
		{"BranchMissing", "web", `{"branch":"nope"}`, 404, "NOT_FOUND", "branch not found"},
		{"Protected", "web", `{"branch":"release/1"}`, 400, "BAD_REQUEST", "cannot checkout protected branch"},
		{"ProtectedDefault", "web", `{"branch":"main"}`, 400, "BAD_REQUEST", "cannot checkout protected branch"},
		{"ProtectedNew", "web", `{"new_branch":"release/2"}`, 400, "BAD_REQUEST", "cannot checkout protected branch"},
		{"CheckedOut", "web", `{"branch":"taken"}`, 409, "CHECKOUT_EXISTS", "active checkout already exists for this branch"},
	}
	for _, tc := range create {
		t.Run("Create/"+tc.name, func(t *testing.T) {
			r := h.do("POST", "/api/v1/projects/"+tc.project+"/sessions", h.admin, tc.body)
			r.want(t, tc.status, tc.code)
			if r.Error.Message != tc.msg && !(tc.msg == "invalid branch name" && strings.HasPrefix(r.Error.Message, tc.msg)) {
				t.Fatalf("message %q, want %q", r.Error.Message, tc.msg)
			}
		})
	}

	// Success, with defaults.
	r := h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"new_branch":"agent/one"}`)
	r.want(t, 201, "")
	var s struct {
		ID           string    `json:"id"`
		CheckoutID   string    `json:"checkout_id"`
		PodName      string    `json:"pod_name"`
		PreviewURL   string    `json:"preview_url"`
		Status       string    `json:"status"`
		CreatedBy    string    `json:"created_by"`
		Branch       string    `json:"branch"`
		AuthCloneURL string    `json:"auth_clone_url"`
		Instructions string    `json:"instructions"`
		PreviewPort  int       `json:"preview_port"`
		CreatedAt    time.Time `json:"created_at"`
		ExpiresAt    time.Time `json:"expires_at"`
	}
	mustJSON(t, r.Data, &s)
	if s.PreviewPort != 8080 || s.ExpiresAt.Sub(s.CreatedAt) != 24*time.Hour || s.Status != "active" || s.Branch != "agent/one" ||
		s.PodName == "" || s.CheckoutID == "" || s.AuthCloneURL == "" || s.Instructions == "" || s.CreatedBy == "" ||
		s.PreviewURL != "http://"+s.ID+".preview.localhost:7420/" || strings.ToLower(s.ID) != s.ID || len(s.ID) > 63 {
		t.Fatalf("created session: %s", r.Data)
	}

	t.Run("Create/SessionExists", func(t *testing.T) {
		r := h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"new_branch":"agent/two"}`)
		r.want(t, 409, "SESSION_EXISTS")
		if r.Error.Message != "active session already exists for this project" {
			t.Fatalf("message %q", r.Error.Message)
		}
		// Before the branch is looked at.
		h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"branch":"nope"}`).want(t, 409, "SESSION_EXISTS")
	})
	t.Run("Get", func(t *testing.T) {
		h.do("GET", "/api/v1/projects/web/sessions/"+s.ID, h.admin, nil).want(t, 200, "")
		for _, p := range []string{"/api/v1/projects/other/sessions/" + s.ID, "/api/v1/projects/web/sessions/snosuch"} {
			r := h.do("GET", p, h.admin, nil)
			r.want(t, 404, "NOT_FOUND")
			if r.Error.Message != "session not found" {
				t.Fatalf("%s: %q", p, r.Error.Message)
			}
		}
		r := h.do("GET", "/api/v1/projects/web/sessions", h.admin, nil)
		if !strings.HasPrefix(string(r.Data), `{"sessions":[{"id":"`+s.ID) {
			t.Fatalf("list: %s", r.Data)
		}
	})
	t.Run("CheckinOfAnotherProject", func(t *testing.T) {
		r := h.do("POST", "/api/v1/projects/other/sessions/"+s.ID+"/checkin", h.admin, nil)
		r.want(t, 404, "NOT_FOUND")
	})
	t.Run("CheckinWithReview", func(t *testing.T) {
		r := h.do("POST", "/api/v1/projects/web/sessions/"+s.ID+"/checkin", h.admin, `not json at all`)
		r.want(t, 200, "")
		var end struct {
			SessionID    string `json:"session_id"`
			Status       string `json:"status"`
			ReviewTaskID string `json:"review_task_id"`
			Message      string `json:"message"`
		}
		mustJSON(t, r.Data, &end)
		if end.SessionID != s.ID || end.Status != "ended" || end.ReviewTaskID == "" || end.Message != "Session ended. Review task queued." {
			t.Fatalf("check-in: %s", r.Data)
		}
		r = h.do("POST", "/api/v1/projects/web/sessions/"+s.ID+"/checkin", h.admin, nil)
		r.want(t, 400, "BAD_REQUEST")
		if r.Error.Message != "session is not active" {
			t.Fatalf("second check-in: %q", r.Error.Message)
		}
		r = h.do("DELETE", "/api/v1/projects/web/sessions/"+s.ID, h.admin, nil)
		r.want(t, 400, "BAD_REQUEST")
		if r.Error.Message != "session is not active" {
			t.Fatalf("terminate an ended session: %q", r.Error.Message)
		}
		h.do("POST", "/api/v1/projects/web/sessions/"+s.ID+"/keepalive", h.admin, nil).want(t, 400, "BAD_REQUEST")
	})
	t.Run("CheckinSkipReview", func(t *testing.T) {
		r := h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"branch":"agent/one"}`)
		r.want(t, 201, "")
		var s2 struct{ ID string }
		mustJSON(t, r.Data, &s2)
		r = h.do("POST", "/api/v1/projects/web/sessions/"+s2.ID+"/checkin", h.admin, `{"skip_review":true}`)
		r.want(t, 200, "")
		var end struct {
			ReviewTaskID string `json:"review_task_id"`
			Message      string `json:"message"`
		}
		mustJSON(t, r.Data, &end)
		if end.ReviewTaskID != "" || end.Message != "Session ended. Preview removed, token revoked." {
			t.Fatalf("check-in: %s", r.Data)
		}
	})
	t.Run("Terminate", func(t *testing.T) {
		r := h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"branch":"agent/one","preview_port":3000,"expires_in":"7d"}`)
		r.want(t, 201, "")
		var s3 struct {
			ID          string    `json:"id"`
			PreviewPort int       `json:"preview_port"`
			CreatedAt   time.Time `json:"created_at"`
			ExpiresAt   time.Time `json:"expires_at"`
		}
		mustJSON(t, r.Data, &s3)
		if s3.PreviewPort != 3000 || s3.ExpiresAt.Sub(s3.CreatedAt) != 7*24*time.Hour {
			t.Fatalf("preview port / expiry: %s", r.Data)
		}
		// Only admin may terminate.
		exec := h.key(nil, rdev.ScopeSessionsExecute)
		h.do("DELETE", "/api/v1/projects/web/sessions/"+s3.ID, exec, nil).want(t, 403, "FORBIDDEN")
		r = h.do("DELETE", "/api/v1/projects/web/sessions/"+s3.ID, h.admin, nil)
		r.want(t, 200, "")
		var end struct{ ID, Status, Message string }
		mustJSON(t, r.Data, &end)
		if end.ID != s3.ID || end.Status != "terminated" || end.Message != "Session force-terminated. Preview removed, token revoked." {
			t.Fatalf("terminate: %s", r.Data)
		}
	})
}

// failingStore fails the session operations with an unexpected error.
type failingStore struct{ rdev.Store }

var errDisk = errors.New("disk on fire at /var/lib/secret")

func (f failingStore) CreateSession(context.Context, *rdev.Session, *rdev.Checkout) error {
	return errDisk
}
func (f failingStore) ListSessions(context.Context, string, rdev.Page) ([]*rdev.Session, string, error) {
	return nil, "", errDisk
}
func (f failingStore) GetSession(context.Context, string, string) (*rdev.Session, error) {
	return nil, errDisk
}

func TestSessionInternalErrors(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rdev.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h := newHarnessOn(t, failingStore{st})
	sessionsHarness(t, h)
	for _, tc := range []struct{ method, path, body, msg string }{
		{"POST", "/api/v1/projects/web/sessions", `{"branch":"feature/a"}`, "Failed to create session"},
		{"GET", "/api/v1/projects/web/sessions", "", "Failed to list sessions"},
		{"GET", "/api/v1/projects/web/sessions/sx", "", "Failed to get session"},
		{"POST", "/api/v1/projects/web/sessions/sx/checkin", "", "Failed to end session"},
		{"DELETE", "/api/v1/projects/web/sessions/sx", "", "Failed to terminate session"},
	} {
		var body any
		if tc.body != "" {
			body = tc.body
		}
		r := h.do(tc.method, tc.path, h.admin, body)
		r.want(t, 500, "INTERNAL_ERROR")
		if r.Error.Message != tc.msg || strings.Contains(string(r.Body), "fire") {
			t.Fatalf("%s %s: %s", tc.method, tc.path, r.Body)
		}
	}
}

func TestConcurrentSessionCreates(t *testing.T) {
	run := func(t *testing.T, h *harness) {
		sessionsHarness(t, h)
		var wg sync.WaitGroup
		out := make(chan *response, 50)
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out <- h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"new_branch":"agent/race"}`)
			}()
		}
		wg.Wait()
		close(out)
		created, exists := 0, 0
		for r := range out {
			switch {
			case r.Status == 201:
				created++
			case r.Status == 409 && r.Error.Code == "SESSION_EXISTS":
				exists++
			default:
				t.Errorf("unexpected %d %s", r.Status, r.Body)
			}
		}
		if created != 1 || exists != 49 {
			t.Fatalf("%d created, %d SESSION_EXISTS", created, exists)
		}
	}
	t.Run("SQLite", func(t *testing.T) { run(t, newHarness(t)) })
	t.Run("PostgreSQL", func(t *testing.T) {
		st, err := postgres.Open(context.Background(), pgtest.URL(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		run(t, newHarnessOn(t, st))
	})
}

// A server that stopped between ending a session and removing its
// workspace leaves it behind; the next start removes it, and nothing of an
// active session.
func TestRemoveEndedWorkspaces(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	ended := startSession(t, h)
	if _, err := h.store.EndSession(ctx, "web", ended, rdev.SessionEnded, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	r := h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"new_branch":"agent/next"}`)
	r.want(t, 201, "")
	var next struct {
		ID string `json:"id"`
	}
	json.Unmarshal(r.Data, &next)
	for _, sid := range []string{ended, next.ID} {
		if _, err := os.Stat(h.pods.WorkspacePath("web", sid)); err != nil {
			t.Fatalf("workspace of %s: %v", sid, err)
		}
	}
	n, err := h.svc.RemoveEndedWorkspaces(ctx)
	if err != nil || n != 1 {
		t.Fatalf("removed %d: %v", n, err)
	}
	if _, err := os.Stat(h.pods.WorkspacePath("web", ended)); !os.IsNotExist(err) {
		t.Fatalf("the ended session's workspace: %v", err)
	}
	if _, err := os.Stat(h.pods.WorkspacePath("web", next.ID)); err != nil {
		t.Fatalf("the active session's workspace: %v", err)
	}
	if n, err := h.svc.RemoveEndedWorkspaces(ctx); err != nil || n != 0 {
		t.Fatalf("again: %d %v", n, err)
	}
}
