package httpapi_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"rdev.dev/rdev/internal/loop"
)

// TestSessionCleanup drives the session cleanup loop with an injected
// clock: a session past its TTL and one idle too long end as expired, with
// their commands killed; a fresh one stays.
func TestSessionCleanup(t *testing.T) {
	h := newHarness(t)
	sid := startSession(t, h)
	base := "/api/v1/projects/web/sessions/" + sid
	r := h.do("POST", base+"/commands", h.admin, `{"command":"sleep 60"}`)
	r.want(t, 201, "")
	var c struct {
		ID string `json:"id"`
	}
	mustJSON(t, r.Data, &c)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	now := time.Now()
	cl := &loop.SessionCleanup{Sessions: h.svc, Now: func() time.Time { return now }, Idle: time.Hour, Log: quiet}
	if st, err := cl.RunOnce(context.Background()); err != nil || st.Expired != 0 {
		t.Fatalf("fresh session: %+v %v", st, err)
	}
	now = now.Add(61 * time.Minute) // idle past the limit, within its 24h TTL
	if st, err := cl.RunOnce(context.Background()); err != nil || st.Expired != 1 {
		t.Fatalf("idle session: %+v %v", st, err)
	}
	r = h.do("GET", base, h.admin, nil)
	if !strings.Contains(string(r.Data), `"status":"expired"`) {
		t.Fatalf("session: %s", r.Data)
	}
	r = h.do("GET", base+"/commands/"+c.ID, h.admin, nil)
	if !strings.Contains(string(r.Data), `"status":"killed"`) {
		t.Fatalf("command: %s", r.Data)
	}
	// TTL: a keepalive does not save a session past its expiry.
	r = h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"branch":"agent/cmd","expires_in":"1h"}`)
	r.want(t, 201, "")
	now = time.Now().Add(59 * time.Minute)
	cl.Idle = 0
	if st, _ := cl.RunOnce(context.Background()); st.Expired != 0 {
		t.Fatal("expired before its TTL")
	}
	now = time.Now().Add(61 * time.Minute)
	if st, _ := cl.RunOnce(context.Background()); st.Expired != 1 {
		t.Fatal("not expired after its TTL")
	}
}
