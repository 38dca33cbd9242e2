// Package storetest is the conformance suite every rdev.Store passes. The
// SQLite and PostgreSQL packages run it unchanged.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// Opener returns a fresh, empty store for one test; it arranges its own cleanup.
type Opener func(t *testing.T) rdev.Store

// Run runs the whole suite against stores made by open.
func Run(t *testing.T, open Opener) {
	t.Run("Projects", func(t *testing.T) { testProjects(t, open) })
	t.Run("Keys", func(t *testing.T) { testKeys(t, open) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
	t.Run("Checkouts", func(t *testing.T) { testCheckouts(t, open) })
	t.Run("Sessions", func(t *testing.T) { testSessions(t, open) })
	t.Run("Commands", func(t *testing.T) { testCommands(t, open) })
	t.Run("Tasks", func(t *testing.T) { testTasks(t, open) })
}

var t0 = rdev.Timestamp(time.Date(2026, 11, 1, 12, 0, 0, 123456789, time.UTC))

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func project(id string, at time.Time) *rdev.Project {
	port := 3000
	p := &rdev.Project{
		ID: id, Name: "Project " + id, DefaultBranch: "main",
		ProtectedBranches: []string{"release/*"},
		ReviewCommand:     "go test ./...",
		Components: []rdev.Component{
			{Name: "web", Command: "npm start", Port: &port, Env: map[string]string{"NODE_ENV": "development"}, Image: "node:22"},
			{Name: "worker", Command: "./worker"},
		},
		Limits:    rdev.Limits{Memory: "2GiB", PIDs: 512, CPU: 1.5},
		Egress:    rdev.Egress{Mode: rdev.EgressAllow, Allow: []string{"proxy.golang.org", "*.npmjs.org", "10.1.2.0/24:5432"}},
		CreatedAt: at, UpdatedAt: at,
	}
	return p
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("error = %v, want %v", got, want)
	}
}

func equalJSONish(t *testing.T, got, want any) {
	t.Helper()
	if g, w := fmt.Sprintf("%+v", deref(got)), fmt.Sprintf("%+v", deref(want)); g != w {
		t.Fatalf("got  %s\nwant %s", g, w)
	}
}

func deref(v any) any {
	switch x := v.(type) {
	case *rdev.Project:
		c := *x
		comps := make([]string, len(c.Components))
		for i, co := range c.Components {
			port := "nil"
			if co.Port != nil {
				port = fmt.Sprint(*co.Port)
			}
			comps[i] = fmt.Sprintf("%s|%s|%s|%v|%s", co.Name, co.Command, port, co.Env, co.Image)
		}
		c.Components = nil
		return fmt.Sprintf("%+v comps=%v", c, comps)
	case *rdev.APIKey:
		c := *x
		return fmt.Sprintf("%s %s %v %v %s %s %v %v %v %v", c.ID, c.Name, c.Scopes, c.Projects, c.Hash, c.CreatedBy,
			c.CreatedAt, tp(c.ExpiresAt), tp(c.LastUsedAt), tp(c.DeletedAt))
	}
	return v
}

func tp(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return t.String()
}

func testProjects(t *testing.T, open Opener) {
	t.Run("CreateGet", func(t *testing.T) {
		s, c := open(t), ctx(t)
		p := project("web", t0)
		must(t, s.CreateProject(c, p))
		got, err := s.GetProject(c, "web")
		must(t, err)
		equalJSONish(t, got, p)
	})
	t.Run("Defaults", func(t *testing.T) {
		s, c := open(t), ctx(t)
		must(t, s.CreateProject(c, &rdev.Project{ID: "bare", Name: "Bare", DefaultBranch: "main", CreatedAt: t0, UpdatedAt: t0}))
		got, err := s.GetProject(c, "bare")
		must(t, err)
		if got.ProtectedBranches == nil || len(got.ProtectedBranches) != 0 || got.Components == nil || len(got.Components) != 0 {
			t.Fatalf("want empty non-nil slices, got %#v %#v", got.ProtectedBranches, got.Components)
		}
		if got.Egress.Mode != rdev.EgressPublic || got.Limits != (rdev.Limits{}) {
			t.Fatalf("want the public egress mode and no limits by default, got %+v %+v", got.Egress, got.Limits)
		}
	})
	t.Run("DuplicateIDConflicts", func(t *testing.T) {
		s, c := open(t), ctx(t)
		must(t, s.CreateProject(c, project("dup", t0)))
		wantErr(t, s.CreateProject(c, project("dup", t0.Add(time.Second))), rdev.ErrProjectExists)
		got, err := s.GetProject(c, "dup")
		must(t, err)
		if !got.CreatedAt.Equal(t0) {
			t.Fatalf("the conflicting insert changed the record: %v", got.CreatedAt)
		}
	})
	t.Run("InvalidIDRefusedByDatabase", func(t *testing.T) {
		s, c := open(t), ctx(t)
		for _, id := range []string{"", "Upper", "-lead", "trail-", "has space", "x/../y"} {
			if err := s.CreateProject(c, project(id, t0)); err == nil {
				t.Errorf("id %q: the database accepted it", id)
			}
		}
	})
	t.Run("GetMissing", func(t *testing.T) {
		s, c := open(t), ctx(t)
		_, err := s.GetProject(c, "nope")
		wantErr(t, err, rdev.ErrProjectNotFound)
	})
	t.Run("ListNewestFirstPaged", func(t *testing.T) {
		s, c := open(t), ctx(t)
		for i := range 7 {
			must(t, s.CreateProject(c, project(fmt.Sprintf("p%d", i), t0.Add(time.Duration(i)*time.Second))))
		}
		// Two with the same timestamp order by id, descending.
		must(t, s.CreateProject(c, project("same-a", t0.Add(3*time.Second))))
		var ids []string
		cursor := ""
		pages := 0
		for {
			ps, next, err := s.ListProjects(c, rdev.ProjectFilter{Page: rdev.Page{Limit: 3, Cursor: cursor}})
			must(t, err)
			pages++
			for _, p := range ps {
				ids = append(ids, p.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		want := "[p6 p5 p4 same-a p3 p2 p1 p0]"
		if fmt.Sprint(ids) != want || pages != 3 {
			t.Fatalf("ids %v in %d pages, want %s in 3", ids, pages, want)
		}
	})
	t.Run("ListFilteredByIDs", func(t *testing.T) {
		s, c := open(t), ctx(t)
		for i := range 4 {
			must(t, s.CreateProject(c, project(fmt.Sprintf("p%d", i), t0.Add(time.Duration(i)*time.Second))))
		}
		ps, _, err := s.ListProjects(c, rdev.ProjectFilter{IDs: []string{"p1", "p3", "missing"}, Page: rdev.Page{Limit: 10}})
		must(t, err)
		if len(ps) != 2 || ps[0].ID != "p3" || ps[1].ID != "p1" {
			t.Fatalf("got %d projects", len(ps))
		}
		ps, _, err = s.ListProjects(c, rdev.ProjectFilter{IDs: []string{}, Page: rdev.Page{Limit: 10}})
		must(t, err)
		if len(ps) != 0 {
			t.Fatalf("empty allow-list listed %d", len(ps))
		}
	})
	t.Run("Patch", func(t *testing.T) {
		s, c := open(t), ctx(t)
		must(t, s.CreateProject(c, project("web", t0)))
		p, _ := s.GetProject(c, "web")
		name := "Renamed"
		*p = rdev.ProjectPatch{Name: &name, Components: &[]rdev.Component{}}.Apply(*p)
		p.UpdatedAt = t0.Add(time.Minute)
		must(t, s.UpdateProject(c, p))
		got, err := s.GetProject(c, "web")
		must(t, err)
		if got.Name != "Renamed" || len(got.Components) != 0 || !got.UpdatedAt.Equal(t0.Add(time.Minute)) || !got.CreatedAt.Equal(t0) {
			t.Fatalf("after patch: %+v", got)
		}
		if got.ReviewCommand != "go test ./..." {
			t.Fatalf("patch changed an untouched field: %q", got.ReviewCommand)
		}
		wantErr(t, s.UpdateProject(c, project("missing", t0)), rdev.ErrProjectNotFound)
	})
	t.Run("Delete", func(t *testing.T) {
		s, c := open(t), ctx(t)
		must(t, s.CreateProject(c, project("gone", t0)))
		must(t, s.CreateProject(c, project("kept", t0)))
		must(t, s.DeleteProject(c, "gone"))
		_, err := s.GetProject(c, "gone")
		wantErr(t, err, rdev.ErrProjectNotFound)
		wantErr(t, s.DeleteProject(c, "gone"), rdev.ErrProjectNotFound)
		ids, err := s.ProjectIDs(c)
		must(t, err)
		if fmt.Sprint(ids) != "[kept]" {
			t.Fatalf("ProjectIDs = %v", ids)
		}
		// The id is free again.
		must(t, s.CreateProject(c, project("gone", t0)))
	})
}

func key(id, token string, at time.Time, scopes ...rdev.Scope) *rdev.APIKey {
	return &rdev.APIKey{ID: id, Name: "key " + id, Scopes: scopes, Hash: rdev.HashToken(token), CreatedAt: at, CreatedBy: "kroot"}
}

func testKeys(t *testing.T, open Opener) {
	t.Run("LookupByHash", func(t *testing.T) {
		s, c := open(t), ctx(t)
		id, token := rdev.NewKeyToken()
		k := key(id, token, t0, rdev.ScopeProjectsRead, rdev.ScopeSessionsExecute)
		k.Projects = []string{"web", "api"}
		exp := t0.Add(time.Hour)
		k.ExpiresAt = &exp
		must(t, s.CreateKey(c, k))
		got, err := s.GetKey(c, rdev.KeyIDForToken(token))
		must(t, err)
		equalJSONish(t, got, k)
		if !rdev.TokenMatches(token, got.Hash) {
			t.Fatal("the stored hash does not match the token")
		}
		last := token[len(token)-1]
		other := token[:len(token)-1] + map[bool]string{true: "B", false: "A"}[last == 'A']
		if rdev.TokenMatches(token+"x", got.Hash) || rdev.TokenMatches(other, got.Hash) {
			t.Fatal("a different token matched")
		}
		_, err = s.GetKey(c, "knotthereatallxxx")
		wantErr(t, err, rdev.ErrKeyNotFound)
	})
	t.Run("SeededTokenLookup", func(t *testing.T) {
		s, c := open(t), ctx(t)
		token := "a-token-chosen-by-automation-0123456789"
		k := key(rdev.KeyIDForToken(token), token, t0, rdev.ScopeAdmin)
		must(t, s.PutKey(c, k))
		got, err := s.GetKey(c, rdev.KeyIDForToken(token))
		must(t, err)
		if !rdev.TokenMatches(token, got.Hash) || !got.HasScope(rdev.ScopeWorkersRead) {
			t.Fatalf("seeded key: %+v", got)
		}
		// Seeding again after a delete restores it, with the new hash.
		must(t, s.DeleteKey(c, k.ID, t0))
		k.Hash = rdev.HashToken(token + "2")
		must(t, s.PutKey(c, k))
		got, err = s.GetKey(c, k.ID)
		must(t, err)
		if !rdev.TokenMatches(token+"2", got.Hash) {
			t.Fatal("PutKey did not replace the hash")
		}
	})
	t.Run("DuplicateConflicts", func(t *testing.T) {
		s, c := open(t), ctx(t)
		must(t, s.CreateKey(c, key("kaaaaaaaaaaaaaaaa", "t1", t0, rdev.ScopeAdmin)))
		wantErr(t, s.CreateKey(c, key("kaaaaaaaaaaaaaaaa", "t2", t0, rdev.ScopeAdmin)), rdev.ErrConflict)
		wantErr(t, s.CreateKey(c, key("kbbbbbbbbbbbbbbbb", "t1", t0, rdev.ScopeAdmin)), rdev.ErrConflict)
	})
	t.Run("ExpiredRefused", func(t *testing.T) {
		s, c := open(t), ctx(t)
		k := key("kexpiredxxxxxxxxx", "t", t0, rdev.ScopeAdmin)
		exp := t0.Add(time.Hour)
		k.ExpiresAt = &exp
		must(t, s.CreateKey(c, k))
		got, err := s.GetKey(c, k.ID)
		must(t, err)
		if !got.Usable(t0.Add(59*time.Minute)) || got.Usable(t0.Add(time.Hour)) {
			t.Fatal("expiry not honoured at its boundary")
		}
	})
	t.Run("DeletedRefused", func(t *testing.T) {
		s, c := open(t), ctx(t)
		must(t, s.CreateKey(c, key("kdeletedxxxxxxxxx", "t", t0, rdev.ScopeAdmin)))
		must(t, s.CreateKey(c, key("kkeptxxxxxxxxxxxx", "u", t0.Add(time.Second), rdev.ScopeAdmin)))
		must(t, s.DeleteKey(c, "kdeletedxxxxxxxxx", t0.Add(time.Minute)))
		_, err := s.GetKey(c, "kdeletedxxxxxxxxx")
		wantErr(t, err, rdev.ErrKeyNotFound)
		wantErr(t, s.DeleteKey(c, "kdeletedxxxxxxxxx", t0), rdev.ErrKeyNotFound)
		wantErr(t, s.DeleteKey(c, "kneverxxxxxxxxxxx", t0), rdev.ErrKeyNotFound)
		ks, _, err := s.ListKeys(c, rdev.Page{Limit: 10})
		must(t, err)
		if len(ks) != 1 || ks[0].ID != "kkeptxxxxxxxxxxxx" {
			t.Fatalf("ListKeys shows %d keys", len(ks))
		}
		n, err := s.CountKeys(c)
		must(t, err)
		if n != 2 {
			t.Fatalf("CountKeys = %d, want 2 (deleted included)", n)
		}
	})
	t.Run("TouchAndPage", func(t *testing.T) {
		s, c := open(t), ctx(t)
		for i := range 5 {
			must(t, s.CreateKey(c, key(fmt.Sprintf("k%016d", i), fmt.Sprint(i), t0.Add(time.Duration(i)*time.Second), rdev.ScopeAdmin)))
		}
		must(t, s.TouchKey(c, "k0000000000000002", t0.Add(time.Hour)))
		got, _ := s.GetKey(c, "k0000000000000002")
		if got.LastUsedAt == nil || !got.LastUsedAt.Equal(t0.Add(time.Hour)) {
			t.Fatalf("last_used_at = %v", got.LastUsedAt)
		}
		ks, next, err := s.ListKeys(c, rdev.Page{Limit: 3})
		must(t, err)
		ks2, next2, err := s.ListKeys(c, rdev.Page{Limit: 3, Cursor: next})
		must(t, err)
		if len(ks) != 3 || len(ks2) != 2 || next2 != "" || ks[0].ID != "k0000000000000004" || ks2[1].ID != "k0000000000000000" {
			t.Fatalf("pages: %d (%q), %d (%q)", len(ks), next, len(ks2), next2)
		}
	})
}

func testAudit(t *testing.T, open Opener) {
	s, c := open(t), ctx(t)
	for i := range 10 {
		e := &rdev.AuditEntry{At: t0.Add(time.Duration(i) * time.Minute), KeyID: []string{"ka", "kb"}[i%2],
			Method: "POST", Route: "/api/v1/projects", Target: fmt.Sprintf("project/p%d", i%3), ProjectID: fmt.Sprintf("p%d", i%3),
			Status: 201, RequestID: fmt.Sprint("r", i)}
		if i == 9 {
			e.ProjectID = "" // named no project
		}
		must(t, s.AppendAudit(c, e))
		if e.ID == 0 {
			t.Fatal("AppendAudit did not set the id")
		}
	}
	count := func(f rdev.AuditFilter) []string {
		t.Helper()
		f.Limit = 100
		es, _, err := s.ListAudit(c, f)
		must(t, err)
		var rs []string
		for _, e := range es {
			rs = append(rs, e.RequestID)
		}
		return rs
	}
	cases := []struct {
		name string
		f    rdev.AuditFilter
		want string
	}{
		{"All", rdev.AuditFilter{}, "[r9 r8 r7 r6 r5 r4 r3 r2 r1 r0]"},
		{"ByKey", rdev.AuditFilter{KeyID: "kb"}, "[r9 r7 r5 r3 r1]"},
		{"ByTarget", rdev.AuditFilter{Target: "project/p0"}, "[r9 r6 r3 r0]"},
		{"ByTime", rdev.AuditFilter{Since: t0.Add(2 * time.Minute), Until: t0.Add(5 * time.Minute)}, "[r4 r3 r2]"},
		{"Combined", rdev.AuditFilter{KeyID: "ka", Target: "project/p2", Since: t0.Add(time.Minute)}, "[r8 r2]"},
		{"None", rdev.AuditFilter{KeyID: "kz"}, "[]"},
		{"ByProjects", rdev.AuditFilter{Projects: []string{"p0", "p1"}}, "[r7 r6 r4 r3 r1 r0]"},
		{"ByProjectsAndKey", rdev.AuditFilter{Projects: []string{"p0"}, KeyID: "ka"}, "[r6 r0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := fmt.Sprint(count(tc.f)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
	t.Run("Paged", func(t *testing.T) {
		es, next, err := s.ListAudit(c, rdev.AuditFilter{KeyID: "ka", Page: rdev.Page{Limit: 3}})
		must(t, err)
		es2, next2, err := s.ListAudit(c, rdev.AuditFilter{KeyID: "ka", Page: rdev.Page{Limit: 3, Cursor: next}})
		must(t, err)
		if len(es) != 3 || len(es2) != 2 || next2 != "" || es[0].RequestID != "r8" || es2[0].RequestID != "r2" {
			t.Fatalf("pages %d, %d", len(es), len(es2))
		}
		if !es[0].At.Equal(t0.Add(8*time.Minute)) || es[0].Status != 201 || es[0].Route != "/api/v1/projects" || es[0].Method != "POST" || es[0].ProjectID != "p2" {
			t.Fatalf("entry fields: %+v", es[0])
		}
	})
}

func testConcurrency(t *testing.T, open Opener) {
	t.Run("ConcurrentWriters", func(t *testing.T) {
		s, c := open(t), ctx(t)
		const writers, each = 16, 20
		var wg sync.WaitGroup
		errs := make(chan error, writers*each*2)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					at := t0.Add(time.Duration(w*each+i) * time.Millisecond)
					if err := s.CreateProject(c, project(fmt.Sprintf("w%d-%d", w, i), at)); err != nil {
						errs <- err
					}
					if err := s.AppendAudit(c, &rdev.AuditEntry{At: at, KeyID: "k", Method: "POST", Route: "/x", Target: "t", Status: 201, RequestID: "r"}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ids, err := s.ProjectIDs(c)
		must(t, err)
		es, _, err := s.ListAudit(c, rdev.AuditFilter{Page: rdev.Page{Limit: rdev.MaxPageLimit}})
		must(t, err)
		if len(ids) != writers*each || len(es) != writers*each {
			t.Fatalf("%d projects and %d audit entries, want %d each", len(ids), len(es), writers*each)
		}
	})
	t.Run("RaceForOneID", func(t *testing.T) {
		s, c := open(t), ctx(t)
		var wg sync.WaitGroup
		var ok, exists, other atomic.Int32
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch err := s.CreateProject(c, project("contested", t0)); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, rdev.ErrProjectExists):
					exists.Add(1)
				default:
					other.Add(1)
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || exists.Load() != 19 {
			t.Fatalf("%d created, %d conflicts, %d other errors", ok.Load(), exists.Load(), other.Load())
		}
	})
}
