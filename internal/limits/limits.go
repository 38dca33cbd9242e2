// Package limits bounds the memory, processes and CPU of one sandbox so that
// a fork bomb or a memory hog ends inside that sandbox and hurts neither the
// server nor another sandbox.
//
// A Manager owns one subtree of the host's cgroups and puts each sandbox in
// a group of its own: cgroup v2 when the controllers are usable there,
// otherwise cgroup v1 (including "hybrid" hosts, whose v2 mount at
// <root>/unified usually holds no controller), otherwise rlimits applied to
// the sandbox's first process. The Manager says which it chose and why
// (Mode, Reason).
//
// A sandbox's first process joins its group itself, before it forks: rdev
// starts it through a short re-exec stage of its own binary that rebuilds the
// Group from its command line (Group.Args, FromArgs), calls Group.Enter, drops
// its privileges and execs bubblewrap. Nothing therefore ever runs outside
// the group. The group's processes must not be able to leave it or raise
// its limits: as root the group's files belong to root and the sandbox runs
// as another uid; in a subtree delegated to rdev's user the sandbox runs as
// that very uid, which owns the files, so the sandbox must never see the
// cgroup file system writable (bubblewrap mounts it read-only or not at
// all).
package limits

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
)

// Spec is what one sandbox may use. A zero field leaves that resource
// unlimited (in rlimit mode: as inherited).
type Spec struct {
	// MemoryBytes bounds the sandbox's memory. With cgroups it counts what
	// the processes really use (anonymous memory, page cache, kernel
	// memory), swap excluded from growth; with rlimits, each process's
	// virtual address space (see Rlimits).
	MemoryBytes int64
	// PIDs bounds the processes and threads alive at once.
	PIDs int
	// CPU is a number of CPUs, fractions allowed: the group's processes get
	// at most CPU×100 ms of CPU time per 100 ms. Not enforced in rlimit mode.
	CPU float64
}

func (s Spec) validate() error {
	if s.MemoryBytes < 0 || s.PIDs < 0 || s.CPU < 0 || math.IsNaN(s.CPU) || math.IsInf(s.CPU, 0) {
		return fmt.Errorf("%w: negative or not a number: %+v", ErrInvalid, s)
	}
	return nil
}

// Mode is how a Manager enforces limits.
type Mode string

// The modes, best first.
const (
	// ModeCgroup2 puts each sandbox in one group of the unified hierarchy.
	ModeCgroup2 Mode = "cgroup2"
	// ModeCgroup1 puts each sandbox in a group of each of the memory, pids,
	// cpu and freezer hierarchies (cpu and freezer when available).
	ModeCgroup1 Mode = "cgroup1"
	// ModeRlimit has no group: each sandbox's first process lowers its own
	// rlimits, which its descendants inherit (see Rlimits for what they
	// cannot do).
	ModeRlimit Mode = "rlimit"
)

// Errors of the package; functions wrap them with details.
var (
	// ErrInvalid: a group name, parent, Spec or FromArgs word that the
	// package refuses.
	ErrInvalid = errors.New("limits: invalid argument")
	// ErrBusy: processes were still in a group when Kill or Remove gave up
	// waiting for them to end (for instance, stuck in uninterruptible I/O).
	ErrBusy = errors.New("limits: processes left in the group")
)

// validName says whether s can name a sandbox's group: a single directory
// name of letters, digits, '.', '_' and '-', starting with a letter or a
// digit, so that it can never climb out of the parent, and so that Sweep
// can tell rdev's groups from the kernel's files and from probes.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 || !isAlnum(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isAlnum(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// checkParent accepts a relative path below the cgroup mount, such as "rdev"
// or a group delegated by systemd ("user.slice/user-1000.slice/user@1000.service/app.slice/rdev").
func checkParent(p string) error {
	bad := p == "" || filepath.IsAbs(p) || filepath.Clean(p) != p || strings.ContainsAny(p, "\x00\n")
	for _, c := range strings.Split(p, "/") {
		bad = bad || c == "." || c == ".." || strings.HasPrefix(c, ".")
	}
	if bad {
		return fmt.Errorf("%w: parent %q must be a relative path below the cgroup mount, such as \"rdev\"", ErrInvalid, p)
	}
	return nil
}
