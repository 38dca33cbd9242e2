package loop

import (
	"context"
	"log/slog"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// TaskReaperStore is what the reaper needs of the service.
type TaskReaperStore interface {
	ReapTasks(ctx context.Context, now time.Time, limit int) ([]*rdev.Task, error)
}

// TaskReaper re-queues tasks whose lease lapsed (their worker died or
// stalled) and marks them dead once their attempts are used up.
type TaskReaper struct {
	Tasks TaskReaperStore
	Now   func() time.Time
	Log   *slog.Logger
	Batch int
}

// TaskReaperStats is what one pass did.
type TaskReaperStats struct {
	Requeued, Dead int
}

// RunOnce does one bounded pass.
func (r *TaskReaper) RunOnce(ctx context.Context) (TaskReaperStats, error) {
	batch := r.Batch
	if batch <= 0 {
		batch = 500
	}
	var st TaskReaperStats
	ts, err := r.Tasks.ReapTasks(ctx, r.Now(), batch)
	for _, t := range ts {
		if t.Status == rdev.TaskDead {
			st.Dead++
			r.Log.Warn("task dead: its attempts ran out", "task", t.ID, "kind", t.Kind, "attempts", t.Attempts)
		} else {
			st.Requeued++
			r.Log.Info("task re-queued: its lease lapsed", "task", t.ID, "kind", t.Kind, "attempt", t.Attempts)
		}
	}
	return st, err
}

// Run runs passes every interval until ctx is done.
func (r *TaskReaper) Run(ctx context.Context, interval time.Duration) {
	Every(ctx, interval, r.Log, "task-reaper", func(ctx context.Context) error {
		_, err := r.RunOnce(ctx)
		return err
	})
}
