package loop_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/loop"
)

// memCluster is a cluster of labelled resources in memory; deletes of the
// names in fail fail.
type memCluster struct {
	mu      sync.Mutex
	rs      map[string]cluster.Resource
	fail    map[string]bool
	deleted []string
	lists   int
}

func (m *memCluster) List(ctx context.Context) ([]cluster.Resource, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lists++
	var out []cluster.Resource
	for _, r := range m.rs {
		out = append(out, r)
	}
	return out, nil
}

func (m *memCluster) Delete(ctx context.Context, r cluster.Resource) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail[r.Name] {
		return errors.New("forbidden")
	}
	delete(m.rs, r.Name)
	m.deleted = append(m.deleted, r.Name)
	return nil
}

type projectSet []string

func (p projectSet) ProjectIDs(ctx context.Context) ([]string, error) { return p, nil }

// Property: over random clusters, a pass deletes exactly the resources that
// are labelled managed-by=rdev, carry a project label naming a project
// without a record, and were created at least the window before now —
// nothing else — and a dry run deletes nothing.
func TestResourceGCDeletesExactlyOldOrphans(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	window := time.Hour
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		projects := make([]string, 1+rng.IntN(8))
		var live projectSet
		isLive := map[string]bool{}
		for i := range projects {
			projects[i] = fmt.Sprintf("p%d", i)
			if rng.IntN(2) == 0 {
				live = append(live, projects[i])
				isLive[projects[i]] = true
			}
		}
		m := &memCluster{rs: map[string]cluster.Resource{}, fail: map[string]bool{}}
		var want []string
		for i := range rng.IntN(40) {
			labels := cluster.Labels{}
			managed := rng.IntN(6) > 0
			if managed {
				labels[cluster.LabelManagedBy] = "rdev"
			} else if rng.IntN(2) == 0 {
				labels[cluster.LabelManagedBy] = "someone-else"
			}
			project := ""
			if rng.IntN(8) > 0 {
				project = projects[rng.IntN(len(projects))]
				labels[cluster.LabelProject] = project
			}
			// Ages around the window: well inside, just inside, exactly at
			// it, just past, well past; sometimes unknown (zero).
			ages := []time.Duration{time.Minute, window - time.Second, window, window + time.Second, 5 * window}
			created := now.Add(-ages[rng.IntN(len(ages))])
			if rng.IntN(20) == 0 {
				created = time.Time{}
			}
			name := fmt.Sprintf("r%d", i)
			m.rs[name] = cluster.Resource{Kind: []string{"pod", "service", "ingress"}[rng.IntN(3)], Name: name, Labels: labels, CreatedAt: created}
			old := !created.IsZero() && now.Sub(created) >= window
			if managed && project != "" && !isLive[project] && old {
				want = append(want, name)
			}
		}
		before := len(m.rs)
		dry := &loop.ResourceGC{Cluster: m, Projects: live, Now: func() time.Time { return now }, Window: window, DryRun: true, Log: log}
		st, err := dry.RunOnce(context.Background())
		if err != nil || len(m.deleted) != 0 || len(m.rs) != before || st.Orphans != len(want) || st.Seen != before {
			t.Fatalf("seed %d: dry run deleted %v (stats %+v, err %v)", seed, m.deleted, st, err)
		}
		gc := &loop.ResourceGC{Cluster: m, Projects: live, Now: func() time.Time { return now }, Window: window, Log: log}
		st, err = gc.RunOnce(context.Background())
		if err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		sort.Strings(want)
		sort.Strings(m.deleted)
		if fmt.Sprint(m.deleted) != fmt.Sprint(want) || st.Deleted != len(want) {
			t.Fatalf("seed %d: deleted %v, want %v", seed, m.deleted, want)
		}
	}
}

// A failing delete does not stop the pass; it is counted and named.
func TestResourceGCGoesOnPastFailures(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	old := now.Add(-2 * time.Hour)
	m := &memCluster{rs: map[string]cluster.Resource{}, fail: map[string]bool{"ing-1": true}}
	for _, r := range []cluster.Resource{
		{Kind: "ingress", Name: "ing-1"}, {Kind: "pod", Name: "pod-1"}, {Kind: "service", Name: "svc-1"},
	} {
		r.Labels, r.CreatedAt = cluster.ProjectLabels("gone"), old
		m.rs[r.Name] = r
	}
	reg := prometheus.NewRegistry()
	metrics := loop.NewGCMetrics(reg)
	gc := &loop.ResourceGC{Cluster: m, Projects: projectSet{"web"}, Now: func() time.Time { return now },
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Metrics: metrics}
	st, err := gc.RunOnce(context.Background())
	if err == nil || st != (loop.GCStats{Seen: 3, Orphans: 3, Deleted: 2, Failed: 1}) {
		t.Fatalf("stats %+v err %v", st, err)
	}
	if msg := err.Error(); msg != "ingress ing-1: forbidden" {
		t.Fatalf("error %q", msg)
	}
	if testutil.ToFloat64(metrics.Seen) != 3 || testutil.ToFloat64(metrics.Deleted) != 2 || testutil.ToFloat64(metrics.Failed) != 1 {
		t.Fatal("metrics do not match the pass")
	}
	if m.lists != 1 {
		t.Fatalf("%d lists for one pass", m.lists)
	}
}
