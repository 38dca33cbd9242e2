// Package service orchestrates rdev's use cases across the store (and, in
// later issues, the cluster and the git host). Handlers call it; it returns
// domain errors from package rdev.
package service

import (
	"log/slog"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// Service carries what the use cases need.
type Service struct {
	store rdev.Store
	now   func() time.Time
	log   *slog.Logger
	keys  *keyCache
	auth  *authCache
}

// New returns a Service over store. now is the clock (time.Now in production).
func New(store rdev.Store, now func() time.Time, log *slog.Logger) *Service {
	return &Service{store: store, now: now, log: log, keys: newKeyCache(), auth: &authCache{m: map[string]authEntry{}}}
}

func (s *Service) clock() time.Time { return rdev.Timestamp(s.now()) }

// Store exposes the store for health checks.
func (s *Service) Store() rdev.Store { return s.store }
