package service_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
	"rdev.dev/rdev/internal/store/sqlite"
)

// countingStore counts TouchKey writes.
type countingStore struct {
	rdev.Store
	touches atomic.Int32
}

func (c *countingStore) TouchKey(ctx context.Context, id string, at time.Time) error {
	c.touches.Add(1)
	return c.Store.TouchKey(ctx, id, at)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time         { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration)    { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }
func quiet() *slog.Logger               { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func openStore(t *testing.T) rdev.Store { return openAt(t, filepath.Join(t.TempDir(), "rdev.db")) }

func openAt(t *testing.T, path string) rdev.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLastUsedWrittenAtMostOncePerMinute(t *testing.T) {
	st := &countingStore{Store: openStore(t)}
	clk := &clock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	svc := newSvc(st, clk.Now)
	ctx := context.Background()
	admin, _ := svc.SeedAdminToken(ctx, "0123456789abcdef0123456789abcdef")
	k, err := svc.CreateKey(ctx, admin, service.KeyRequest{Name: "k", Scopes: []rdev.Scope{rdev.ScopeProjectsRead}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if _, err := svc.Authenticate(ctx, k.Token); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if n := st.touches.Load(); n != 1 {
		t.Fatalf("400 requests in one instant wrote last_used_at %d times, want 1", n)
	}
	clk.Add(59 * time.Second)
	svc.Authenticate(ctx, k.Token)
	if n := st.touches.Load(); n != 1 {
		t.Fatalf("a request 59 s later wrote again (%d writes)", n)
	}
	clk.Add(time.Second)
	svc.Authenticate(ctx, k.Token)
	if n := st.touches.Load(); n != 2 {
		t.Fatalf("a request a minute later did not write (%d writes)", n)
	}
	got, _ := st.GetKey(ctx, k.ID)
	if got.LastUsedAt == nil || !got.LastUsedAt.Equal(clk.Now()) {
		t.Fatalf("last_used_at = %v, want %v", got.LastUsedAt, clk.Now())
	}
	// A second process on the same database sees the recent write and
	// does not repeat it.
	other := newSvc(st, clk.Now)
	other.Authenticate(ctx, k.Token)
	if n := st.touches.Load(); n != 2 {
		t.Fatalf("a fresh service rewrote a recent last_used_at (%d writes)", n)
	}
}

func TestAuthenticateRefuses(t *testing.T) {
	st := openStore(t)
	clk := &clock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	svc := newSvc(st, clk.Now)
	ctx := context.Background()
	admin, _ := svc.SeedAdminToken(ctx, "0123456789abcdef0123456789abcdef")
	k, _ := svc.CreateKey(ctx, admin, service.KeyRequest{Name: "k", Scopes: []rdev.Scope{rdev.ScopeAdmin}, ExpiresIn: "1h"})
	for name, tok := range map[string]string{
		"Empty": "", "Unknown": "rdev_kaaaaaaaaaaaaaaaa_x", "WrongSecret": k.Token + "x", "Huge": string(make([]byte, 4096)),
	} {
		if _, err := svc.Authenticate(ctx, tok); !errors.Is(err, rdev.ErrUnauthorized) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := svc.Authenticate(ctx, k.Token); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	if _, err := svc.Authenticate(ctx, k.Token); !errors.Is(err, rdev.ErrUnauthorized) {
		t.Fatalf("expired key: %v", err)
	}
	if _, err := svc.SeedAdminToken(ctx, "short"); err == nil {
		t.Fatal("a short RDEV_ADMIN_TOKEN was accepted")
	}
}

func TestEnsureAdminKey(t *testing.T) {
	dir := t.TempDir()
	st := openAt(t, filepath.Join(dir, "rdev.db"))
	svc := newSvc(st, time.Now)
	ctx := context.Background()
	path := filepath.Join(dir, "admin.key")
	created, err := svc.EnsureAdminKey(ctx, path)
	if err != nil || !created {
		t.Fatal(created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.key: %v %v", fi.Mode(), err)
	}
	b, _ := os.ReadFile(path)
	k, err := svc.Authenticate(ctx, string(b[:len(b)-1]))
	if err != nil || !k.HasScope(rdev.ScopeAdmin) {
		t.Fatalf("the written key does not authenticate as admin: %v", err)
	}
	again, err := svc.EnsureAdminKey(ctx, path)
	if err != nil || again {
		t.Fatalf("second start created another key: %v %v", again, err)
	}
}

// TestDeletedKeyAcrossReplicas: a key deleted through one service stops at
// once there, and within AuthCacheTTL on another sharing the database.
func TestDeletedKeyAcrossReplicas(t *testing.T) {
	st := openStore(t)
	clk := &clock{now: time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)}
	a, b := newSvc(st, clk.Now), newSvc(st, clk.Now)
	ctx := context.Background()
	admin, _ := a.SeedAdminToken(ctx, "0123456789abcdef0123456789abcdef")
	k, _ := a.CreateKey(ctx, admin, service.KeyRequest{Name: "k", Scopes: []rdev.Scope{rdev.ScopeProjectsRead}})
	for _, svc := range []*service.Service{a, b} {
		if _, err := svc.Authenticate(ctx, k.Token); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.DeleteKey(ctx, nil, k.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authenticate(ctx, k.Token); !errors.Is(err, rdev.ErrUnauthorized) {
		t.Fatalf("the deleting replica still accepts the key: %v", err)
	}
	clk.Add(service.AuthCacheTTL)
	if _, err := b.Authenticate(ctx, k.Token); !errors.Is(err, rdev.ErrUnauthorized) {
		t.Fatalf("the other replica accepts the key after %v: %v", service.AuthCacheTTL, err)
	}
}

func newSvc(st rdev.Store, now func() time.Time) *service.Service {
	return service.New(service.Config{Store: st, Now: now, Log: quiet()})
}
