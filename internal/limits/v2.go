package limits

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// cgroup v2 (Documentation/admin-guide/cgroup-v2.rst in the kernel's
// sources): one hierarchy; a controller reaches a group only when every
// ancestor lists it in cgroup.subtree_control; a group other than the root
// cannot both hold processes and enable controllers for its children.

// v2Required are the controllers without which v2 is not used.
var v2Required = []string{"memory", "pids"}

// setupV2 prepares <mount>/<parent> so that groups made below it get the
// memory and pids controllers, and cpu when it can be had. self is the
// calling process's v2 group ("/system.slice/rdev.service"), from
// /proc/self/cgroup. It returns the parent's directory, whether cpu is
// enabled, and a note on what is missing when it is not.
func setupV2(mount, parent, self string) (dir string, cpu bool, note string, err error) {
	avail, err := words(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return "", false, "", err
	}
	if missing := without(v2Required, avail); len(missing) > 0 {
		return "", false, "", fmt.Errorf("cgroup v2 at %s has no %s controller (bound to cgroup v1, or not built)", mount, strings.Join(missing, " or "))
	}
	cpu = avail["cpu"]
	if !cpu {
		note = "cpu is not limited: cgroup v2 at " + mount + " has no cpu controller"
	}
	if err := checkContainment(mount, parent, self); err != nil {
		return "", false, "", err
	}
	var made []string
	defer func() {
		if err != nil {
			rmdirs(made)
		}
	}()
	dir = mount
	comps := strings.Split(parent, "/")
	for i := 0; ; i++ {
		want := v2Required
		if cpu {
			want = append(slices.Clip(want), "cpu")
		}
		if err := enable(dir, want); err != nil {
			if !cpu {
				return "", false, "", err
			}
			// Without cpu, still worth a try: memory and pids are what
			// keeps the host alive.
			if err2 := enable(dir, v2Required); err2 != nil {
				return "", false, "", err2
			}
			cpu, note = false, "cpu is not limited: "+err.Error()
		}
		if i == len(comps) {
			break
		}
		dir = filepath.Join(dir, comps[i])
		m, err := mkdirs(dir)
		made = append(made, m...)
		if err != nil {
			return "", false, "", err
		}
	}
	if err := writable(dir); err != nil {
		return "", false, "", err
	}
	return dir, cpu, note, nil
}

// checkContainment fails when the calling process, in the group self, could
// not move processes into groups below parent. The kernel lets an
// unprivileged user move a process only between two groups whose common
// ancestor's cgroup.procs it can write (delegation containment): a server
// running outside its delegated subtree could create groups but never put
// anything in them.
func checkContainment(mount, parent, self string) error {
	common := commonAncestor(self, parent)
	if err := writable(filepath.Join(mount, common, "cgroup.procs")); err != nil {
		return fmt.Errorf("rdev runs in cgroup %s, outside %s: cgroup v2 moves processes only below a group "+
			"the mover can write (%w); start rdev in a leaf group inside the delegated one", self, parent, err)
	}
	return nil
}

// enable makes the controllers of want available to dir's children, writing
// cgroup.subtree_control only when one is missing: in a delegated subtree
// the ancestors are not rdev's to write, and are expected to be set up.
func enable(dir string, want []string) error {
	have, err := words(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return err
	}
	avail, err := words(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return err
	}
	var add []string
	for _, c := range without(want, have) {
		if !avail[c] {
			return fmt.Errorf("%s: the %s controller is not enabled for it by its parent", dir, c)
		}
		add = append(add, "+"+c)
	}
	if len(add) == 0 {
		return nil
	}
	err = writeFile(filepath.Join(dir, "cgroup.subtree_control"), strings.Join(add, " "))
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w (%s holds processes of its own: cgroup v2 enables controllers only for groups without; move them into a leaf group)", err, dir)
	}
	return err
}

// applyV2 writes s into a sandbox's group. Swap is closed when memory is
// bounded, so that the limit is not stretched by swapping out.
func applyV2(dir string, s Spec, cpu bool) error {
	set := func(file, value string) error { return writeFile(filepath.Join(dir, file), value) }
	if err := set("memory.max", maxOr(s.MemoryBytes)); err != nil {
		return err
	}
	if exists(filepath.Join(dir, "memory.swap.max")) {
		swap := "max"
		if s.MemoryBytes > 0 {
			swap = "0"
		}
		if err := set("memory.swap.max", swap); err != nil {
			return err
		}
	}
	if err := set("pids.max", maxOr(int64(s.PIDs))); err != nil {
		return err
	}
	if cpu {
		quota := "max"
		if s.CPU > 0 {
			quota = strconv.FormatInt(cpuQuota(s.CPU), 10)
		}
		if err := set("cpu.max", quota+" "+strconv.Itoa(cpuPeriod)); err != nil {
			return err
		}
	}
	return nil
}

// cpuPeriod is the CFS period, in microseconds, of every group.
const cpuPeriod = 100000

// cpuQuota is the CPU time, in microseconds per period, of cpus CPUs; the
// kernel refuses less than 1 ms.
func cpuQuota(cpus float64) int64 {
	return max(int64(math.Round(cpus*cpuPeriod)), 1000)
}

func maxOr(n int64) string {
	if n <= 0 {
		return "max"
	}
	return strconv.FormatInt(n, 10)
}

// without returns the items of want missing from have.
func without(want []string, have map[string]bool) []string {
	var out []string
	for _, w := range want {
		if !have[w] {
			out = append(out, w)
		}
	}
	return out
}

// commonAncestor returns the deepest group containing both the group self
// ("/a/b", as in /proc/self/cgroup) and the relative group rel ("a/c"), as
// a relative path ("a"; "." for the root).
func commonAncestor(self, rel string) string {
	s := strings.Split(strings.Trim(self, "/"), "/")
	r := strings.Split(rel, "/")
	n := 0
	for n < len(s) && n < len(r) && s[n] == r[n] && s[n] != "" {
		n++
	}
	if n == 0 {
		return "."
	}
	return filepath.Join(r[:n]...)
}

// selfV2 returns the calling process's group in the v2 hierarchy (the
// "0::" line of /proc/self/cgroup), "/" when there is none.
func selfV2() string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "/"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	return "/"
}
