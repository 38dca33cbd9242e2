package httpapi_test

import (
	"testing"

	"rdev.dev/rdev/internal/sandbox"
	"rdev.dev/rdev/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func testExecutable(t testing.TB) string        { return sandboxtest.Executable(t) }
func testUser(t testing.TB) *sandbox.Credential { return sandboxtest.User(t) }
