package sandbox

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest path a unix socket address holds here
// (sun_path is 108 bytes with its terminating NUL).
const maxSocketPath = 107

// shortPath calls use with a path naming the same socket as path, short
// enough for a unix socket address: path itself when it fits, else
// /proc/self/fd/<n>/<name> through a descriptor of its directory, open
// for the duration of use. rdev's data directory may lie deep (a test's
// temporary directory, a home directory), and the sockets of pods and
// reviews lie under it.
func shortPath(path string, use func(string) error) error {
	if len(path) <= maxSocketPath {
		return use(path)
	}
	dir, err := os.OpenFile(filepath.Dir(path), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer dir.Close()
	short := "/proc/self/fd/" + strconv.Itoa(int(dir.Fd())) + "/" + filepath.Base(path)
	if len(short) > maxSocketPath {
		return fmt.Errorf("unix socket %s: its name is too long even through /proc/self/fd", path)
	}
	return use(short)
}

// ListenUnix listens on the unix socket path, however long the path.
// The listener's address is the short name it was bound with; the socket
// file is at path, and closing the listener removes it.
func ListenUnix(path string) (net.Listener, error) {
	var ln net.Listener
	err := shortPath(path, func(p string) error {
		var err error
		ln, err = net.Listen("unix", p)
		return err
	})
	if err != nil {
		return nil, err
	}
	if ul, ok := ln.(*net.UnixListener); ok && len(path) > maxSocketPath {
		// The short name means nothing once its descriptor is closed:
		// rdev removes the file itself.
		ul.SetUnlinkOnClose(false)
		return &unlinking{UnixListener: ul, path: path}, nil
	}
	return ln, nil
}

type unlinking struct {
	*net.UnixListener
	path string
}

func (l *unlinking) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}

// DialUnix connects to the unix socket path, however long the path.
func DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var c net.Conn
	err := shortPath(path, func(p string) error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "unix", p)
		return err
	})
	return c, err
}
