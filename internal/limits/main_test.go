package limits

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as rdev's re-exec stage (helperMain)
// instead of running tests.
const helperEnv = "RDEV_LIMITS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		helperMain(os.Args[1:])
	}
	os.Exit(m.Run())
}

// helperMain does what rdev's re-exec stage does, from its command line
// only: GROUP-ARGS... -- PAYLOAD...: rebuild the group, enter it, exec the
// payload. Everything that allocates happens before Enter (see Enter).
// With the payload "sweep ROOT PARENT" it sweeps ROOT/PARENT from inside
// the group instead.
func helperMain(args []string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "limits test helper:", err)
		os.Exit(111)
	}
	i := slices.Index(args, "--")
	if i < 0 || i == len(args)-1 {
		fail(fmt.Errorf("want GROUP-ARGS... -- PAYLOAD..., got %q", args))
	}
	g, err := FromArgs(args[:i])
	if err != nil {
		fail(err)
	}
	payload := args[i+1:]
	if payload[0] == "sweep" && len(payload) == 3 {
		if err := g.Enter(); err != nil {
			fail(err)
		}
		m, err := NewManager(payload[1], payload[2])
		if err != nil {
			fail(err)
		}
		if err := m.Sweep(func(string) bool { return false }); err != nil {
			fail(err)
		}
		os.Exit(0)
	}
	path, err := exec.LookPath(payload[0])
	if err != nil {
		fail(err)
	}
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, helperEnv+"=") })
	if err := g.Enter(); err != nil {
		fail(err)
	}
	fail(syscall.Exec(path, payload, env))
}

// run is a payload started in a group through helperMain.
type run struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
}

// startIn starts payload in g the way rdev starts a sandbox. Its output
// goes to files, not pipes, so that waiting for it does not also wait for
// background processes holding the pipe. The test's end kills what is left
// of it.
func startIn(t *testing.T, g *Group, payload ...string) *run {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	args := append(append(g.Args(), "--"), payload...)
	r := &run{cmd: exec.CommandContext(ctx, self, args...)}
	r.cmd.Env = append(os.Environ(), helperEnv+"=1")
	dir := t.TempDir()
	for _, f := range []**os.File{&r.stdout, &r.stderr} {
		if *f, err = os.CreateTemp(dir, "out"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { (*f).Close() })
	}
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.cmd.Process.Kill()
		r.cmd.Wait()
	})
	return r
}

// wait waits for the payload to end and returns its error with its output.
func (r *run) wait() (stdout, stderr string, err error) {
	err = r.cmd.Wait()
	o, _ := os.ReadFile(r.stdout.Name())
	e, _ := os.ReadFile(r.stderr.Name())
	return string(o), string(e), err
}

// unavailable skips a test whose host lacks what it needs, or fails it
// under CI, where every suite must run.
func unavailable(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true forbids skipping)", why)
	}
	t.Skip(why)
}

// realManager returns a Manager on the host's cgroups with a parent of its
// own: "rdev-test-<random>", inside $RDEV_CGROUP_PARENT when CI delegated
// a subtree to an unprivileged user (.ci/delegate-cgroups). The test's end
// removes every group and the parent.
func realManager(t *testing.T) (m *Manager, parent string) {
	t.Helper()
	parent = fmt.Sprintf("rdev-test-%x", rand.Uint64())
	if p := os.Getenv("RDEV_CGROUP_PARENT"); p != "" {
		parent = p + "/" + parent
	}
	m, err := NewManager("/sys/fs/cgroup", parent)
	if err != nil {
		t.Fatal(err)
	}
	if m.Mode() == ModeRlimit {
		unavailable(t, "no usable cgroups (run as root, or set RDEV_CGROUP_PARENT to a delegated group): "+m.Reason())
	}
	t.Logf("%s: %s", m.Mode(), m.Reason())
	t.Cleanup(func() {
		if err := m.Sweep(func(string) bool { return false }); err != nil {
			t.Error(err)
		}
		for _, h := range m.dirs {
			if err := unix.Rmdir(h.dir); err != nil {
				t.Errorf("removing the test's parent %s: %v", h.dir, err)
			}
		}
	})
	return m, parent
}

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dirOf returns g's directory of a v1 controller, or its v2 directory.
func dirOf(t *testing.T, g *Group, ctrl string) string {
	t.Helper()
	for _, h := range g.dirs {
		if h.ctrl == "" || h.ctrl == ctrl {
			return h.dir
		}
	}
	t.Fatalf("group %v has no %s directory", g.dirs, ctrl)
	return ""
}

func readInt(t *testing.T, path, key string) int {
	t.Helper()
	if key != "" {
		n, found, err := keyed(path, key)
		if err != nil || !found {
			t.Fatalf("%s: %s: found %v, %v", path, key, found, err)
		}
		return n
	}
	s, err := readFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// procStat returns a process's state, parent and session from
// /proc/<pid>/stat; ok is false once it is gone.
func procStat(pid int) (state byte, ppid, sid int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, 0, 0, false
	}
	// "pid (comm) state ppid pgrp session ...": comm may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ppid, _ = strconv.Atoi(f[1])
	sid, _ = strconv.Atoi(f[3])
	return f[0][0], ppid, sid, true
}

// selfCgroups reads /proc/self/cgroup as controller → path ("" for v2).
func selfCgroups(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	return parseCgroups(string(b))
}

func parseCgroups(s string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			m[c] = parts[2]
		}
	}
	return m
}
