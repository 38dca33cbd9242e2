// Package rdev holds the domain of the rdev control plane: its records, their
// validation, the sentinel errors every layer returns, and the interfaces the
// store, cluster and git host implement.
package rdev

import (
	"errors"
	"fmt"
)

// Sentinel errors. Stores and services return these (possibly wrapped); the
// HTTP layer maps each to a status and code in one table. Their text is the
// message shown to API clients, so it never carries internal detail.
var (
	ErrProjectNotFound = errors.New("project not found")
	ErrProjectExists   = errors.New("project already exists")
	ErrKeyNotFound     = errors.New("api key not found")
	ErrNotFound        = errors.New("not found")

	ErrBranchNotFound    = errors.New("branch not found")
	ErrRefNotFound       = errors.New("ref not found")
	ErrBranchExists      = errors.New("branch already exists")
	ErrBranchProtected   = errors.New("cannot checkout protected branch")
	ErrCheckoutExists    = errors.New("active checkout already exists for this branch")
	ErrCheckoutNotFound  = errors.New("checkout not found")
	ErrCheckoutNotActive = errors.New("checkout is not active")
	ErrConflict          = errors.New("conflict")

	// ErrUnauthorized means the caller showed no key, or one that is unknown,
	// expired or deleted. The message does not say which.
	ErrUnauthorized = errors.New("missing or invalid API key")
	// ErrForbidden means a known key lacks the scope the route needs.
	ErrForbidden = errors.New("API key lacks the required scope")
	// ErrProjectNotAllowed means a key with a project allow-list tried to
	// create a project outside that list.
	ErrProjectNotAllowed = errors.New("project is outside the API key's allow-list")
	// ErrKeyBeyondCaller means a key asked for a key with more than it
	// has itself.
	ErrKeyBeyondCaller = errors.New("a new key may carry only scopes of the creating key and, when the creating key has a project allow-list, a non-empty allow-list inside it")
)

// ForbiddenError is ErrForbidden with a reason of its own: what the key
// may not do here, and what would let it.
type ForbiddenError struct {
	Field   string
	Message string
}

func (e *ForbiddenError) Error() string { return e.Message }

// Is makes errors.Is(err, ErrForbidden) hold.
func (e *ForbiddenError) Is(target error) bool { return target == ErrForbidden }

// InvalidError reports bad input. Field names the offending field (JSON
// name, dotted for nested values) when there is one.
type InvalidError struct {
	Field   string
	Message string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Invalid returns an *InvalidError for field with a formatted message.
func Invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// IsInvalid reports whether err is, or wraps, an *InvalidError.
func IsInvalid(err error) bool {
	var ie *InvalidError
	return errors.As(err, &ie)
}

// ErrSandboxUnavailable means project code cannot start: rdev runs with
// --sandbox auto and no sandbox is usable on this machine. Errors that
// wrap it are *SandboxUnavailableError, saying what is missing.
var ErrSandboxUnavailable = errors.New("rdev cannot start project code here: no sandbox is usable")

// SandboxUnavailableError is ErrSandboxUnavailable with its reason and
// fix.
type SandboxUnavailableError struct{ Reason string }

func (e *SandboxUnavailableError) Error() string {
	return "rdev cannot start project code here: " + e.Reason
}

// Is makes errors.Is(err, ErrSandboxUnavailable) hold.
func (e *SandboxUnavailableError) Is(target error) bool { return target == ErrSandboxUnavailable }
