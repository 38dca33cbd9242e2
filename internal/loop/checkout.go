package loop

import (
	"context"
	"log/slog"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// CheckoutCleanup marks checkouts past their expiry as expired. Their tokens
// already stop working at the expiry instant (every git request checks it);
// the pass makes the record say so and frees the branch for a new checkout.
// Several replicas may run it at once: each checkout is expired by one.
type CheckoutCleanup struct {
	Store rdev.CheckoutStore
	Now   func() time.Time
	Log   *slog.Logger
	// Batch bounds one statement; MaxBatches bounds one pass.
	Batch, MaxBatches int
}

// CheckoutStats is what one pass did.
type CheckoutStats struct {
	Expired int
}

// RunOnce does one pass.
func (c *CheckoutCleanup) RunOnce(ctx context.Context) (CheckoutStats, error) {
	batch, most := c.Batch, c.MaxBatches
	if batch <= 0 {
		batch = 500
	}
	if most <= 0 {
		most = 20
	}
	var st CheckoutStats
	now := rdev.Timestamp(c.Now())
	for range most {
		done, err := c.Store.ExpireCheckouts(ctx, now, batch)
		if err != nil {
			return st, err
		}
		st.Expired += len(done)
		for _, co := range done {
			c.Log.Info("checkout expired", "project", co.ProjectID, "checkout", co.ID, "branch", co.Branch)
		}
		if len(done) < batch {
			break
		}
	}
	return st, nil
}

// Run runs passes every interval until ctx is done.
func (c *CheckoutCleanup) Run(ctx context.Context, interval time.Duration) {
	Every(ctx, interval, c.Log, "checkout-cleanup", func(ctx context.Context) error {
		_, err := c.RunOnce(ctx)
		return err
	})
}
