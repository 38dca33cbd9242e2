package loop

import (
	"context"
	"log/slog"
	"time"
)

// SessionExpirer ends sessions past their TTL or idle limit.
type SessionExpirer interface {
	ExpireSessions(ctx context.Context, now time.Time, idle time.Duration, limit int) (int, error)
}

// SessionCleanup expires sessions whose TTL ran out or that were idle
// longer than Idle: their commands are killed, their workspaces and
// previews removed and their tokens revoked.
type SessionCleanup struct {
	Sessions SessionExpirer
	Now      func() time.Time
	Idle     time.Duration // 0: no idle limit
	Log      *slog.Logger
	Batch    int
}

// SessionStats is what one pass did.
type SessionStats struct {
	Expired int
}

// RunOnce does one pass.
func (c *SessionCleanup) RunOnce(ctx context.Context) (SessionStats, error) {
	batch := c.Batch
	if batch <= 0 {
		batch = 100
	}
	n, err := c.Sessions.ExpireSessions(ctx, c.Now(), c.Idle, batch)
	return SessionStats{Expired: n}, err
}

// Run runs passes every interval until ctx is done.
func (c *SessionCleanup) Run(ctx context.Context, interval time.Duration) {
	Every(ctx, interval, c.Log, "session-cleanup", func(ctx context.Context) error {
		_, err := c.RunOnce(ctx)
		return err
	})
}
