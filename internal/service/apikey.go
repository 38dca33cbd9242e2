package service

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// TouchInterval is the least time between two writes of a key's last_used_at:
// most authenticated requests read the database and write nothing.
const TouchInterval = time.Minute

// keyCache remembers when each key's (or session's) last use was last
// written, to write it at most once per interval.
type keyCache struct {
	mu       sync.Mutex
	interval time.Duration
	touched  map[string]time.Time
}

func newKeyCache(interval time.Duration) *keyCache {
	return &keyCache{interval: interval, touched: map[string]time.Time{}}
}

// due reports whether id's last use should be written at now, and if so
// records that it is being written.
func (c *keyCache) due(id string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if last, ok := c.touched[id]; ok && now.Sub(last) < c.interval {
		return false
	}
	c.touched[id] = now
	return true
}

// AuthCacheTTL is how long a verified key is served from memory before the
// store is asked again. A key deleted through this process stops working at
// once; one deleted through another replica sharing the database, within
// this time. Expiry is checked on every request.
const AuthCacheTTL = 5 * time.Second

// authCache holds recently verified keys by the hash of their token, so
// that most requests cost no database read for authentication.
type authCache struct {
	mu sync.RWMutex
	m  map[string]authEntry
}

type authEntry struct {
	key   *rdev.APIKey
	until time.Time
}

const authCacheMax = 10000

func (c *authCache) get(hash string, now time.Time) *rdev.APIKey {
	c.mu.RLock()
	e, ok := c.m[hash]
	c.mu.RUnlock()
	if !ok || !now.Before(e.until) {
		return nil
	}
	return e.key
}

func (c *authCache) put(hash string, k *rdev.APIKey, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= authCacheMax {
		clear(c.m)
	}
	c.m[hash] = authEntry{key: k, until: now.Add(AuthCacheTTL)}
}

func (c *authCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.key.ID == id {
			delete(c.m, h)
		}
	}
}

// Authenticate returns the key that token belongs to. It returns
// rdev.ErrUnauthorized for an unknown, mismatched, expired or deleted key.
func (s *Service) Authenticate(ctx context.Context, token string) (*rdev.APIKey, error) {
	if token == "" || len(token) > 512 {
		return nil, rdev.ErrUnauthorized
	}
	now := s.clock()
	hash := rdev.HashToken(token)
	k := s.auth.get(hash, now)
	if k == nil {
		var err error
		k, err = s.store.GetKey(ctx, rdev.KeyIDForToken(token))
		if errors.Is(err, rdev.ErrKeyNotFound) {
			return nil, rdev.ErrUnauthorized
		}
		if err != nil {
			return nil, fmt.Errorf("look up key: %w", err)
		}
		if !rdev.TokenMatches(token, k.Hash) {
			return nil, rdev.ErrUnauthorized
		}
		s.auth.put(hash, k, now)
	}
	if !k.Usable(now) {
		return nil, rdev.ErrUnauthorized
	}
	if (k.LastUsedAt == nil || now.Sub(*k.LastUsedAt) >= TouchInterval) && s.keys.due(k.ID, now) {
		if err := s.store.TouchKey(ctx, k.ID, now); err != nil {
			s.log.Warn("record key use", "key_id", k.ID, "err", err)
		}
	}
	return k, nil
}

// KeyRequest is the input of CreateKey.
type KeyRequest struct {
	Name      string       `json:"name"`
	Scopes    []rdev.Scope `json:"scopes"`
	Projects  []string     `json:"projects,omitempty"`
	ExpiresIn string       `json:"expires_in,omitempty"`
}

// Validate checks the request; errors are *rdev.InvalidError.
func (r *KeyRequest) Validate() error {
	k := rdev.APIKey{Name: r.Name, Scopes: r.Scopes, Projects: r.Projects}
	if err := k.Validate(); err != nil {
		return err
	}
	if r.ExpiresIn != "" {
		if _, err := rdev.ParseExpiresIn("expires_in", r.ExpiresIn, rdev.MaxKeyDays); err != nil {
			return err
		}
	}
	return nil
}

// CreatedKey is a new key with its token, shown this once.
type CreatedKey struct {
	rdev.APIKey
	Token string `json:"token"`
}

// CreateKey makes a key on behalf of caller, never with more than caller
// has: its scopes, and its allow-list (a restricted key makes only keys
// restricted to some of its projects).
func (s *Service) CreateKey(ctx context.Context, caller *rdev.APIKey, r KeyRequest) (*CreatedKey, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if !caller.Covers(r.Scopes, r.Projects) {
		return nil, rdev.ErrKeyBeyondCaller
	}
	now := s.clock()
	id, token := rdev.NewKeyToken()
	k := rdev.APIKey{ID: id, Name: r.Name, Scopes: r.Scopes, Projects: r.Projects, Hash: rdev.HashToken(token), CreatedAt: now, CreatedBy: caller.ID}
	if k.Projects == nil {
		k.Projects = []string{}
	}
	if r.ExpiresIn != "" {
		d, _ := rdev.ParseExpiresIn("expires_in", r.ExpiresIn, rdev.MaxKeyDays)
		exp := now.Add(d)
		k.ExpiresAt = &exp
	}
	if err := s.store.CreateKey(ctx, &k); err != nil {
		return nil, err
	}
	return &CreatedKey{APIKey: k, Token: token}, nil
}

