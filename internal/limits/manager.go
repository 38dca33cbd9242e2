package limits

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// hier is a group's directory in one hierarchy: ctrl names the v1
// controller, "" the v2 hierarchy.
type hier struct{ ctrl, dir string }

// Manager owns one subtree of the host's cgroups, holding one group per
// sandbox. Its methods may be called concurrently.
type Manager struct {
	mode   Mode
	reason string
	dirs   []hier // the parent's directory in each hierarchy used
	cpu    bool   // whether Spec.CPU is enforced
}

// NewManager finds how limits can be enforced on this host, in this order:
//
//   - cgroup v2, at root (a pure v2 host) or at root/unified (a hybrid one),
//     when the memory and pids controllers reach root/parent. As root it
//     enables them in cgroup.subtree_control along the way; in a delegated
//     subtree it expects the delegator to have done so, and rdev itself to
//     run inside the delegated group (in a leaf beside parent), since the
//     kernel lets an unprivileged user move a process only between groups
//     below one whose cgroup.procs it can write;
//   - cgroup v1, when the memory and pids hierarchies are mounted at
//     root/memory and root/pids and root/<controller>/parent can be made
//     and written there (cpu and freezer are used when they can be too);
//   - rlimits otherwise.
//
// root is the cgroup mount root, "/sys/fs/cgroup" on a real host. parent is
// the relative path of rdev's subtree below it in every hierarchy: "rdev"
// when running as root, or a group delegated to rdev's user (see
// .ci/delegate-cgroups). NewManager creates parent where it is missing.
//
// It fails only with ErrInvalid for a malformed parent: a host where
// cgroups cannot be used gives a Manager in ModeRlimit, and Reason says why.
func NewManager(root, parent string) (*Manager, error) {
	if err := checkParent(parent); err != nil {
		return nil, err
	}
	var why []string
	mount := ""
	if exists(filepath.Join(root, "cgroup.controllers")) {
		mount = root
	} else if exists(filepath.Join(root, "unified", "cgroup.controllers")) {
		mount = filepath.Join(root, "unified")
	}
	if mount != "" {
		dir, cpu, note, err := setupV2(mount, parent, selfV2())
		if err == nil {
			ctrls := "memory, pids"
			if cpu {
				ctrls += ", cpu"
			}
			reason := fmt.Sprintf("cgroup v2 at %s (%s)", dir, ctrls)
			return &Manager{mode: ModeCgroup2, reason: joinNotes(reason, note), dirs: []hier{{"", dir}}, cpu: cpu}, nil
		}
		why = append(why, err.Error())
	} else {
		why = append(why, "no cgroup v2 mount at "+root)
	}
	dirs, notes, err := setupV1(root, parent)
	if err == nil {
		var ctrls []string
		for _, h := range dirs {
			ctrls = append(ctrls, h.ctrl)
		}
		reason := fmt.Sprintf("cgroup v1 at %s/{%s}/%s", root, strings.Join(ctrls, ","), parent)
		if mount != "" {
			notes = append(notes, "cgroup v2 is not used: "+why[0])
		}
		m := &Manager{mode: ModeCgroup1, dirs: dirs, reason: joinNotes(reason, notes...)}
		m.cpu = slices.ContainsFunc(dirs, func(h hier) bool { return h.ctrl == "cpu" })
		return m, nil
	}
	why = append(why, err.Error())
	return &Manager{mode: ModeRlimit, reason: joinNotes("rlimits only, no cgroup is usable", why...)}, nil
}

func joinNotes(s string, notes ...string) string {
	for _, n := range notes {
		if n != "" {
			s += "; " + n
		}
	}
	return s
}

// Mode says how the Manager enforces limits.
func (m *Manager) Mode() Mode { return m.mode }

// Reason says in a sentence why the Manager chose its mode and what it does
// not enforce (for the server's log at start-up and for an operator).
func (m *Manager) Reason() string { return m.reason }

// Create makes the group of a sandbox, in every hierarchy used, and writes
// s into it. It is idempotent: for an existing name it rewrites the limits,
// which may then be tighter or looser. In ModeRlimit nothing is made: the
// Group carries s for Enter. Create fails with ErrInvalid for a name that is
// not a single directory name (see Open) or a negative Spec, and with the
// kernel's error when a control file refuses a value (for instance a memory
// limit below what the group already uses).
func (m *Manager) Create(name string, s Spec) (*Group, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	g, err := m.Open(name)
	if err != nil {
		return nil, err
	}
	if m.mode == ModeRlimit {
		g.spec = s
		return g, nil
	}
	for _, h := range g.dirs {
		if err := os.Mkdir(h.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("limits: creating group %s: %w", name, err)
		}
		var err error
		if m.mode == ModeCgroup2 {
			err = applyV2(h.dir, s, m.cpu)
		} else {
			err = applyV1(h, s)
		}
		if err != nil {
			return nil, fmt.Errorf("limits: group %s: %w", name, err)
		}
	}
	return g, nil
}

// Open returns the group of a sandbox without creating it or reading it,
// for Pids, Kill and Remove of a group made earlier, possibly by a previous
// run of the server. In ModeRlimit the Group carries no limits (Create's
// does). Open fails with ErrInvalid unless name is 1 to 128 letters,
// digits, '.', '_' or '-', the first a letter or a digit.
func (m *Manager) Open(name string) (*Group, error) {
	if !validName(name) {
		return nil, fmt.Errorf("%w: group name %q", ErrInvalid, name)
	}
	g := &Group{mode: m.mode}
	for _, h := range m.dirs {
		g.dirs = append(g.dirs, hier{h.ctrl, filepath.Join(h.dir, name)})
	}
	return g, nil
}

// Sweep removes (as Group.Remove does) every group under the parent for
// which keep returns false: what a crashed server left of sandboxes that no
// longer live. It never removes a group holding the calling process, so a
// server started inside its own parent by mistake does not kill itself.
// Entries whose names Open would refuse are not rdev's and are left alone.
// In ModeRlimit there are no groups and Sweep does nothing. The error joins
// the failures of every group it could not remove.
func (m *Manager) Sweep(keep func(name string) bool) error {
	seen := map[string]bool{}
	var errs []error
	self := os.Getpid()
	for _, h := range m.dirs {
		names, err := subdirs(h.dir)
		if err != nil {
			errs = append(errs, err)
		}
		for _, name := range names {
			if seen[name] || !validName(name) {
				continue
			}
			seen[name] = true
			if keep(name) {
				continue
			}
			g, _ := m.Open(name)
			if pids, err := g.Pids(); err == nil && slices.Contains(pids, self) {
				continue
			}
			if err := g.Remove(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
