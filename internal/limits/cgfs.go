package limits

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// writeFile writes value to a cgroup control file in a single write, as the
// kernel parses each write on its own. It never creates the file: a missing
// control file means the controller is absent, which must show as an error
// rather than as a stray regular file.
func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", value, path, err)
	}
	return nil
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// words reads a space-separated list file such as cgroup.controllers.
func words(path string) (map[string]bool, error) {
	s, err := readFile(path)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, w := range strings.Fields(s) {
		set[w] = true
	}
	return set, nil
}

// keyed reads the value of key from a flat-keyed file ("oom_kill 3" lines,
// as in memory.events and memory.oom_control). found is false when the
// kernel does not report key.
func keyed(path, key string) (n int, found bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				return 0, false, fmt.Errorf("%s: %s: %w", path, key, err)
			}
			return n, true, nil
		}
	}
	return 0, false, nil
}

// readPids adds to set the processes of dir's cgroup.procs and of its
// descendants' (rdev never makes groups below a sandbox's, but a process
// with access to the cgroup file system could). A missing dir adds nothing.
func readPids(dir string, set map[int]bool) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(string(b)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return fmt.Errorf("%s/cgroup.procs: %w", dir, err)
		}
		set[pid] = true
	}
	subs, err := subdirs(dir)
	for _, s := range subs {
		if err := readPids(filepath.Join(dir, s), set); err != nil {
			return err
		}
	}
	return err
}

// subdirs lists the child groups of dir; none when dir is missing.
func subdirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names, err
}

// mkdirs creates dir and its missing ancestors, returning the ones it made
// (outermost first) so that a failed setup can take them back.
func mkdirs(dir string) ([]string, error) {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return nil, fmt.Errorf("%s: not a directory", dir)
		}
		return nil, nil
	}
	made, err := mkdirs(filepath.Dir(dir))
	if err != nil {
		return made, err
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return made, err
	}
	return append(made, dir), nil
}

// rmdirs removes dirs made by mkdirs, innermost first, ignoring failures:
// it only tidies up after a failed setup.
func rmdirs(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		unix.Rmdir(dirs[i])
	}
}

// rmdirTree removes a group and any groups below it. rmdir of a cgroup
// fails with EBUSY while a process is still being torn down, so it retries
// until deadline. A missing dir is already removed.
func rmdirTree(dir string, deadline time.Time) error {
	subs, err := subdirs(dir)
	if err != nil {
		return err
	}
	for _, s := range subs {
		if err := rmdirTree(filepath.Join(dir, s), deadline); err != nil {
			return err
		}
	}
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		err := unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("removing %s: %w", dir, err)
		}
		time.Sleep(wait)
	}
}

// writable says whether the calling process may write path, by its
// effective ids as the kernel will check them (access(2) uses the real ones).
func writable(path string) error {
	if err := unix.Faccessat(unix.AT_FDCWD, path, unix.W_OK, unix.AT_EACCESS); err != nil {
		return &fs.PathError{Op: "write access", Path: path, Err: err}
	}
	return nil
}
