package sandbox

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// DefaultUser is the user sandboxes run as when rdev runs as root and
// --sandbox-user names none: nobody/nogroup, which owns nothing.
const DefaultUser = "65534:65534"

// Credential is the unprivileged user and group sandboxed processes run as
// when rdev runs as root. A nil *Credential means "as rdev's own user"
// (rdev is not root, so its user is unprivileged already).
type Credential struct {
	UID, GID uint32
}

// ResolveUser reads --sandbox-user: "name", "name:group", "uid" or
// "uid:gid". It returns nil when rdev is not root (there is no user to
// switch to; a value other than rdev's own is then an error). Root (uid
// 0) is refused.
func ResolveUser(spec string, euid int) (*Credential, error) {
	if spec == "" {
		spec = DefaultUser
	}
	name, group, _ := strings.Cut(spec, ":")
	uid, gid, err := lookupIDs(name, group)
	if err != nil {
		return nil, fmt.Errorf("--sandbox-user %q: %w", spec, err)
	}
	if uid == 0 || gid == 0 {
		return nil, fmt.Errorf("--sandbox-user %q: sandboxes never run as root or group root; name an unprivileged user", spec)
	}
	if euid != 0 {
		if spec != DefaultUser && int(uid) != euid {
			return nil, fmt.Errorf("--sandbox-user %q: rdev runs as uid %d, not root, so sandboxes run as that uid; drop --sandbox-user or start rdev as root", spec, euid)
		}
		return nil, nil
	}
	return &Credential{UID: uid, GID: gid}, nil
}

func lookupIDs(name, group string) (uint32, uint32, error) {
	var uid, gid uint64
	var err error
	if uid, err = strconv.ParseUint(name, 10, 32); err != nil {
		u, lerr := user.Lookup(name)
		if lerr != nil {
			return 0, 0, fmt.Errorf("no such user")
		}
		uid, _ = strconv.ParseUint(u.Uid, 10, 32)
		gid, _ = strconv.ParseUint(u.Gid, 10, 32)
	} else {
		gid = uid
	}
	if group != "" {
		if gid, err = strconv.ParseUint(group, 10, 32); err != nil {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return 0, 0, fmt.Errorf("no such group")
			}
			gid, _ = strconv.ParseUint(g.Gid, 10, 32)
		}
	}
	return uint32(uid), uint32(gid), nil
}

// sysProcAttr starts a process as c (no supplementary groups), or as the
// caller when c is nil; in its own process group either way.
func (c *Credential) sysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if c != nil {
		a.Credential = &syscall.Credential{Uid: c.UID, Gid: c.GID, Groups: []uint32{}}
	}
	return a
}

// SysProcAttr is sysProcAttr for callers outside the package.
func (c *Credential) SysProcAttr() *syscall.SysProcAttr { return c.sysProcAttr() }

// Own gives dir and everything under it to c (a no-op for nil): a
// workspace rdev made as root becomes the sandbox's. Symbolic links are
// changed, never followed.
func (c *Credential) Own(dir string) error {
	if c == nil {
		return nil
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok && st.Uid == c.UID && st.Gid == c.GID {
			return nil
		}
		return os.Lchown(p, int(c.UID), int(c.GID))
	})
}

// MkdirOwned makes dir (mode 0700) owned by c.
func (c *Credential) MkdirOwned(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if c == nil {
		return nil
	}
	return os.Lchown(dir, int(c.UID), int(c.GID))
}
