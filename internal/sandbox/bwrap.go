package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Bind is one host path made visible in a sandbox.
type Bind struct {
	Src string
	Dst string // Src when empty
	RW  bool
}

// Spec is what one bubblewrap sandbox sees and shares. Nothing of the host
// is visible but the system directories (SystemArgs) and the binds listed
// here; every namespace is new, capabilities are dropped, and no process
// inside can gain privileges (bubblewrap sets no_new_privs).
type Spec struct {
	Binds []Bind
	// Tmp is the host directory mounted at /tmp (a private tmpfs when "").
	Tmp string
	// Hide are paths replaced by an empty tmpfs: a directory of a bind that
	// must not be seen (rdev's data directory when it lies under a system
	// directory).
	Hide  []string
	Chdir string
	// ShareNet keeps the network namespace of the caller: a process of a
	// pod shares the pod's. Otherwise the sandbox has one of its own with
	// only loopback.
	ShareNet bool
	// DieWithParent kills the sandbox when the process that started it
	// dies.
	DieWithParent bool
	// Hostname of the sandbox's UTS namespace ("rdev" when "").
	Hostname string
	// DropTo is set when bubblewrap runs as root (rdev does): the sandbox
	// is then made without a user namespace, and its first process drops
	// to this user with setpriv — every capability set emptied, no
	// supplementary group, no_new_privs — before anything else runs. Its
	// files are checked against that real, unprivileged uid.
	DropTo *Credential
	// Env is the sandboxed process's environment. bubblewrap and setpriv,
	// which run privileged, never see it (they start with a fixed
	// environment and --clearenv); it is set by env(1) after the drop, so
	// nothing in it (PATH, LD_PRELOAD) can reach a privileged program.
	Env []string
	// Root keeps root in the sandbox (bubblewrap run as root, no user
	// namespace, no setpriv): only for the pod's agent, rdev's own code,
	// which starts the nested sandboxes (each with DropTo) as root would.
	Root bool
}

// Args returns the bubblewrap command line running argv in the sandbox.
func (s Spec) Args(argv []string) []string {
	out := append([]string{"bwrap"}, SystemArgs()...)
	// A bind under /tmp (rdev's data directory there) would need its
	// mount point made inside the bound directory, where bubblewrap makes
	// it unreadable to the sandbox's user: then /tmp is a private tmpfs.
	underTmp := false
	for _, b := range s.Binds {
		dst := b.Dst
		if dst == "" {
			dst = b.Src
		}
		underTmp = underTmp || strings.HasPrefix(dst, "/tmp/")
	}
	if s.Tmp != "" && !underTmp {
		out = append(out, "--bind", s.Tmp, "/tmp")
	} else {
		out = append(out, "--perms", "01777", "--tmpfs", "/tmp")
	}
	// Hidden directories first: the binds below may lie inside them (a
	// workspace inside rdev's data directory under /opt).
	for _, h := range s.Hide {
		out = append(out, "--tmpfs", h)
	}
	var dsts []string
	for _, b := range s.Binds {
		dst := b.Dst
		if dst == "" {
			dst = b.Src
		}
		flag := "--ro-bind"
		if b.RW {
			flag = "--bind"
		}
		out = append(out, flag, b.Src, dst)
		dsts = append(dsts, dst)
	}
	// bubblewrap makes the missing parents of a mount point private to
	// root; the sandbox's user must be able to walk to its workspace.
	for _, d := range parentsToOpen(dsts) {
		out = append(out, "--chmod", "0755", d)
	}
	host := s.Hostname
	if host == "" {
		host = "rdev"
	}
	if s.DropTo == nil && !s.Root {
		out = append(out, "--unshare-user", "--cap-drop", "ALL")
	}
	if s.Env != nil {
		out = append(out, "--clearenv")
	}
	out = append(out, "--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try", "--hostname", host)
	if !s.ShareNet {
		out = append(out, "--unshare-net")
	}
	if s.DieWithParent {
		out = append(out, "--die-with-parent")
	}
	if s.Chdir != "" {
		out = append(out, "--chdir", s.Chdir)
	}
	out = append(out, "--")
	if c := s.DropTo; c != nil {
		out = append(out, "/usr/bin/setpriv", "--reuid="+strconv.FormatUint(uint64(c.UID), 10), "--regid="+strconv.FormatUint(uint64(c.GID), 10),
			"--clear-groups", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs", "--")
	}
	if s.Env != nil {
		out = append(append(out, "/usr/bin/env", "-i"), s.Env...)
	}
	return append(out, argv...)
}

var (
	systemOnce sync.Once
	systemArgs []string
)

// Secrets of the host masked inside every sandbox, even where permissions
// would already refuse them (a sandbox of a server run as a user that may
// read them).
var hostSecrets = []string{"/etc/shadow", "/etc/shadow-", "/etc/gshadow", "/etc/gshadow-", "/etc/sudoers",
	"/etc/sudoers.d", "/etc/ssl/private", "/etc/ssh", "/etc/rdev"}

// SystemArgs are the bubblewrap arguments of the system view every sandbox
// shares: /usr, /etc (its secrets masked) and /opt read-only, the
// top-level links or directories of a merged-/usr or classic layout, a
// minimal /dev and a /proc of the sandbox's own PID namespace. Home
// directories, /root, /var, /srv, /mnt and /media are not there at all.
func SystemArgs() []string {
	systemOnce.Do(func() {
		var a []string
		for _, d := range []string{"/usr", "/etc", "/opt"} {
			if fi, err := os.Stat(d); err == nil && fi.IsDir() {
				a = append(a, "--ro-bind", d, d)
			}
		}
		for _, d := range []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
			fi, err := os.Lstat(d)
			switch {
			case err != nil:
			case fi.Mode()&os.ModeSymlink != 0:
				if target, err := os.Readlink(d); err == nil {
					a = append(a, "--symlink", target, d)
				}
			case fi.IsDir():
				a = append(a, "--ro-bind", d, d)
			}
		}
		for _, p := range hostSecrets {
			fi, err := os.Lstat(p)
			switch {
			case err != nil:
			case fi.IsDir():
				a = append(a, "--tmpfs", p)
			default:
				a = append(a, "--ro-bind", "/dev/null", p)
			}
		}
		a = append(a, "--dev", "/dev", "--proc", "/proc", "--perms", "01777", "--dir", "/var/tmp", "--dir", "/run")
		systemArgs = a
	})
	return systemArgs
}

