// Package sandboxtest lets a test binary stand in for rdev at a sandbox's
// edge: the pod's agent, the resource-group stage, the reaper.
package sandboxtest

import (
	"os"
	"testing"

	"rdev.dev/rdev/internal/sandbox"
)

// Main runs the sandbox helper that os.Args names, if any, and exits;
// otherwise it runs the tests. Call it from TestMain.
func Main(m *testing.M) {
	if code, ok := sandbox.RunHelper(os.Args[1:]); ok {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// Executable is the binary sandboxes start their helpers from: the test
// binary itself.
func Executable(t testing.TB) string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// User is who sandboxes run as in tests: nobody when the tests run as
// root, the tests' own user otherwise.
func User(t testing.TB) *sandbox.Credential {
	u, err := sandbox.ResolveUser("", os.Geteuid())
	if err != nil {
		t.Fatal(err)
	}
	return u
}
