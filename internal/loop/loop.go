// Package loop holds rdev's background loops. Each does one bounded pass in
// RunOnce, with its clock injected, so that a test drives a pass and reads
// what it did; Every runs passes on a ticker until its context ends.
package loop

import (
	"context"
	"log/slog"
	"time"
)

// Every calls pass once per interval until ctx is done, logging failures.
// It returns when ctx is done.
func Every(ctx context.Context, interval time.Duration, log *slog.Logger, name string, pass func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, interval)
			if err := pass(pctx); err != nil && ctx.Err() == nil {
				log.Error("background pass failed", "loop", name, "err", err)
			}
			cancel()
		}
	}
}
