package limits

import (
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// rlimitGroup returns a group of a Manager that found no cgroups (an empty
// directory as the mount root), so that Enter applies rlimits.
func rlimitGroup(t *testing.T, s Spec) *Group {
	t.Helper()
	m, err := NewManager(t.TempDir(), "rdev")
	if err != nil || m.Mode() != ModeRlimit {
		t.Fatalf("NewManager on an empty directory: %v, %v; want rlimit mode", m, err)
	}
	g, err := m.Create("sb", s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestRlimitProcesses runs a fork loop under the NPROC rlimit Enter
// applied. RLIMIT_NPROC binds only a non-root uid and counts every process
// of it: as root the payload drops to a uid of its own (as rdev's re-exec
// stage drops privileges before exec'ing bubblewrap) so that the count is
// exact; as another user it runs as that user, and only the refusal is
// checked, since the user's other processes share the count.
func TestRlimitProcesses(t *testing.T) {
	payload := []string{"sh", "-c", "for i in $(seq 200); do sleep 30 </dev/null >/dev/null 2>&1 & echo $!; done"}
	spec := Spec{PIDs: 16}
	uid := -1
	if os.Geteuid() == 0 {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			unavailable(t, "setpriv (util-linux) is needed to drop to another uid")
		}
		uid = 2_000_000_000 + rand.IntN(100_000_000)
		u := strconv.Itoa(uid)
		payload = append([]string{setpriv, "--reuid=" + u, "--regid=" + u, "--clear-groups"}, payload...)
		t.Cleanup(func() { killUID(uid) })
	} else {
		spec.PIDs = tasksOf(os.Getuid()) + 64
	}
	r := startIn(t, rlimitGroup(t, spec), payload...)
	stdout, stderr, err := r.wait()
	var sleeps []int
	for _, f := range strings.Fields(stdout) {
		if pid, err := strconv.Atoi(f); err == nil {
			sleeps = append(sleeps, pid)
		}
	}
	t.Cleanup(func() {
		for _, p := range sleeps {
			killIfUID(p, os.Getuid(), uid)
		}
	})
	if err == nil || !strings.Contains(stderr, "fork") {
		t.Fatalf("the fork loop ended with %v, %q; want a refused fork", err, stderr)
	}
	if uid >= 0 {
		// The shell and its sleeps: at most 16 processes of the uid.
		if n := tasksOf(uid); n > 16-1 || len(sleeps) > 16-1 || len(sleeps) < 8 {
			t.Errorf("%d sleeps started, %d tasks of uid %d left; want between 8 and 15", len(sleeps), n, uid)
		}
	}
}

// TestRlimitAddressSpace runs a memory hog under the RLIMIT_DATA Enter
// applied: the allocation fails (ENOMEM), rather than the process being
// killed as in a memory cgroup.
func TestRlimitAddressSpace(t *testing.T) {
	g := rlimitGroup(t, Spec{MemoryBytes: 64 << 20})
	_, stderr, err := startIn(t, g, "sh", "-c", "head -c 300M /dev/zero | tail").wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr, "memory exhausted") {
		t.Errorf("the hog ended with %v, %q; want exit status 1 and tail's \"memory exhausted\"", err, stderr)
	}
}

// tasksOf counts the tasks (processes and threads: what RLIMIT_NPROC
// counts) whose real uid is uid.
func tasksOf(uid int) int {
	n := 0
	for _, pid := range pids() {
		if real, threads, ok := status(pid); ok && real == uid {
			n += threads
		}
	}
	return n
}

func pids() []int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	var out []int
	for _, d := range dirs {
		if pid, err := strconv.Atoi(filepath.Base(d)); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// status reads a process's real uid and thread count.
func status(pid int) (uid, threads int, ok bool) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, false
	}
	uid = -1
	for _, l := range strings.Split(string(b), "\n") {
		if v, found := strings.CutPrefix(l, "Uid:"); found {
			uid, _ = strconv.Atoi(strings.Fields(v)[0])
		}
		if v, found := strings.CutPrefix(l, "Threads:"); found {
			threads, _ = strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return uid, threads, uid >= 0
}

// killUID ends every process of uid, a uid the test made up.
func killUID(uid int) {
	for _, pid := range pids() {
		killIfUID(pid, uid)
	}
}

// killIfUID sends SIGKILL to pid if its real uid is one of uids, through a
// pidfd opened before the check so that a reused pid is not hit.
func killIfUID(pid int, uids ...int) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if uid, _, ok := status(pid); ok && slices.Contains(uids, uid) {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}
