package sandbox_test

import (
	"slices"
	"testing"

	"rdev.dev/rdev/internal/sandbox"
)

// A hidden directory is masked before the binds that lie inside it, or
// the mask would cover them (rdev's data directory under /opt, with the
// workspace inside it).
func TestHideComesBeforeTheBinds(t *testing.T) {
	args := sandbox.Spec{Hide: []string{"/opt/rdev"}, Binds: []sandbox.Bind{{Src: "/opt/rdev/pods/p/sessions/s", RW: true}}}.Args([]string{"true"})
	hide := slices.Index(args, "/opt/rdev")
	bind := slices.Index(args, "/opt/rdev/pods/p/sessions/s")
	if hide < 0 || bind < 0 || args[hide-1] != "--tmpfs" || hide > bind {
		t.Fatalf("hide at %d, bind at %d: %q", hide, bind, args)
	}
}

// The process's environment is applied only after the drop of privileges:
// bubblewrap clears its own, and env(1) runs after setpriv.
func TestEnvironmentAfterTheDrop(t *testing.T) {
	args := sandbox.Spec{DropTo: &sandbox.Credential{UID: 65534, GID: 65534}, Env: []string{"LD_PRELOAD=/x.so"}}.Args([]string{"true"})
	clear, setpriv, env, ld := slices.Index(args, "--clearenv"), slices.Index(args, "/usr/bin/setpriv"), slices.Index(args, "/usr/bin/env"), slices.Index(args, "LD_PRELOAD=/x.so")
	if clear < 0 || setpriv < 0 || env < setpriv || ld < env {
		t.Fatalf("clearenv %d, setpriv %d, env %d, LD_PRELOAD %d: %q", clear, setpriv, env, ld, args)
	}
}
