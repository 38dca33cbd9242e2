package limits

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// cgroup v1 (Documentation/admin-guide/cgroup-v1/ in the kernel's sources):
// one hierarchy per controller, mounted at <root>/<controller>, and a
// sandbox has a group of the same name in each.

// v1Controller is a hierarchy rdev uses, with a file that only a group of
// that controller has (so that a directory of another kind is refused).
type v1Controller struct {
	name, probe string
	required    bool
}

var v1Controllers = []v1Controller{
	{"memory", "memory.limit_in_bytes", true},
	{"pids", "pids.max", true},
	{"cpu", "cpu.cfs_quota_us", false},
	// freezer makes Kill race-free against forks; without it Kill signals
	// again and again until the group is empty.
	{"freezer", "freezer.state", false},
}

// setupV1 prepares <root>/<controller>/<parent> in each hierarchy, returning
// them and notes on the optional ones it could not use.
func setupV1(root, parent string) (dirs []hier, notes []string, err error) {
	var made []string
	defer func() {
		if err != nil {
			rmdirs(made)
		}
	}()
	for _, c := range v1Controllers {
		dir, m, err := setupV1Controller(root, parent, c)
		made = append(made, m...)
		switch {
		case err == nil:
			dirs = append(dirs, hier{c.name, dir})
		case c.required:
			return nil, nil, err
		default:
			notes = append(notes, c.name+" is not used: "+err.Error())
		}
	}
	return dirs, notes, nil
}

func setupV1Controller(root, parent string, c v1Controller) (dir string, made []string, err error) {
	mount := filepath.Join(root, c.name)
	// A v1 hierarchy's root has "tasks"; a v2 mount has none.
	if !exists(filepath.Join(mount, "tasks")) {
		return "", nil, fmt.Errorf("no cgroup v1 %s hierarchy at %s", c.name, mount)
	}
	dir = filepath.Join(mount, parent)
	made, err = mkdirs(dir)
	if err != nil {
		return "", made, err
	}
	if !exists(filepath.Join(dir, c.probe)) {
		return "", made, fmt.Errorf("%s is not a group of the %s controller (no %s)", dir, c.name, c.probe)
	}
	if err := writable(dir); err != nil {
		return "", made, err
	}
	if c.name == "memory" {
		// Charge what a sandbox's own subgroups use to its group, on the
		// kernels where this is still a choice (it is always on since 5.x).
		// New groups inherit the setting, so the parent's is what matters.
		useHierarchy(dir)
	}
	return dir, made, nil
}

func useHierarchy(dir string) {
	f := filepath.Join(dir, "memory.use_hierarchy")
	if v, err := readFile(f); err == nil && v == "0" {
		writeFile(f, "1") // refused when an ancestor already has it, in which case it is inherited
	}
}

// applyV1 writes s into a sandbox's group of one hierarchy.
func applyV1(h hier, s Spec) error {
	set := func(file, value string) error { return writeFile(filepath.Join(h.dir, file), value) }
	switch h.ctrl {
	case "memory":
		useHierarchy(h.dir)
		// The OOM killer must act inside the group: with it disabled the
		// group's processes would hang at the limit instead.
		if err := set("memory.oom_control", "0"); err != nil {
			return err
		}
		limit := int64(-1)
		if s.MemoryBytes > 0 {
			limit = s.MemoryBytes
		}
		return setMemoryV1(h.dir, limit)
	case "pids":
		return set("pids.max", maxOr(int64(s.PIDs)))
	case "cpu":
		if err := set("cpu.cfs_period_us", strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
		quota := int64(-1)
		if s.CPU > 0 {
			quota = cpuQuota(s.CPU)
		}
		return set("cpu.cfs_quota_us", strconv.FormatInt(quota, 10))
	case "freezer":
		// A group reused after a crash in the middle of Kill may still be
		// frozen.
		return set("freezer.state", "THAWED")
	}
	return nil
}

// setMemoryV1 sets the memory limit, and the memory+swap limit to the same
// value when the kernel accounts swap, so that swapping out does not
// stretch the limit. The kernel keeps memsw >= memory at every step: when
// the limit grows, memsw must move first.
func setMemoryV1(dir string, limit int64) error {
	mem := filepath.Join(dir, "memory.limit_in_bytes")
	memsw := filepath.Join(dir, "memory.memsw.limit_in_bytes")
	v := strconv.FormatInt(limit, 10)
	if !exists(memsw) {
		return writeFile(mem, v)
	}
	err := writeFile(mem, v)
	if errors.Is(err, unix.EINVAL) {
		if err := writeFile(memsw, v); err != nil {
			return err
		}
		return writeFile(mem, v)
	}
	if err != nil {
		return err
	}
	return writeFile(memsw, v)
}
