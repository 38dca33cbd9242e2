package limits

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNames(t *testing.T) {
	m := &Manager{mode: ModeCgroup2, dirs: []hier{{"", "/sys/fs/cgroup/rdev"}}}
	for _, name := range []string{"pod-0f3a", "review_12.3", "A"} {
		if _, err := m.Open(name); err != nil {
			t.Errorf("Open(%q): %v", name, err)
		}
	}
	for _, name := range []string{"", ".", "..", ".probe", "-x", "a/b", "a b", "é", strings.Repeat("a", 129)} {
		if _, err := m.Open(name); !errors.Is(err, ErrInvalid) {
			t.Errorf("Open(%q): %v, want ErrInvalid", name, err)
		}
	}
	for _, parent := range []string{"", "/rdev", "../rdev", "rdev/..", "rdev//x", "rdev/", "./rdev", "rdev/.x"} {
		if _, err := NewManager(t.TempDir(), parent); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewManager(_, %q): %v, want ErrInvalid", parent, err)
		}
	}
	if _, err := (&Manager{mode: ModeRlimit}).Create("x", Spec{PIDs: -1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Create with negative PIDs: %v, want ErrInvalid", err)
	}
}

func TestFromArgs(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want *Group
	}{
		{"V2", []string{"cgroup2", "dir=/sys/fs/cgroup/rdev/sb"}, &Group{mode: ModeCgroup2, dirs: []hier{{"", "/sys/fs/cgroup/rdev/sb"}}}},
		{"V1", []string{"cgroup1", "memory=/m/rdev/sb", "pids=/p/rdev/sb"}, &Group{mode: ModeCgroup1, dirs: []hier{{"memory", "/m/rdev/sb"}, {"pids", "/p/rdev/sb"}}}},
		{"Rlimit", []string{"rlimit", "as=1048576", "nproc=9"}, &Group{mode: ModeRlimit, spec: Spec{MemoryBytes: 1 << 20, PIDs: 9}}},
		{"RlimitNone", []string{"rlimit"}, &Group{mode: ModeRlimit}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := FromArgs(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(g, tc.want) {
				t.Errorf("FromArgs = %+v, want %+v", g, tc.want)
			}
			if back := g.Args(); !reflect.DeepEqual(back, tc.args) {
				t.Errorf("Args = %q, want %q back", back, tc.args)
			}
		})
	}
	for _, args := range [][]string{
		nil, {"cgroup3"}, {"cgroup2"}, {"cgroup2", "dir=rdev/sb"}, {"cgroup2", "dir=/a/../b"},
		{"cgroup2", "dir=/a", "dir=/b"}, {"cgroup2", "memory=/a"}, {"cgroup1", "dir=/a"},
		{"cgroup1", "memory=/a", "devices=/b"}, {"rlimit", "as=-1"}, {"rlimit", "nproc=x"},
		{"rlimit", "as=/a"}, {"rlimit", "nproc=99999999999"},
	} {
		if _, err := FromArgs(args); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromArgs(%q): %v, want ErrInvalid", args, err)
		}
	}
}

func TestRlimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec Spec
		want []Rlimit
	}{
		{"Unlimited", Spec{}, nil},
		{"CPUHasNone", Spec{CPU: 2}, nil},
		{"Memory", Spec{MemoryBytes: 2 << 30}, []Rlimit{{unix.RLIMIT_DATA, 2 << 30, 2 << 30}}},
		{"All", Spec{MemoryBytes: 1 << 20, PIDs: 512, CPU: 1}, []Rlimit{{unix.RLIMIT_NPROC, 512, 512}, {unix.RLIMIT_DATA, 1 << 20, 1 << 20}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Rlimits(tc.spec); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Rlimits = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCPUQuota(t *testing.T) {
	for cpus, want := range map[float64]int64{2: 200000, 0.5: 50000, 0.333: 33300, 0.01: 1000, 0.001: 1000} {
		if got := cpuQuota(cpus); got != want {
			t.Errorf("cpuQuota(%v) = %d, want %d", cpus, got, want)
		}
	}
}

func TestCommonAncestor(t *testing.T) {
	for _, tc := range []struct{ self, rel, want string }{
		{"/", "rdev", "."},
		{"/system.slice/rdev.service", "rdev", "."},
		{"/rdev-alice/runner", "rdev-alice", "rdev-alice"},
		{"/rdev-alice/runner", "rdev-alice/rdev-test-1", "rdev-alice"},
		{"/a/b/c", "a/b/d/e", "a/b"},
		{"/ab", "a", "."},
	} {
		if got := commonAncestor(tc.self, tc.rel); got != tc.want {
			t.Errorf("commonAncestor(%q, %q) = %q, want %q", tc.self, tc.rel, got, tc.want)
		}
	}
}
