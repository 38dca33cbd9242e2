package limits

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Rlimit is one resource limit of setrlimit(2): Resource is a unix.RLIMIT_*
// constant, Cur the soft and Max the hard limit.
type Rlimit struct {
	Resource int
	Cur, Max uint64
}

// Rlimits returns the fallback of s for a host without usable cgroups,
// soft and hard limit alike so that the sandbox cannot raise them again.
// They are weaker than a group, and differ in what they count:
//
//   - MemoryBytes becomes RLIMIT_DATA, which bounds each process's data
//     segment and private writable mappings (Linux 4.7 and later): what a
//     process allocates, not address space merely reserved (RLIMIT_AS
//     would stop Go and Java runtimes, rdev's own sandbox supervisor
//     among them, from starting at all). It is per process, so N processes
//     may use N times it, and a process over it gets ENOMEM, not an OOM
//     kill.
//   - PIDs becomes RLIMIT_NPROC, which the kernel checks at fork against
//     all the processes and threads of the real uid, across the host: every
//     sandbox run as the same uid shares one count, and what other
//     processes of that uid hold is subtracted from a sandbox's allowance.
//     It binds neither root nor a process with CAP_SYS_RESOURCE or
//     CAP_SYS_ADMIN, so it only works once the sandbox runs as an
//     unprivileged uid.
//   - CPU has no rlimit counterpart (RLIMIT_CPU caps total CPU seconds,
//     not a rate) and is not enforced.
//
// A zero field gives no entry: that resource keeps the inherited limit.
// The order is the order to apply them in.
func Rlimits(s Spec) []Rlimit {
	var out []Rlimit
	if s.PIDs > 0 {
		out = append(out, Rlimit{unix.RLIMIT_NPROC, uint64(s.PIDs), uint64(s.PIDs)})
	}
	// RLIMIT_DATA last: once set, the process applying them may be unable
	// to map anything more (see Group.Enter).
	if s.MemoryBytes > 0 {
		out = append(out, Rlimit{unix.RLIMIT_DATA, uint64(s.MemoryBytes), uint64(s.MemoryBytes)})
	}
	return out
}

// setRlimits applies rls to the calling process, never above the hard
// limits it already has: lowering is always allowed, and a limit tighter
// than rdev's was set for a reason.
func setRlimits(rls []Rlimit) error {
	for _, r := range rls {
		var cur unix.Rlimit
		if err := unix.Getrlimit(r.Resource, &cur); err != nil {
			return fmt.Errorf("limits: getrlimit %d: %w", r.Resource, err)
		}
		lim := unix.Rlimit{Cur: min(r.Cur, cur.Max), Max: min(r.Max, cur.Max)}
		if err := unix.Setrlimit(r.Resource, &lim); err != nil {
			return fmt.Errorf("limits: setrlimit %d: %w", r.Resource, err)
		}
	}
	return nil
}
