package client_test

import (
	"context"
	"errors"
	"log"
	"os"
	"time"

	"rdev.dev/rdev/client"
)

// review stands for a team's own work on a task.
func review(ctx context.Context, payload []byte) (summary, verdict string, err error) {
	return "looks good\n", "passed", nil
}

// A worker of a team's own kind, written with the SDK alone (docs/workers.md).
func Example_worker() {
	ctx := context.Background()
	c := client.New("https://rdev.example.com", os.Getenv("RDEV_TOKEN")) // a key with workers:execute
	w, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: "ai-reviewer", Kinds: []string{"ai-review"}, Capacity: 1})
	if err != nil {
		log.Fatal(err)
	}
	defer c.DeregisterWorker(context.Background(), w.ID)
	for ctx.Err() == nil {
		task, err := c.Claim(ctx, w.ID, nil, 25*time.Second) // waits for work; nil when none came
		if err != nil || task == nil {
			continue
		}
		// Keep the lease while working, and stop if the task is cancelled
		// or the lease was lost.
		tctx, cancel := context.WithCancel(ctx)
		go func() {
			tick := time.NewTicker(10 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-tctx.Done():
					return
				case <-tick.C:
					if cancelled, err := c.HeartbeatTask(ctx, task.ID, w.ID); cancelled || errors.Is(err, client.ErrLeaseNotHeld) {
						cancel()
						return
					}
				}
			}
		}()
		summary, verdict, err := review(tctx, task.Payload)
		stopped := tctx.Err() != nil
		cancel()
		switch {
		case stopped:
			continue // cancelled, or another worker has it now
		case err != nil:
			c.FailTask(ctx, task.ID, w.ID, err.Error(), true) // retried after a backoff
		default:
			c.AppendTaskLog(ctx, task.ID, w.ID, "stdout", []byte(summary))
			c.CompleteTask(ctx, task.ID, w.ID, map[string]any{"verdict": verdict})
		}
	}
}
