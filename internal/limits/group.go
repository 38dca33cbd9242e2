package limits

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Group is one sandbox's group: a directory in the v2 hierarchy, one in
// each v1 hierarchy used, or (ModeRlimit) only the limits its first process
// applies to itself. Its methods may be called concurrently.
type Group struct {
	mode Mode
	dirs []hier
	spec Spec // ModeRlimit: what Enter applies
}

// How long Kill and Remove wait for the group's processes to end.
const (
	killTimeout   = 10 * time.Second
	freezeTimeout = time.Second
)

// Enter moves the calling process, all its threads, into the group (in
// each hierarchy), so that everything it later starts is in it too; in
// ModeRlimit it lowers its own rlimits instead (see Rlimits). It is meant for
// the re-exec stage that starts a sandbox (see the package comment) and
// should be its last step but dropping privileges and exec: under a memory
// rlimit, a Go runtime whose address space already exceeds the limit cannot
// grow its heap or start a thread. On error the process may be in some
// hierarchies already, and must exit rather than start the sandbox.
func (g *Group) Enter() error {
	if g.mode == ModeRlimit {
		return setRlimits(Rlimits(g.spec))
	}
	pid := strconv.Itoa(unix.Getpid())
	for _, h := range g.dirs {
		if err := writeFile(filepath.Join(h.dir, "cgroup.procs"), pid); err != nil {
			return fmt.Errorf("limits: entering %s: %w", h.dir, err)
		}
	}
	return nil
}

// Args describes the group in words for a command line: the mode, then
// "dir=<path>" (v2), "<controller>=<path>" (v1), or "as=<bytes>" and
// "nproc=<n>" (rlimits). FromArgs reads them back in another process.
func (g *Group) Args() []string {
	args := []string{string(g.mode)}
	switch g.mode {
	case ModeRlimit:
		if g.spec.MemoryBytes > 0 {
			args = append(args, "as="+strconv.FormatInt(g.spec.MemoryBytes, 10))
		}
		if g.spec.PIDs > 0 {
			args = append(args, "nproc="+strconv.Itoa(g.spec.PIDs))
		}
	default:
		for _, h := range g.dirs {
			args = append(args, cmp.Or(h.ctrl, "dir")+"="+h.dir)
		}
	}
	return args
}