// parentsToOpen lists the parents of the mount points dsts that a
// sandbox's root has only because bubblewrap made them: not a mount
// point, not inside one, not a directory of the system view.
func parentsToOpen(dsts []string) []string {
	inside := func(p string) bool {
		for _, d := range dsts {
			if p == d || strings.HasPrefix(p, d+"/") {
				return true
			}
		}
		for _, d := range []string{"/usr", "/etc", "/opt", "/dev", "/proc", "/tmp", "/var/tmp", "/run"} {
			if p == d || strings.HasPrefix(p, d+"/") && d != "/tmp" {
				return true
			}
		}
		return false
	}
	seen := map[string]bool{}
	var out []string
	for _, d := range dsts {
		var chain []string
		for p := filepath.Dir(d); p != "/" && p != "."; p = filepath.Dir(p) {
			if inside(p) || seen[p] {
				break
			}
			seen[p] = true
			chain = append(chain, p)
		}
		for i := len(chain) - 1; i >= 0; i-- {
			out = append(out, chain[i])
		}
	}
	return out
}

// Hidden returns the paths among candidates that lie inside the system
// view (so a Spec must Hide them): rdev's data directory under /opt, say.
func Hidden(candidates ...string) []string {
	var out []string
	for _, c := range candidates {
		if c == "" {
			continue
		}
		for _, d := range []string{"/usr", "/etc", "/opt"} {
			if c == d || strings.HasPrefix(c, d+"/") {
				out = append(out, c)
				break
			}
		}
	}
	return out
}

// Probe checks that bubblewrap can make a sandbox here as the calling
// user (or as cred's user when rdev runs as root): with a user, PID and
// network namespace, and bubblewrap nested in it (how a pod's processes
// are started). The error says how to fix what is missing.
func Probe(cred *Credential) error {
	path, err := exec.LookPath("bwrap")
	if err != nil {
		return errors.New("bubblewrap is not installed: install it (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap) or start rdev with --sandbox none to run project code unconfined")
	}
	if cred != nil {
		if _, err := exec.LookPath("setpriv"); err != nil {
			return errors.New("setpriv is not installed (rdev runs as root and drops to --sandbox-user with it): install util-linux, or start rdev with --sandbox none")
		}
	}
	inner := Spec{ShareNet: true}.Args([]string{"/bin/true"})
	inner[0] = path
	if cred != nil {
		inner = Spec{ShareNet: true, DropTo: cred}.Args([]string{"/bin/true"})
		inner[0] = path
	}
	argv := Spec{DieWithParent: true, Root: cred != nil}.Args(inner)
	argv[0] = path
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = NewEnv("/").List()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("bubblewrap cannot make a sandbox here (%v: %s): user namespaces must be enabled (sysctl user.max_user_namespaces > 0; kernel.unprivileged_userns_clone=1 where it exists; on Ubuntu 24.04 an AppArmor profile allowing bwrap to use them), or start rdev with --sandbox none",
			err, strings.TrimSpace(string(out)))
	}
	return nil
}

// mustAbs makes p absolute (bubblewrap wants absolute paths).
func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
