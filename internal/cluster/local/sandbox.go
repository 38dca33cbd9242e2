package local

import (
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
)

// Sandbox modes (SPEC §7 --sandbox).
const (
	SandboxAuto  = "auto" // bubblewrap when usable, else none
	SandboxBwrap = "bwrap"
	SandboxNone  = "none"
)

// ResolveSandbox turns a --sandbox value into "bwrap" or "none": auto
// probes bubblewrap; bwrap insists on it.
func ResolveSandbox(mode string) (string, error) {
	switch mode {
	case SandboxNone:
		return SandboxNone, nil
	case SandboxAuto, SandboxBwrap:
		err := probeBwrap()
		if err == nil {
			return SandboxBwrap, nil
		}
		if mode == SandboxBwrap {
			return "", fmt.Errorf("--sandbox bwrap: bubblewrap is not usable here: %w", err)
		}
		return SandboxNone, nil
	}
	return "", fmt.Errorf("--sandbox must be auto, bwrap or none, not %q", mode)
}

func probeBwrap() error {
	path, err := exec.LookPath("bwrap")
	if err != nil {
		return errors.New("bwrap is not installed (Debian: apt-get install bubblewrap)")
	}
	out, err := exec.Command(path, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "--die-with-parent", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// wrap returns argv run inside bubblewrap: the whole filesystem read-only,
// rdev's data directory hidden (other projects' pods and repositories, the
// database, keys), the project's repository readable (a workspace borrows
// its objects), rw the directory the process works in, a private /tmp, its
// own PID namespace (it cannot see or signal the server), dying with rdev.
// The network is shared so that previews work.
func (c *Cluster) wrap(argv []string, projectID, rw, cwd string) []string {
	if c.cfg.Sandbox != SandboxBwrap {
		return argv
	}
	repo := c.cfg.RepoPath(projectID)
	out := []string{"bwrap",
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		"--proc", "/proc",
		"--tmpfs", "/tmp",
	}
	if c.cfg.DataDir != "" {
		out = append(out, "--tmpfs", c.cfg.DataDir)
	}
	if c.cfg.Executable != "" {
		out = append(out, "--ro-bind", c.cfg.Executable, c.cfg.Executable)
	}
	out = append(out,
		"--ro-bind", repo, repo,
		"--bind", rw, rw,
		"--unshare-pid", "--die-with-parent",
		"--chdir", cwd,
		"--")
	return append(out, argv...)
}

// mustAbs makes p absolute (bubblewrap wants absolute paths).
func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Sandboxed wraps argv to run as a project's commands do (in bubblewrap
// when the cluster uses it): dir read-write, the project's repository
// read-only, rdev's data directory hidden. Review workers use it.
func (c *Cluster) Sandboxed(argv []string, projectID, dir string) []string {
	return c.wrap(argv, projectID, dir, dir)
}

// Sandboxer is Sandboxed for cfg without a cluster: what review workers use
// when projects run elsewhere.
func Sandboxer(cfg Config) func(argv []string, projectID, dir string) []string {
	return (&Cluster{cfg: cfg}).Sandboxed
}
