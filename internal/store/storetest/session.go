package storetest

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

func session(project, branch string, at time.Time) (*rdev.Session, *rdev.Checkout) {
	c := checkout(project, branch, at)
	id := rdev.NewID("s")
	s := &rdev.Session{ID: id, ProjectID: project, CheckoutID: c.ID, PodName: project + "-pod", PreviewPort: 8080,
		PreviewURL: "http://" + id + ".preview.localhost/", Status: rdev.SessionActive, CreatedBy: "kx",
		CreatedAt: at, ExpiresAt: at.Add(time.Hour), LastActiveAt: at}
	return s, c
}

func testSessions(t *testing.T, open Opener) {
	setup := func(t *testing.T) rdev.Store {
		s := open(t)
		must(t, s.CreateProject(ctx(t), project("web", t0)))
		must(t, s.CreateProject(ctx(t), project("api", t0)))
		return s
	}
	t.Run("CreateGet", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		s, co := session("web", "agent/a", t0)
		must(t, st.CreateSession(c, s, co))
		got, err := st.GetSession(c, "web", s.ID)
		must(t, err)
		if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *s) {
			t.Fatalf("got  %+v\nwant %+v", *got, *s)
		}
		if _, err := st.GetCheckout(c, "web", co.ID); err != nil {
			t.Fatalf("the session's checkout: %v", err)
		}
		_, err = st.GetSession(c, "api", s.ID)
		wantErr(t, err, rdev.ErrSessionNotFound)
		byID, err := st.SessionByID(c, s.ID)
		must(t, err)
		if byID.ProjectID != "web" {
			t.Fatalf("SessionByID: %+v", byID)
		}
		_, err = st.SessionByID(c, "snope")
		wantErr(t, err, rdev.ErrSessionNotFound)
		act, err := st.ActiveSession(c, "web")
		must(t, err)
		if act.ID != s.ID {
			t.Fatalf("active session %s, want %s", act.ID, s.ID)
		}
		_, err = st.ActiveSession(c, "api")
		wantErr(t, err, rdev.ErrSessionNotFound)
	})
	t.Run("OneActivePerProject", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		s, co := session("web", "agent/a", t0)
		must(t, st.CreateSession(c, s, co))
		s2, co2 := session("web", "agent/b", t0)
		wantErr(t, st.CreateSession(c, s2, co2), rdev.ErrSessionExists)
		// The refused session left no checkout behind.
		_, err := st.GetCheckout(c, "web", co2.ID)
		wantErr(t, err, rdev.ErrCheckoutNotFound)
		s3, co3 := session("api", "agent/a", t0)
		must(t, st.CreateSession(c, s3, co3))
	})
	t.Run("BranchCheckedOut", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		must(t, st.CreateCheckout(c, checkout("web", "agent/a", t0)))
		s, co := session("web", "agent/a", t0)
		wantErr(t, st.CreateSession(c, s, co), rdev.ErrCheckoutExists)
		_, err := st.GetSession(c, "web", s.ID)
		wantErr(t, err, rdev.ErrSessionNotFound)
	})
	t.Run("EndStatesAndTheirCheckouts", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		for _, tc := range []struct {
			status rdev.SessionStatus
			want   rdev.CheckoutStatus
			task   bool
		}{{rdev.SessionEnded, rdev.CheckoutCheckedIn, true}, {rdev.SessionTerminated, rdev.CheckoutRevoked, false}, {rdev.SessionExpired, rdev.CheckoutExpired, false}} {
			s, co := session("web", "agent/"+string(tc.status), t0)
			must(t, st.CreateSession(c, s, co))
			var task *rdev.Task
			if tc.task {
				task = reviewTask("web", co, t0)
			}
			ended, err := st.EndSession(c, "web", s.ID, tc.status, t0.Add(time.Minute), task)
			must(t, err)
			if ended.Status != tc.status || ended.EndedAt == nil || (tc.task && ended.ReviewTaskID != task.ID) {
				t.Fatalf("ended: %+v", ended)
			}
			gotCo, _ := st.GetCheckout(c, "web", co.ID)
			if gotCo.Status != tc.want {
				t.Fatalf("%s session left its checkout %s, want %s", tc.status, gotCo.Status, tc.want)
			}
			if tc.task {
				if _, err := st.GetTask(c, task.ID); err != nil {
					t.Fatal(err)
				}
			}
			_, err = st.EndSession(c, "web", s.ID, rdev.SessionTerminated, t0, nil)
			wantErr(t, err, rdev.ErrSessionNotActive)
		}
		_, err := st.EndSession(c, "web", "snope", rdev.SessionEnded, t0, nil)
		wantErr(t, err, rdev.ErrSessionNotFound)
	})
	t.Run("DueAndTouch", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		expiring, co1 := session("web", "a", t0)
		must(t, st.CreateSession(c, expiring, co1))
		idle, co2 := session("api", "b", t0)
		idle.ExpiresAt = t0.Add(24 * time.Hour)
		must(t, st.CreateSession(c, idle, co2))
		// At t0+30m with a 20m idle limit, the api session is idle.
		due, err := st.DueSessions(c, t0.Add(30*time.Minute), t0.Add(10*time.Minute), 10)
		must(t, err)
		if len(due) != 2 {
			t.Fatalf("due: %d", len(due))
		}
		must(t, st.TouchSession(c, idle.ID, t0.Add(25*time.Minute)))
		must(t, st.TouchSession(c, expiring.ID, t0.Add(25*time.Minute)))
		must(t, st.TouchSession(c, idle.ID, t0.Add(5*time.Minute))) // never backwards
		due, err = st.DueSessions(c, t0.Add(30*time.Minute), t0.Add(10*time.Minute), 10)
		must(t, err)
		if len(due) != 0 {
			t.Fatalf("touched sessions still due: %d", len(due))
		}
		due, err = st.DueSessions(c, t0.Add(time.Hour), t0.Add(10*time.Minute), 10)
		must(t, err)
		if len(due) != 1 || due[0].ID != expiring.ID {
			t.Fatalf("at expiry: %+v", due)
		}
		act, err := st.ActiveSessions(c)
		must(t, err)
		if len(act) != 2 {
			t.Fatalf("active: %d", len(act))
		}
	})
	t.Run("DeleteUndoesCreate", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		s, co := session("web", "a", t0)
		must(t, st.CreateSession(c, s, co))
		must(t, st.DeleteSession(c, s.ID))
		_, err := st.CheckoutByID(c, co.ID)
		wantErr(t, err, rdev.ErrCheckoutNotFound)
		wantErr(t, st.DeleteSession(c, s.ID), rdev.ErrSessionNotFound)
		s2, co2 := session("web", "a", t0)
		must(t, st.CreateSession(c, s2, co2))
	})
	t.Run("ListPaged", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		for i := range 4 {
			s, co := session("web", fmt.Sprint("b", i), t0.Add(time.Duration(i)*time.Second))
			must(t, st.CreateSession(c, s, co))
			_, err := st.EndSession(c, "web", s.ID, rdev.SessionEnded, t0.Add(time.Duration(i)*time.Second), nil)
			must(t, err)
		}
		ss, next, err := st.ListSessions(c, "web", rdev.Page{Limit: 3})
		must(t, err)
		ss2, next2, err := st.ListSessions(c, "web", rdev.Page{Limit: 3, Cursor: next})
		must(t, err)
		if len(ss) != 3 || len(ss2) != 1 || next2 != "" {
			t.Fatalf("pages %d %d", len(ss), len(ss2))
		}
	})
	t.Run("FiftyConcurrentSessionsForOneProject", func(t *testing.T) {
		st, c := setup(t), ctx(t)
		var ok, exists atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, co := session("web", "agent/same", t0)
				switch err := st.CreateSession(c, s, co); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, rdev.ErrSessionExists):
					exists.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || exists.Load() != 49 {
			t.Fatalf("%d created, %d SESSION_EXISTS", ok.Load(), exists.Load())
		}
	})
}
