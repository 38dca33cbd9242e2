package httpapi_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"rdev.dev/rdev/internal/store/postgres"
	"rdev.dev/rdev/internal/store/postgres/pgtest"
)

func TestConcurrentCheckoutsOfOneBranch(t *testing.T) {
	run := func(t *testing.T, h *harness) {
		h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web", "import_from": makeRepo(t, "feature/a")}).want(t, 201, "")
		for _, body := range []map[string]any{{"branch": "feature/a"}, {"new_branch": "agent/x"}} {
			var wg sync.WaitGroup
			statuses := make(chan *response, 50)
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					statuses <- h.do("POST", "/api/v1/projects/web/checkouts", h.admin, body)
				}()
			}
			wg.Wait()
			close(statuses)
			created, conflicts := 0, 0
			for r := range statuses {
				switch {
				case r.Status == 201:
					created++
				case r.Status == 409 && r.Error.Code == "CHECKOUT_EXISTS" && r.Error.Message == "active checkout already exists for this branch":
					conflicts++
				default:
					t.Errorf("unexpected answer %d %s", r.Status, r.Body)
				}
			}
			if created != 1 || conflicts != 49 {
				t.Fatalf("%v: %d created, %d conflicts; want 1 and 49", body, created, conflicts)
			}
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

func TestCheckoutValidation(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web", "protected_branches": []string{"release/*"},
		"import_from": makeRepo(t, "feature/a", "release/1")}).want(t, 201, "")
	cases := []struct {
		name   string
		body   string
		status int
		code   string
		msg    string
	}{
		{"Neither", `{}`, 400, "BAD_REQUEST", "branch or new_branch is required"},
		{"Both", `{"branch":"a","new_branch":"b"}`, 400, "BAD_REQUEST", "specify either branch or new_branch, not both"},
		{"BadNewBranch", `{"new_branch":"a..b"}`, 400, "BAD_REQUEST", "invalid branch name"},
		{"LeadingDash", `{"new_branch":"-x"}`, 400, "BAD_REQUEST", "invalid branch name"},
		{"LockSuffix", `{"new_branch":"x.lock"}`, 400, "BAD_REQUEST", "invalid branch name"},
		{"ReflogSyntax", `{"branch":"x@{1}"}`, 400, "BAD_REQUEST", "invalid branch name"},
		{"ControlChar", `{"new_branch":"a\u0001b"}`, 400, "BAD_REQUEST", "invalid branch name"},
		{"TooLong", `{"new_branch":"` + strings.Repeat("x", 201) + `"}`, 400, "BAD_REQUEST", "longer than 200"},
		{"BadExpiry", `{"branch":"feature/a","expires_in":"soon"}`, 400, "BAD_REQUEST", "expires_in must be a valid duration (e.g., 24h, 7d)"},
		{"ExpiryTooLong", `{"branch":"feature/a","expires_in":"31d"}`, 400, "BAD_REQUEST", "expires_in cannot exceed 30 days"},
		{"ExpiryTooLongHours", `{"branch":"feature/a","expires_in":"721h"}`, 400, "BAD_REQUEST", "expires_in cannot exceed 30 days"},
		{"BadSlug", `{"branch":"feature/a","feature_slug":"Not A Slug"}`, 400, "BAD_REQUEST", "DNS label"},
		{"FromRefWithBranch", `{"branch":"feature/a","from_ref":"main"}`, 400, "BAD_REQUEST", "from_ref goes with new_branch"},
		{"Missing", `{"branch":"nope"}`, 404, "NOT_FOUND", "branch not found"},
		{"MissingFromRef", `{"new_branch":"n","from_ref":"nope"}`, 404, "NOT_FOUND", "ref not found"},
		{"DashFromRef", `{"new_branch":"n","from_ref":"--all"}`, 400, "BAD_REQUEST", "invalid ref"},
		{"DotsFromRef", `{"new_branch":"n","from_ref":"main..dev"}`, 400, "BAD_REQUEST", "invalid ref"},
		{"ReflogFromRef", `{"new_branch":"n","from_ref":"main@{1}"}`, 400, "BAD_REQUEST", "invalid ref"},
		{"LockFromRef", `{"new_branch":"n","from_ref":"refs/heads/x.lock"}`, 400, "BAD_REQUEST", "invalid ref"},
		{"TagFromRef", `{"new_branch":"n2","from_ref":"refs/tags/nope"}`, 404, "NOT_FOUND", "ref not found"},
		{"Default", `{"branch":"main"}`, 400, "BAD_REQUEST", "cannot checkout protected branch"},
		{"Pattern", `{"branch":"release/1"}`, 400, "BAD_REQUEST", "cannot checkout protected branch"},
		{"PatternNew", `{"new_branch":"release/2"}`, 400, "BAD_REQUEST", "cannot checkout protected branch"},
		{"NewExists", `{"new_branch":"feature/a"}`, 409, "BRANCH_EXISTS", "branch already exists"},
		{"UnknownField", `{"branch":"feature/a","ttl":"1h"}`, 400, "BAD_REQUEST", "unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := h.do("POST", "/api/v1/projects/web/checkouts", h.admin, tc.body)
			r.want(t, tc.status, tc.code)
			if !strings.Contains(r.Error.Message, tc.msg) {
				t.Fatalf("message %q, want it to contain %q", r.Error.Message, tc.msg)
			}
		})
	}
	// None of them left a checkout or a branch behind.
	r := h.do("GET", "/api/v1/projects/web/checkouts", h.admin, nil)
	if string(r.Data) != `{"checkouts":[]}` {
		t.Fatalf("checkouts after refused requests: %s", r.Data)
	}
	h.do("POST", "/api/v1/projects/web/checkouts", h.admin, `{"new_branch":"n"}`).want(t, 201, "")
	// A missing project and a foreign checkout.
	h.do("POST", "/api/v1/projects/nope/checkouts", h.admin, `{"branch":"a"}`).want(t, 404, "NOT_FOUND")
	h.do("GET", "/api/v1/projects/web/checkouts/cnosuchxxxxxxxxxx", h.admin, nil).want(t, 404, "NOT_FOUND")
}
