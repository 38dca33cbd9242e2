package local

import (
	"errors"
	"fmt"
	"path/filepath"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/sandbox"
)

// Sandbox modes of --sandbox.
const (
	SandboxAuto  = "auto" // bubblewrap when usable; else no project code runs
	SandboxBwrap = "bwrap"
	SandboxNone  = "none" // every process unconfined: "I trust every agent"
	// SandboxUnavailable is what auto resolves to when bubblewrap is not
	// usable: rdev serves its API but refuses to start project code.
	SandboxUnavailable = "unavailable"
)

// ResolveSandbox turns a --sandbox value into "bwrap", "none" or
// "unavailable" (auto without a usable bubblewrap; why says what is
// missing and how to fix it). bwrap insists: an unusable bubblewrap is
// an error.
func ResolveSandbox(mode string, user *sandbox.Credential) (resolved string, why error, err error) {
	switch mode {
	case SandboxNone:
		return SandboxNone, nil, nil
	case SandboxAuto, SandboxBwrap:
		perr := sandbox.Probe(user)
		if perr == nil {
			return SandboxBwrap, nil, nil
		}
		if mode == SandboxBwrap {
			return "", nil, fmt.Errorf("--sandbox bwrap: %w", perr)
		}
		return SandboxUnavailable, perr, nil
	}
	return "", nil, fmt.Errorf("--sandbox must be auto, bwrap or none, not %q", mode)
}

// unavailable returns the error every start of project code answers when
// there is no sandbox to run it in, or nil.
func (c *Cluster) unavailable() error {
	if c.cfg.Sandbox != SandboxUnavailable {
		return nil
	}
	why := c.cfg.SandboxWhy
	if why == nil {
		why = errors.New("bubblewrap is not usable")
	}
	return &rdev.SandboxUnavailableError{Reason: why.Error()}
}

// mustAbs makes p absolute (bubblewrap wants absolute paths).
func mustAbs(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}