// ListKeys returns a page of the keys caller may see (never their
// secrets): every key for an unrestricted key, else the keys whose
// allow-list lies inside caller's.
func (s *Service) ListKeys(ctx context.Context, caller *rdev.APIKey, page rdev.Page) ([]*rdev.APIKey, string, error) {
	if len(caller.Projects) == 0 {
		return s.store.ListKeys(ctx, page)
	}
	// Filtered page by page of the store until this page is full.
	var out []*rdev.APIKey
	for {
		ks, next, err := s.store.ListKeys(ctx, rdev.Page{Limit: page.Limit, Cursor: page.Cursor})
		if err != nil {
			return nil, "", err
		}
		for i, k := range ks {
			if !caller.Covers(nil, k.Projects) {
				continue
			}
			out = append(out, k)
			if len(out) == page.Limit && (i < len(ks)-1 || next != "") {
				return out, rdev.EncodeCursor(k.CreatedAt, k.ID), nil
			}
		}
		if next == "" {
			return out, "", nil
		}
		page.Cursor = next
	}
}

// DeleteKey deletes a key caller may see (nil: the server itself); it
// stops working at once. rdev.ErrKeyNotFound.
func (s *Service) DeleteKey(ctx context.Context, caller *rdev.APIKey, id string) error {
	if caller != nil && len(caller.Projects) > 0 {
		k, err := s.store.GetKey(ctx, id)
		if err != nil {
			return err
		}
		if !caller.Covers(nil, k.Projects) {
			return rdev.ErrKeyNotFound
		}
	}
	err := s.store.DeleteKey(ctx, id, s.clock())
	s.auth.forget(id)
	return err
}

// MinAdminTokenLen is the shortest RDEV_ADMIN_TOKEN accepted.
const MinAdminTokenLen = 32

// SeedAdminToken makes token a working admin key (creating or restoring it).
func (s *Service) SeedAdminToken(ctx context.Context, token string) (*rdev.APIKey, error) {
	if len(token) < MinAdminTokenLen {
		return nil, fmt.Errorf("RDEV_ADMIN_TOKEN must be at least %d characters", MinAdminTokenLen)
	}
	s.auth.forget(rdev.KeyIDForToken(token))
	k := &rdev.APIKey{ID: rdev.KeyIDForToken(token), Name: "admin (RDEV_ADMIN_TOKEN)", Scopes: []rdev.Scope{rdev.ScopeAdmin},
		Projects: []string{}, Hash: rdev.HashToken(token), CreatedAt: s.clock(), CreatedBy: "seed"}
	return k, s.store.PutKey(ctx, k)
}

// EnsureAdminKey creates an admin key on first start, when the store has no
// key at all, and writes its token to path with mode 0600. It returns
// whether it created one.
func (s *Service) EnsureAdminKey(ctx context.Context, path string) (bool, error) {
	n, err := s.store.CountKeys(ctx)
	if err != nil {
		return false, fmt.Errorf("count keys: %w", err)
	}
	if n > 0 {
		return false, nil
	}
	id, token := rdev.NewKeyToken()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	// Write the file first: a key nobody can read would lock the operator out.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return false, fmt.Errorf("write admin key: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return false, fmt.Errorf("write admin key: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("write admin key: %w", err)
	}
	k := &rdev.APIKey{ID: id, Name: "admin", Scopes: []rdev.Scope{rdev.ScopeAdmin}, Projects: []string{},
		Hash: rdev.HashToken(token), CreatedAt: s.clock(), CreatedBy: "first-start"}
	if err := s.store.CreateKey(ctx, k); err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}

// ReviewToken mints a key that can only read projectID (clone and fetch
// it), for the trusted checkout step of a review pod, expiring after ttl;
// revoke deletes it as soon as the checkout is done.
func (s *Service) ReviewToken(ctx context.Context, projectID string, ttl time.Duration) (string, func(), error) {
	now := s.clock()
	id, token := rdev.NewKeyToken()
	exp := now.Add(ttl)
	k := rdev.APIKey{ID: id, Name: "review checkout of " + projectID, Scopes: []rdev.Scope{rdev.ScopeProjectsRead},
		Projects: []string{projectID}, Hash: rdev.HashToken(token), CreatedAt: now, CreatedBy: "rdev", ExpiresAt: &exp}
	if err := s.store.CreateKey(ctx, &k); err != nil {
		return "", nil, err
	}
	return token, func() { s.DeleteKey(context.WithoutCancel(ctx), nil, id) }, nil
}