// FromArgs returns the group that Args described, to Enter it from the
// re-exec stage. It checks the words' form (known mode and keys, absolute
// clean paths, each key once, numbers), not that the groups exist: Enter
// says so. It fails with ErrInvalid.
func FromArgs(args []string) (*Group, error) {
	bad := func(format string, a ...any) (*Group, error) {
		return nil, fmt.Errorf("%w: limits arguments %q: %s", ErrInvalid, args, fmt.Sprintf(format, a...))
	}
	if len(args) == 0 {
		return bad("empty")
	}
	g := &Group{mode: Mode(args[0])}
	var keys []string
	switch g.mode {
	case ModeCgroup2:
		keys = []string{"dir"}
	case ModeCgroup1:
		for _, c := range v1Controllers {
			keys = append(keys, c.name)
		}
	case ModeRlimit:
		keys = []string{"as", "nproc"}
	default:
		return bad("unknown mode %q", args[0])
	}
	seen := map[string]bool{}
	for _, a := range args[1:] {
		k, v, _ := strings.Cut(a, "=")
		if !slices.Contains(keys, k) || seen[k] {
			return bad("unexpected or repeated %q", a)
		}
		seen[k] = true
		if g.mode != ModeRlimit {
			if !filepath.IsAbs(v) || filepath.Clean(v) != v {
				return bad("%q is not an absolute clean path", v)
			}
			g.dirs = append(g.dirs, hier{strings.TrimPrefix(k, "dir"), v})
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || k == "nproc" && n > 1<<31-1 {
			return bad("%q is not a positive number", a)
		}
		if k == "as" {
			g.spec.MemoryBytes = n
		} else {
			g.spec.PIDs = int(n)
		}
	}
	if g.mode != ModeRlimit && len(g.dirs) == 0 {
		return bad("no group directory")
	}
	return g, nil
}

// Pids lists the processes in the group (and in any group below it),
// sorted; none once the group is removed. It fails with
// errors.ErrUnsupported in ModeRlimit, where no group collects them.
func (g *Group) Pids() ([]int, error) {
	if g.mode == ModeRlimit {
		return nil, fmt.Errorf("limits: listing processes without cgroups: %w", errors.ErrUnsupported)
	}
	set := map[int]bool{}
	for _, h := range g.dirs {
		if err := readPids(h.dir, set); err != nil {
			return nil, fmt.Errorf("limits: %w", err)
		}
	}
	pids := make([]int, 0, len(set))
	for p := range set {
		pids = append(pids, p)
	}
	slices.Sort(pids)
	return pids, nil
}

// Kill ends every process in the group, including those that left the
// sandbox's session or process group and those forked meanwhile, and
// returns once none is left. It cannot miss a fork: v2 writes cgroup.kill
// (before Linux 5.14: freezes the group through cgroup.freeze, signals,
// thaws); v1 freezes the group through the freezer hierarchy, signals, then
// thaws; without a freezer it signals again until the group is empty,
// which ends because a process with SIGKILL pending can no longer fork.
// Signals go through pidfds checked against the group, so a pid reused by a
// process outside never gets one. A group that does not exist is empty.
// Kill fails with ErrBusy when processes are left after ten seconds, with
// ErrInvalid when the calling process is in the group (it would freeze or
// kill itself half-way), and with errors.ErrUnsupported in ModeRlimit.
func (g *Group) Kill() error {
	if g.mode == ModeRlimit {
		return fmt.Errorf("limits: killing without cgroups: %w", errors.ErrUnsupported)
	}
	if pids, err := g.Pids(); err != nil {
		return err
	} else if slices.Contains(pids, unix.Getpid()) {
		return fmt.Errorf("%w: killing the group %s holding the calling process", ErrInvalid, g.dirs[0].dir)
	}
	deadline := time.Now().Add(killTimeout)
	var err error
	if g.mode == ModeCgroup2 {
		err = g.killV2(g.dirs[0].dir)
	} else if i := slices.IndexFunc(g.dirs, func(h hier) bool { return h.ctrl == "freezer" }); i >= 0 {
		err = g.whileFrozen(filepath.Join(g.dirs[i].dir, "freezer.state"), "FROZEN", "THAWED", func() (bool, error) {
			s, err := readFile(filepath.Join(g.dirs[i].dir, "freezer.state"))
			return s == "FROZEN", err
		})
	}
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	if err != nil {
		return fmt.Errorf("limits: %w", err)
	}
	// Signal what is left (without a freezer: everything) until the group
	// is empty; after cgroup.kill or a frozen pass this only waits.
	return g.signalUntilEmpty(deadline)
}

func (g *Group) killV2(dir string) error {
	if kill := filepath.Join(dir, "cgroup.kill"); exists(kill) {
		return writeFile(kill, "1")
	}
	if exists(filepath.Join(dir, "cgroup.freeze")) {
		return g.freezeKillV2(dir)
	}
	return nil
}

// freezeKillV2 kills through the v2 freezer, for kernels before cgroup.kill.
func (g *Group) freezeKillV2(dir string) error {
	return g.whileFrozen(filepath.Join(dir, "cgroup.freeze"), "1", "0", func() (bool, error) {
		n, _, err := keyed(filepath.Join(dir, "cgroup.events"), "frozen")
		return n == 1, err
	})
}

// whileFrozen freezes the group by writing freeze to file, waits (briefly)
// until frozen reports it done, sends SIGKILL to every process, and thaws
// the group so that they die. A process that cannot freeze (in
// uninterruptible sleep) is signalled all the same, and signalUntilEmpty
// finishes the job.
func (g *Group) whileFrozen(file, freeze, thaw string, frozen func() (bool, error)) (err error) {
	if err := writeFile(file, freeze); err != nil {
		return err
	}
	defer func() {
		if terr := writeFile(file, thaw); err == nil {
			err = terr
		}
	}()
	deadline := time.Now().Add(freezeTimeout)
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 20*time.Millisecond) {
		done, err := frozen()
		if err != nil {
			return err
		}
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(wait)
	}
	_, err = g.signalAll()
	return err
}

