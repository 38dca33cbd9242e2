package sandbox_test

import (
	"os"
	"testing"

	"rdev.dev/rdev/internal/sandbox"
	"rdev.dev/rdev/internal/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { sandboxtest.Main(m) }

func requireBwrap(t testing.TB) *sandbox.Credential {
	t.Helper()
	u, err := sandbox.ResolveUser("", os.Geteuid())
	if err != nil {
		t.Fatal(err)
	}
	if err := sandbox.Probe(u); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("bubblewrap is not usable (CI=true forbids skipping): %v", err)
		}
		t.Skipf("bubblewrap is not usable here: %v", err)
	}
	return u
}
