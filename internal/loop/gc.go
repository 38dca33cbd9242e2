package loop

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"rdev.dev/rdev/internal/cluster"
)

// DefaultGCWindow is how old an orphan must be before the GC deletes it.
const DefaultGCWindow = time.Hour

// DefaultGCConcurrency is how many deletions a pass runs at once.
const DefaultGCConcurrency = 16

// GCCluster is what the GC needs of a cluster.
type GCCluster interface {
	List(ctx context.Context) ([]cluster.Resource, error)
	Delete(ctx context.Context, r cluster.Resource) error
}

// ProjectLister gives the ids of every project record.
type ProjectLister interface {
	ProjectIDs(ctx context.Context) ([]string, error)
}

// ResourceGC deletes what rdev left behind in the cluster: resources
// labelled managed-by=rdev whose project has no record and that are older
// than Window. Anything younger (a project being created writes its
// resources before its record), unlabelled, or of a live project is never
// touched. One pass: one List (the backend pages it per kind), one store
// query for the live projects, one Delete per orphan; failures are counted
// and joined, and the pass goes on past them.
type ResourceGC struct {
	Cluster  GCCluster
	Projects ProjectLister
	Now      func() time.Time
	Window   time.Duration // DefaultGCWindow when 0
	DryRun   bool          // report what would be deleted, delete nothing
	// Concurrency is how many deletions run at once (DefaultGCConcurrency
	// when 0): a Kubernetes API server answers each in milliseconds, and
	// thousands of orphans one by one would take minutes.
	Concurrency int
	Log         *slog.Logger
	Metrics     *GCMetrics // may be nil
}

// GCStats is what one pass did.
type GCStats struct {
	Seen, Orphans, Deleted, Failed int
}

// GCMetrics are the GC's Prometheus counters.
type GCMetrics struct {
	Seen, Deleted, Failed prometheus.Counter
}

// NewGCMetrics registers the counters with reg.
func NewGCMetrics(reg prometheus.Registerer) *GCMetrics {
	m := &GCMetrics{
		Seen:    prometheus.NewCounter(prometheus.CounterOpts{Name: "rdev_gc_resources_seen_total", Help: "Resources labelled managed-by=rdev the GC has looked at."}),
		Deleted: prometheus.NewCounter(prometheus.CounterOpts{Name: "rdev_gc_resources_deleted_total", Help: "Orphaned resources the GC deleted."}),
		Failed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "rdev_gc_resources_failed_total", Help: "Orphaned resources the GC failed to delete."}),
	}
	reg.MustRegister(m.Seen, m.Deleted, m.Failed)
	return m
}

// Orphan reports whether the GC deletes r: managed by rdev, labelled with a
// project that has no record, and created at least window before now.
func Orphan(r cluster.Resource, live map[string]bool, now time.Time, window time.Duration) bool {
	project := r.Labels[cluster.LabelProject]
	return r.Labels[cluster.LabelManagedBy] == "rdev" && project != "" && !live[project] &&
		!r.CreatedAt.IsZero() && !r.CreatedAt.After(now.Add(-window))
}

// RunOnce does one pass.
func (g *ResourceGC) RunOnce(ctx context.Context) (GCStats, error) {
	window := g.Window
	if window <= 0 {
		window = DefaultGCWindow
	}
	var st GCStats
	// List first, then read the projects: a project created in between is
	// live in the set; one whose resources appear after the list waits for
	// the next pass.
	rs, err := g.Cluster.List(ctx)
	if err != nil {
		return st, fmt.Errorf("list resources: %w", err)
	}
	ids, err := g.Projects.ProjectIDs(ctx)
	if err != nil {
		return st, fmt.Errorf("list projects: %w", err)
	}
	live := make(map[string]bool, len(ids))
	for _, id := range ids {
		live[id] = true
	}
	now := g.Now()
	st.Seen = len(rs)
	var orphans []cluster.Resource
	for _, r := range rs {
		if !Orphan(r, live, now, window) {
			continue
		}
		st.Orphans++
		if g.DryRun {
			g.Log.Info("gc: would delete", "kind", r.Kind, "name", r.Name, "project", r.Labels[cluster.LabelProject], "created_at", r.CreatedAt)
			continue
		}
		orphans = append(orphans, r)
	}
	workers := g.Concurrency
	if workers <= 0 {
		workers = DefaultGCConcurrency
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
		next = make(chan cluster.Resource)
	)
	for range min(workers, len(orphans)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range next {
				err := g.Cluster.Delete(ctx, r)
				mu.Lock()
				if err != nil {
					st.Failed++
					errs = append(errs, fmt.Errorf("%s %s: %w", r.Kind, r.Name, err))
				} else {
					st.Deleted++
				}
				mu.Unlock()
				if err == nil {
					g.Log.Info("gc: deleted", "kind", r.Kind, "name", r.Name, "project", r.Labels[cluster.LabelProject])
				}
			}
		}()
	}
	for _, r := range orphans {
		next <- r
	}
	close(next)
	wg.Wait()
	if m := g.Metrics; m != nil {
		m.Seen.Add(float64(st.Seen))
		m.Deleted.Add(float64(st.Deleted))
		m.Failed.Add(float64(st.Failed))
	}
	return st, errors.Join(errs...)
}

// Run runs passes every interval until ctx is done.
func (g *ResourceGC) Run(ctx context.Context, interval time.Duration) {
	Every(ctx, interval, g.Log, "resource-gc", func(ctx context.Context) error {
		_, err := g.RunOnce(ctx)
		return err
	})
}
