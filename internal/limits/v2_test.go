package limits

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The cgroup v2 tests run against a directory laid out like a v2 mount and
// check what the package writes into it. They do NOT exercise real v2
// enforcement: the v2 mount of the machines this was written on has no
// controllers, so the kernel side of v2 (controllers reaching a group,
// cgroup.kill, memory.events) is only tested by the TestCgroup* tests when
// the suite runs on a v2 host.

// v2Group holds the files the kernel would show in a v2 group.
var v2Group = map[string]string{
	"cgroup.controllers":     "",
	"cgroup.subtree_control": "",
	"cgroup.procs":           "",
	"cgroup.kill":            "",
	"cgroup.events":          "populated 0\nfrozen 0\n",
	"memory.max":             "max",
	"memory.swap.max":        "max",
	"memory.events":          "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
	"pids.max":               "max",
	"cpu.max":                "max 100000",
}

// fakeGroup makes dir a group of the fake hierarchy, with files (over
// defaults): a real kernel would make them itself at mkdir.
func fakeGroup(t *testing.T, dir string, defaults, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range defaults {
		if c, ok := files[name]; ok {
			content = c
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func fileIs(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(b); got != want {
		t.Errorf("%s = %q, want %q", path, got, want)
	}
}

// fakeV2 lays out a v2 mount whose root offers controllers, with the
// groups rdev and rdev/sb as the kernel would make them (the controllers
// each may use are what the test says its parent enables).
func fakeV2(t *testing.T, controllers string, files map[string]map[string]string) string {
	root := t.TempDir()
	fakeGroup(t, root, map[string]string{"cgroup.controllers": controllers, "cgroup.subtree_control": "", "cgroup.procs": ""}, files["."])
	fakeGroup(t, filepath.Join(root, "rdev"), v2Group, files["rdev"])
	fakeGroup(t, filepath.Join(root, "rdev", "sb"), v2Group, files["rdev/sb"])
	return root
}

func TestV2(t *testing.T) {
	t.Run("EnablesControllersDownToParent", func(t *testing.T) {
		root := fakeV2(t, "cpuset cpu io memory hugetlb pids", map[string]map[string]string{"rdev": {"cgroup.controllers": "cpu memory pids"}})
		m, err := NewManager(root, "rdev")
		if err != nil {
			t.Fatal(err)
		}
		if m.Mode() != ModeCgroup2 || !m.cpu {
			t.Fatalf("mode %s, cpu %v (%s); want cgroup2 with cpu", m.Mode(), m.cpu, m.Reason())
		}
		fileIs(t, filepath.Join(root, "cgroup.subtree_control"), "+memory +pids +cpu")
		fileIs(t, filepath.Join(root, "rdev", "cgroup.subtree_control"), "+memory +pids +cpu")
	})
	t.Run("LeavesEnabledAncestorsAlone", func(t *testing.T) {
		// A delegated subtree: the delegator enabled everything and owns the
		// ancestors' files.
		root := fakeV2(t, "cpu memory pids", map[string]map[string]string{
			".":    {"cgroup.subtree_control": "cpu memory pids"},
			"rdev": {"cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": "cpu memory pids"}})
		m, err := NewManager(root, "rdev")
		if err != nil || m.Mode() != ModeCgroup2 {
			t.Fatalf("%v, %v", m, err)
		}
		fileIs(t, filepath.Join(root, "cgroup.subtree_control"), "cpu memory pids")
		fileIs(t, filepath.Join(root, "rdev", "cgroup.subtree_control"), "cpu memory pids")
	})
	t.Run("CreateWritesLimits", func(t *testing.T) {
		root := fakeV2(t, "cpu memory pids", map[string]map[string]string{"rdev": {"cgroup.controllers": "cpu memory pids"}})
		m, _ := NewManager(root, "rdev")
		sb := filepath.Join(root, "rdev", "sb")
		if _, err := m.Create("sb", Spec{MemoryBytes: 512 << 20, PIDs: 100, CPU: 1.5}); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"memory.max": "536870912", "memory.swap.max": "0", "pids.max": "100", "cpu.max": "150000 100000"}
		for f, v := range want {
			fileIs(t, filepath.Join(sb, f), v)
		}
		// Again, unlimited: every limit is lifted, swap included.
		if _, err := m.Create("sb", Spec{}); err != nil {
			t.Fatal(err)
		}
		want = map[string]string{"memory.max": "max", "memory.swap.max": "max", "pids.max": "max", "cpu.max": "max 100000"}
		for f, v := range want {
			fileIs(t, filepath.Join(sb, f), v)
		}
	})
	t.Run("WithoutCPUController", func(t *testing.T) {
		root := fakeV2(t, "memory pids", map[string]map[string]string{"rdev": {"cgroup.controllers": "memory pids"}})
		m, _ := NewManager(root, "rdev")
		if m.Mode() != ModeCgroup2 || m.cpu || !strings.Contains(m.Reason(), "cpu is not limited") {
			t.Fatalf("mode %s, cpu %v, reason %q; want cgroup2 saying cpu is not limited", m.Mode(), m.cpu, m.Reason())
		}
		fileIs(t, filepath.Join(root, "cgroup.subtree_control"), "+memory +pids")
		if _, err := m.Create("sb", Spec{MemoryBytes: 1 << 30, CPU: 2}); err != nil {
			t.Fatal(err)
		}
		fileIs(t, filepath.Join(root, "rdev", "sb", "cpu.max"), "max 100000")
	})
	t.Run("WithoutMemoryController", func(t *testing.T) {
		root := fakeV2(t, "cpu pids", nil)
		m, _ := NewManager(root, "rdev")
		if m.Mode() != ModeRlimit || !strings.Contains(m.Reason(), "no memory controller") {
			t.Errorf("mode %s, reason %q; want rlimit saying memory is missing", m.Mode(), m.Reason())
		}
	})
	t.Run("Group", func(t *testing.T) {
		root := fakeV2(t, "cpu memory pids", map[string]map[string]string{"rdev": {"cgroup.controllers": "cpu memory pids"}})
		m, _ := NewManager(root, "rdev")
		sb := filepath.Join(root, "rdev", "sb")
		g, err := m.Create("sb", Spec{PIDs: 10})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := strings.Join(g.Args(), " "), "cgroup2 dir="+sb; got != want {
			t.Errorf("Args = %q, want %q", got, want)
		}
		if err := g.Enter(); err != nil {
			t.Fatal(err)
		}
		fileIs(t, filepath.Join(sb, "cgroup.procs"), strconv.Itoa(os.Getpid()))
		os.WriteFile(filepath.Join(sb, "cgroup.procs"), nil, 0o644) // the kernel would have emptied it
		if err := g.Kill(); err != nil {
			t.Fatal(err)
		}
		fileIs(t, filepath.Join(sb, "cgroup.kill"), "1")
		os.WriteFile(filepath.Join(sb, "memory.events"), []byte("low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\n"), 0o644)
		if n, err := g.MemoryEvents(); n != 2 || err != nil {
			t.Errorf("MemoryEvents = %d, %v; want 2", n, err)
		}
	})
}
