package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

func checkout(project, branch string, at time.Time) *rdev.Checkout {
	id, token := rdev.NewCheckoutToken()
	return &rdev.Checkout{ID: id, ProjectID: project, Branch: branch, FeatureSlug: "slug", BaseCommit: "0123456789abcdef0123456789abcdef01234567",
		Status: rdev.CheckoutActive, TokenHash: rdev.HashToken(token), CreatedBy: "kx", CreatedAt: at, ExpiresAt: at.Add(time.Hour)}
}

func reviewTask(project string, c *rdev.Checkout, at time.Time) *rdev.Task {
	p, _ := json.Marshal(rdev.ReviewPayload{CheckoutID: c.ID, Branch: c.Branch, Commit: c.BaseCommit, AutoMerge: true})
	return &rdev.Task{ID: rdev.NewID("t"), Kind: rdev.TaskKindReview, ProjectID: project, Status: rdev.TaskQueued, Payload: p,
		MaxAttempts: 3, RunAfter: at, CreatedAt: at, UpdatedAt: at}
}

func testCheckouts(t *testing.T, open Opener) {
	setup := func(t *testing.T) rdev.Store {
		s := open(t)
		must(t, s.CreateProject(ctx(t), project("web", t0)))
		must(t, s.CreateProject(ctx(t), project("api", t0)))
		return s
	}
	t.Run("CreateGet", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		co := checkout("web", "feature/x", t0)
		must(t, s.CreateCheckout(c, co))
		got, err := s.GetCheckout(c, "web", co.ID)
		must(t, err)
		if fmt.Sprintf("%+v", *got) != fmt.Sprintf("%+v", *co) {
			t.Fatalf("got  %+v\nwant %+v", *got, *co)
		}
		byID, err := s.CheckoutByID(c, co.ID)
		must(t, err)
		if byID.TokenHash != co.TokenHash {
			t.Fatal("CheckoutByID lost the token hash")
		}
		// A checkout of another project is not found through that project.
		_, err = s.GetCheckout(c, "api", co.ID)
		wantErr(t, err, rdev.ErrCheckoutNotFound)
		_, err = s.CheckoutByID(c, "cnothere")
		wantErr(t, err, rdev.ErrCheckoutNotFound)
	})
	t.Run("OneActivePerBranch", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		first := checkout("web", "feature/x", t0)
		must(t, s.CreateCheckout(c, first))
		wantErr(t, s.CreateCheckout(c, checkout("web", "feature/x", t0)), rdev.ErrCheckoutExists)
		must(t, s.CreateCheckout(c, checkout("web", "feature/y", t0)))
		must(t, s.CreateCheckout(c, checkout("api", "feature/x", t0)))
		_, err := s.EndCheckout(c, "web", first.ID, rdev.CheckoutCheckedIn, t0.Add(time.Minute), nil)
		must(t, err)
		must(t, s.CreateCheckout(c, checkout("web", "feature/x", t0.Add(time.Minute))))
	})
	t.Run("MissingProject", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		wantErr(t, s.CreateCheckout(c, checkout("nope", "x", t0)), rdev.ErrProjectNotFound)
	})
	t.Run("EndQueuesTask", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		co := checkout("web", "feature/x", t0)
		must(t, s.CreateCheckout(c, co))
		task := reviewTask("web", co, t0.Add(time.Minute))
		ended, err := s.EndCheckout(c, "web", co.ID, rdev.CheckoutCheckedIn, t0.Add(time.Minute), task)
		must(t, err)
		if ended.Status != rdev.CheckoutCheckedIn || ended.ReviewTaskID != task.ID || ended.EndedAt == nil {
			t.Fatalf("ended: %+v", ended)
		}
		got, err := s.GetTask(c, task.ID)
		must(t, err)
		var p rdev.ReviewPayload
		must(t, json.Unmarshal(got.Payload, &p))
		if got.Status != rdev.TaskQueued || got.Kind != "review" || !p.AutoMerge || p.CheckoutID != co.ID || !got.CreatedAt.Equal(task.CreatedAt) {
			t.Fatalf("task: %+v %+v", got, p)
		}
		again, err := s.GetCheckout(c, "web", co.ID)
		must(t, err)
		if again.ReviewTaskID != task.ID || again.Status != rdev.CheckoutCheckedIn {
			t.Fatalf("stored: %+v", again)
		}
		_, err = s.EndCheckout(c, "web", co.ID, rdev.CheckoutCheckedIn, t0, reviewTask("web", co, t0))
		wantErr(t, err, rdev.ErrCheckoutNotActive)
		_, err = s.EndCheckout(c, "api", co.ID, rdev.CheckoutCheckedIn, t0, nil)
		wantErr(t, err, rdev.ErrCheckoutNotFound)
		_, err = s.GetTask(c, "tmissing")
		wantErr(t, err, rdev.ErrTaskNotFound)
	})
	t.Run("FailedTaskInsertEndsNothing", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		co := checkout("web", "feature/x", t0)
		must(t, s.CreateCheckout(c, co))
		bad := reviewTask("web", co, t0)
		bad.Payload = json.RawMessage(`{not json`)
		if _, err := s.EndCheckout(c, "web", co.ID, rdev.CheckoutCheckedIn, t0, bad); err == nil {
			t.Fatal("a task with an invalid payload was stored")
		}
		got, _ := s.GetCheckout(c, "web", co.ID)
		if got.Status != rdev.CheckoutActive {
			t.Fatalf("the checkout ended although its task was refused: %s", got.Status)
		}
	})
	t.Run("Expire", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		due := checkout("web", "a", t0)
		later := checkout("web", "b", t0.Add(time.Hour))
		done := checkout("web", "c", t0)
		for _, co := range []*rdev.Checkout{due, later, done} {
			must(t, s.CreateCheckout(c, co))
		}
		_, err := s.EndCheckout(c, "web", done.ID, rdev.CheckoutCheckedIn, t0, nil)
		must(t, err)
		got, err := s.ExpireCheckouts(c, t0.Add(time.Hour), 100)
		must(t, err)
		if len(got) != 1 || got[0].ID != due.ID || got[0].Status != rdev.CheckoutExpired {
			t.Fatalf("expired %d: %+v", len(got), got)
		}
		got, err = s.ExpireCheckouts(c, t0.Add(time.Hour), 100)
		must(t, err)
		if len(got) != 0 {
			t.Fatal("a second pass expired again")
		}
	})
	t.Run("ListPaged", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		for i := range 5 {
			must(t, s.CreateCheckout(c, checkout("web", fmt.Sprint("b", i), t0.Add(time.Duration(i)*time.Second))))
		}
		must(t, s.CreateCheckout(c, checkout("api", "other", t0)))
		cs, next, err := s.ListCheckouts(c, "web", rdev.Page{Limit: 3})
		must(t, err)
		cs2, next2, err := s.ListCheckouts(c, "web", rdev.Page{Limit: 3, Cursor: next})
		must(t, err)
		if len(cs) != 3 || len(cs2) != 2 || next2 != "" || cs[0].Branch != "b4" || cs2[1].Branch != "b0" {
			t.Fatalf("pages %d %d", len(cs), len(cs2))
		}
	})
	t.Run("DeletingTheProjectRemovesThem", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		co := checkout("web", "x", t0)
		must(t, s.CreateCheckout(c, co))
		task := reviewTask("web", co, t0)
		_, err := s.EndCheckout(c, "web", co.ID, rdev.CheckoutCheckedIn, t0, task)
		must(t, err)
		must(t, s.DeleteProject(c, "web"))
		_, err = s.CheckoutByID(c, co.ID)
		wantErr(t, err, rdev.ErrCheckoutNotFound)
		_, err = s.GetTask(c, task.ID)
		wantErr(t, err, rdev.ErrTaskNotFound)
	})
	t.Run("FiftyConcurrentCheckoutsOfOneBranch", func(t *testing.T) {
		s, c := setup(t), ctx(t)
		var ok, exists atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				switch err := s.CreateCheckout(c, checkout("web", "hot", t0)); {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, rdev.ErrCheckoutExists):
					exists.Add(1)
				default:
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 1 || exists.Load() != 49 {
			t.Fatalf("%d created, %d conflicts", ok.Load(), exists.Load())
		}
	})
}
