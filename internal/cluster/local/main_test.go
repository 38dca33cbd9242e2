package local_test

import (
	"io"
	"os"
	"testing"

	"rdev.dev/rdev/internal/sandbox"
	"rdev.dev/rdev/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func testExecutable(t testing.TB) string        { return sandboxtest.Executable(t) }
func testUser(t testing.TB) *sandbox.Credential { return sandboxtest.User(t) }

// testLogOut is where test clusters log: nowhere, unless RDEV_TEST_LOG=1.
func testLogOut() io.Writer {
	if os.Getenv("RDEV_TEST_LOG") == "1" {
		return os.Stderr
	}
	return io.Discard
}
