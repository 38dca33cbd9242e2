package loop_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"rdev.dev/rdev/internal/loop"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/store/postgres"
	"rdev.dev/rdev/internal/store/postgres/pgtest"
	"rdev.dev/rdev/internal/store/sqlite"
)

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

func stores(t *testing.T) map[string]rdev.Store {
	sq, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "rdev.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	pg, err := postgres.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Close() })
	return map[string]rdev.Store{"SQLite": sq, "PostgreSQL": pg}
}

func TestCheckoutCleanup(t *testing.T) {
	for name, st := range stores(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			clk := &clock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
			now := clk.Now()
			if err := st.CreateProject(ctx, &rdev.Project{ID: "web", Name: "Web", DefaultBranch: "main", CreatedAt: now, UpdatedAt: now}); err != nil {
				t.Fatal(err)
			}
			mk := func(branch string, ttl time.Duration) *rdev.Checkout {
				id, tok := rdev.NewCheckoutToken()
				c := &rdev.Checkout{ID: id, ProjectID: "web", Branch: branch, Status: rdev.CheckoutActive, TokenHash: rdev.HashToken(tok),
					CreatedAt: now, ExpiresAt: now.Add(ttl)}
				if err := st.CreateCheckout(ctx, c); err != nil {
					t.Fatal(err)
				}
				return c
			}
			for i := range 7 {
				mk("short-"+string(rune('a'+i)), time.Hour)
			}
			long := mk("long", 48*time.Hour)
			cl := &loop.CheckoutCleanup{Store: st, Now: clk.Now, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Batch: 3}

			if s, err := cl.RunOnce(ctx); err != nil || s.Expired != 0 {
				t.Fatalf("before expiry: %+v %v", s, err)
			}
			clk.Add(time.Hour)
			if s, err := cl.RunOnce(ctx); err != nil || s.Expired != 7 {
				t.Fatalf("at expiry: %+v %v (batches of 3 must continue to the end)", s, err)
			}
			if s, _ := cl.RunOnce(ctx); s.Expired != 0 {
				t.Fatalf("a second pass expired %d again", s.Expired)
			}
			got, _ := st.GetCheckout(ctx, "web", long.ID)
			if got.Status != rdev.CheckoutActive {
				t.Fatalf("the 48h checkout is %s", got.Status)
			}
			// The branch is free again.
			mk("short-a", time.Hour)
		})
	}
}

func TestEveryStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	passes := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		loop.Every(ctx, time.Millisecond, slog.New(slog.NewTextHandler(io.Discard, nil)), "t", func(context.Context) error {
			passes <- struct{}{}
			return nil
		})
		close(done)
	}()
	<-passes
	<-passes
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Every did not return after its context ended")
	}
}
