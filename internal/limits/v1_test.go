package limits

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// These tests check the choice of mode and the v1 writes against a
// directory laid out like a hybrid host (v1 hierarchies beside a v2 mount at
// unified). TestCgroup* checks the real thing.

var v1Files = map[string]map[string]string{
	"memory": {"tasks": "", "cgroup.procs": "",
		"memory.limit_in_bytes": "9223372036854771712", "memory.memsw.limit_in_bytes": "9223372036854771712",
		"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", "memory.use_hierarchy": "1"},
	"pids":    {"tasks": "", "cgroup.procs": "", "pids.max": "max"},
	"cpu":     {"tasks": "", "cgroup.procs": "", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1"},
	"freezer": {"tasks": "", "cgroup.procs": "", "freezer.state": "THAWED"},
}

// fakeHybrid lays out root/<controller> for each controller, with the
// groups rdev and rdev/sb, and root/unified offering unified controllers.
func fakeHybrid(t *testing.T, unified string, controllers ...string) string {
	root := t.TempDir()
	fakeGroup(t, filepath.Join(root, "unified"), map[string]string{"cgroup.controllers": unified, "cgroup.subtree_control": "", "cgroup.procs": ""}, nil)
	for _, c := range controllers {
		for _, dir := range []string{"", "rdev", "rdev/sb"} {
			fakeGroup(t, filepath.Join(root, c, dir), v1Files[c], nil)
		}
	}
	return root
}

func TestModeChoice(t *testing.T) {
	t.Run("HybridWithoutUnifiedControllersUsesV1", func(t *testing.T) {
		root := fakeHybrid(t, "hugetlb", "memory", "pids", "cpu", "freezer")
		m, err := NewManager(root, "rdev")
		if err != nil {
			t.Fatal(err)
		}
		if m.Mode() != ModeCgroup1 || !m.cpu || !strings.Contains(m.Reason(), "unified has no memory or pids controller") {
			t.Errorf("mode %s, cpu %v, reason %q; want cgroup1 with cpu, saying why not v2", m.Mode(), m.cpu, m.Reason())
		}
	})
	t.Run("V1WithoutCPUOrFreezer", func(t *testing.T) {
		root := fakeHybrid(t, "", "memory", "pids")
		m, _ := NewManager(root, "rdev")
		if m.Mode() != ModeCgroup1 || m.cpu || !strings.Contains(m.Reason(), "cpu is not used") || !strings.Contains(m.Reason(), "freezer is not used") {
			t.Errorf("mode %s, cpu %v, reason %q; want cgroup1 noting cpu and freezer", m.Mode(), m.cpu, m.Reason())
		}
	})
	t.Run("V1WithoutPidsFallsBackToRlimits", func(t *testing.T) {
		root := fakeHybrid(t, "", "memory", "cpu")
		m, _ := NewManager(root, "rdev")
		if m.Mode() != ModeRlimit || !strings.Contains(m.Reason(), "no cgroup v1 pids hierarchy") {
			t.Errorf("mode %s, reason %q; want rlimit saying pids is missing", m.Mode(), m.Reason())
		}
	})
	t.Run("NothingMountedFallsBackToRlimits", func(t *testing.T) {
		m, err := NewManager(t.TempDir(), "rdev")
		if err != nil {
			t.Fatal(err)
		}
		if m.Mode() != ModeRlimit || m.Reason() == "" {
			t.Errorf("mode %s, reason %q; want rlimit with a reason", m.Mode(), m.Reason())
		}
		g, err := m.Create("sb", Spec{MemoryBytes: 1 << 30, PIDs: 100, CPU: 1})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(g.Args(), " "), "rlimit as=1073741824 nproc=100"; got != want {
			t.Errorf("Args = %q, want %q", got, want)
		}
		for what, err := range map[string]error{"Kill": g.Kill(), "MemoryEvents": second(g.MemoryEvents()), "Pids": second(g.Pids())} {
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("%s: %v, want ErrUnsupported", what, err)
			}
		}
		if err := g.Remove(); err != nil {
			t.Errorf("Remove: %v", err)
		}
		if err := m.Sweep(func(string) bool { return false }); err != nil {
			t.Errorf("Sweep: %v", err)
		}
	})
}

func second[T any](_ T, err error) error { return err }

func TestV1Writes(t *testing.T) {
	root := fakeHybrid(t, "", "memory", "pids", "cpu", "freezer")
	m, _ := NewManager(root, "rdev")
	g, err := m.Create("sb", Spec{MemoryBytes: 256 << 20, PIDs: 64, CPU: 0.25})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"memory/rdev/sb/memory.limit_in_bytes":       "268435456",
		"memory/rdev/sb/memory.memsw.limit_in_bytes": "268435456",
		"memory/rdev/sb/memory.oom_control":          "0",
		"pids/rdev/sb/pids.max":                      "64",
		"cpu/rdev/sb/cpu.cfs_period_us":              "100000",
		"cpu/rdev/sb/cpu.cfs_quota_us":               "25000",
		"freezer/rdev/sb/freezer.state":              "THAWED",
	}
	for f, v := range want {
		fileIs(t, filepath.Join(root, f), v)
	}
	wantArgs := "cgroup1"
	for _, c := range []string{"memory", "pids", "cpu", "freezer"} {
		wantArgs += " " + c + "=" + filepath.Join(root, c, "rdev", "sb")
	}
	if got := strings.Join(g.Args(), " "); got != wantArgs {
		t.Errorf("Args = %q, want %q", got, wantArgs)
	}
	if _, err := m.Create("sb", Spec{}); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"memory/rdev/sb/memory.limit_in_bytes": "-1", "pids/rdev/sb/pids.max": "max", "cpu/rdev/sb/cpu.cfs_quota_us": "-1"} {
		fileIs(t, filepath.Join(root, f), v)
	}
}