// signalUntilEmpty sends SIGKILL to the group's processes until there are
// none, or fails with ErrBusy at deadline.
func (g *Group) signalUntilEmpty(deadline time.Time) error {
	for wait := 100 * time.Microsecond; ; wait = min(2*wait, 50*time.Millisecond) {
		n, err := g.signalAll()
		if err != nil || n == 0 {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %d processes after %v", ErrBusy, n, killTimeout)
		}
		time.Sleep(wait)
	}
}

// signalAll sends SIGKILL to every process in the group and returns how
// many there were. Each pid is pinned by a pidfd, then checked to be in the
// group still (a second read of the group after the pidfds are open): a
// process that exited and whose pid went to someone outside is never
// signalled.
func (g *Group) signalAll() (int, error) {
	pids, err := g.Pids()
	if err != nil || len(pids) == 0 {
		return 0, err
	}
	fds := make(map[int]int, len(pids))
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	pidfds := true
	for _, p := range pids {
		fd, err := unix.PidfdOpen(p, 0)
		switch {
		case err == nil:
			fds[p] = fd
		case errors.Is(err, unix.ENOSYS):
			pidfds = false // before Linux 5.3: plain kill, with its small window
		case !errors.Is(err, unix.ESRCH):
			return 0, fmt.Errorf("limits: pidfd of %d: %w", p, err)
		}
	}
	still, err := g.Pids()
	if err != nil {
		return 0, err
	}
	for _, p := range still {
		fd, ok := fds[p]
		switch {
		case ok:
			err = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
		case !pidfds && slices.Contains(pids, p):
			err = unix.Kill(p, unix.SIGKILL)
		default:
			continue // a newcomer: the next pass pins it
		}
		if err != nil && !errors.Is(err, unix.ESRCH) {
			return 0, fmt.Errorf("limits: killing %d: %w", p, err)
		}
	}
	return len(still), nil
}

// Remove kills the group's processes (see Kill), then removes its
// directory in every hierarchy, and any group below it. A group already
// removed is fine, so Remove can be repeated. It fails with ErrBusy when
// processes outlive Kill, or with the kernel's error when a directory
// stays. In ModeRlimit there is nothing to remove and it returns nil; the
// sandbox's processes must be ended otherwise (bubblewrap's
// --die-with-parent, a PID namespace).
func (g *Group) Remove() error {
	if g.mode == ModeRlimit {
		return nil
	}
	if err := g.Kill(); err != nil {
		return err
	}
	deadline := time.Now().Add(killTimeout)
	var errs []error
	for _, h := range g.dirs {
		if err := rmdirTree(h.dir, deadline); err != nil {
			errs = append(errs, fmt.Errorf("limits: %w", err))
		}
	}
	return errors.Join(errs...)
}

// MemoryEvents returns how many processes of the group the kernel's OOM
// killer ended because the group reached its memory limit, so that rdev can
// tell "killed by the memory limit" from other deaths. It fails with
// errors.ErrUnsupported in ModeRlimit (where a process over its limit gets
// ENOMEM, not killed) or on a kernel that does not count OOM kills (v1
// before Linux 4.13).
func (g *Group) MemoryEvents() (oomKills int, err error) {
	var file string
	switch g.mode {
	case ModeCgroup2:
		file = filepath.Join(g.dirs[0].dir, "memory.events")
	case ModeCgroup1:
		for _, h := range g.dirs {
			if h.ctrl == "memory" {
				file = filepath.Join(h.dir, "memory.oom_control")
			}
		}
	}
	if file == "" {
		return 0, fmt.Errorf("limits: OOM kills without a memory cgroup: %w", errors.ErrUnsupported)
	}
	n, found, err := keyed(file, "oom_kill")
	if err != nil {
		return 0, fmt.Errorf("limits: %w", err)
	}
	if !found {
		return 0, fmt.Errorf("limits: %s does not count OOM kills: %w", file, errors.ErrUnsupported)
	}
	return n, nil
}
