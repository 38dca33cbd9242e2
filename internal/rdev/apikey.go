package rdev

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"strings"
	"time"
)

// Scope names one permission an API key carries.
type Scope string

// The known scopes (SPEC §4). ScopeAdmin admits everything.
const (
	ScopeProjectsRead    Scope = "projects:read"
	ScopeProjectsWrite   Scope = "projects:write"
	ScopeProjectsExecute Scope = "projects:execute"
	ScopeSessionsRead    Scope = "sessions:read"
	ScopeSessionsExecute Scope = "sessions:execute"
	ScopeWorkersRead     Scope = "workers:read"
	ScopeWorkersExecute  Scope = "workers:execute"
	ScopeAdmin           Scope = "admin"
)

// Scopes lists every known scope.
var Scopes = []Scope{
	ScopeProjectsRead, ScopeProjectsWrite, ScopeProjectsExecute,
	ScopeSessionsRead, ScopeSessionsExecute,
	ScopeWorkersRead, ScopeWorkersExecute, ScopeAdmin,
}

// MaxKeyDays bounds the expiry of an API key.
const MaxKeyDays = 365

// TokenPrefix starts every key rdev generates.
const TokenPrefix = "rdev_"

// APIKey is a bearer credential. Only the SHA-256 of its token is stored.
type APIKey struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Scopes     []Scope    `json:"scopes"`
	Projects   []string   `json:"projects"` // empty: every project
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at,omitempty"`
	LastUsedAt *time.Time `json:"last_used_at,omitempty"`
	CreatedBy  string     `json:"created_by,omitempty"`
	Hash       string     `json:"-"`
	DeletedAt  *time.Time `json:"-"`
}

// HasScope reports whether k carries any of the scopes, admin counting for all.
func (k *APIKey) HasScope(any ...Scope) bool {
	for _, s := range k.Scopes {
		if s == ScopeAdmin || slices.Contains(any, s) {
			return true
		}
	}
	return false
}

// AllowsProject reports whether the key's allow-list admits project id.
func (k *APIKey) AllowsProject(id string) bool {
	return len(k.Projects) == 0 || slices.Contains(k.Projects, id)
}

// Unrestricted reports whether k is an admin key with no project
// allow-list: the one kind of key that may act on anything (another key's
// workers, every key, the whole audit log).
func (k *APIKey) Unrestricted() bool {
	return len(k.Projects) == 0 && slices.Contains(k.Scopes, ScopeAdmin)
}

// Covers reports whether k may give a new key scopes and projects: each
// scope one k carries (admin counting for all), and an allow-list inside
// k's own (a key with an allow-list gives none that is empty).
func (k *APIKey) Covers(scopes []Scope, projects []string) bool {
	for _, s := range scopes {
		if !k.HasScope(s) {
			return false
		}
	}
	if len(k.Projects) == 0 {
		return true
	}
	if len(projects) == 0 {
		return false
	}
	for _, p := range projects {
		if !slices.Contains(k.Projects, p) {
			return false
		}
	}
	return true
}

// Usable reports whether the key is neither deleted nor expired at now.
func (k *APIKey) Usable(now time.Time) bool {
	return k.DeletedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// Validate checks name, scopes and allow-list.
func (k *APIKey) Validate() error {
	if err := validateName("name", k.Name); err != nil {
		return err
	}
	if len(k.Scopes) == 0 {
		return Invalid("scopes", "at least one scope is required")
	}
	for i, s := range k.Scopes {
		if !slices.Contains(Scopes, s) {
			return Invalid(indexField("scopes", i), "unknown scope %q (known: %s)", s, scopeList())
		}
	}
	if len(k.Projects) > 1000 {
		return Invalid("projects", "at most 1000 projects")
	}
	for i, p := range k.Projects {
		if ValidateProjectID(p) != nil {
			return Invalid(indexField("projects", i), "invalid project id %q", p)
		}
	}
	return nil
}

func scopeList() string {
	s := make([]string, len(Scopes))
	for i, sc := range Scopes {
		s[i] = string(sc)
	}
	return strings.Join(s, ", ")
}

var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns prefix followed by 16 random lowercase base32 characters.
func NewID(prefix string) string {
	var b [10]byte
	rand.Read(b[:])
	return prefix + idEncoding.EncodeToString(b[:])
}

// NewKeyToken returns a fresh key id and its token "rdev_<id>_<secret>".
func NewKeyToken() (id, token string) {
	id = NewID("k")
	var secret [32]byte
	rand.Read(secret[:])
	return id, TokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
}

// KeyIDForToken returns the id under which the key for token is stored.
// Tokens rdev generated carry their id; any other token (one seeded through
// RDEV_ADMIN_TOKEN) is stored under an id derived from its hash.
func KeyIDForToken(token string) string {
	if rest, ok := strings.CutPrefix(token, TokenPrefix); ok {
		if id, secret, ok := strings.Cut(rest, "_"); ok && secret != "" && len(id) == 17 && id[0] == 'k' {
			return id
		}
	}
	return "s" + HashToken(token)[:16]
}

// HashToken returns the hex SHA-256 of token, the form keys are stored in.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// TokenMatches compares token against a stored hash in constant time.
func TokenMatches(token, hash string) bool {
	return subtle.ConstantTimeCompare([]byte(HashToken(token)), []byte(hash)) == 1
}

// KeyStore persists API keys.
type KeyStore interface {
	// CreateKey inserts k. ErrConflict if the id is taken.
	CreateKey(ctx context.Context, k *APIKey) error
	// PutKey inserts k, or replaces name, scopes, projects, hash and expiry
	// of the key with its id and clears its deletion (seeding).
	PutKey(ctx context.Context, k *APIKey) error
	// GetKey returns a key that is not deleted. ErrKeyNotFound otherwise.
	GetKey(ctx context.Context, id string) (*APIKey, error)
	// ListKeys returns a page of keys that are not deleted, newest first.
	ListKeys(ctx context.Context, page Page) ([]*APIKey, string, error)
	// DeleteKey marks the key deleted at at. ErrKeyNotFound if missing or
	// already deleted.
	DeleteKey(ctx context.Context, id string, at time.Time) error
	// TouchKey sets last_used_at.
	TouchKey(ctx context.Context, id string, at time.Time) error
	// CountKeys counts keys, deleted ones included.
	CountKeys(ctx context.Context) (int, error)
}
