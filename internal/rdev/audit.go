package rdev

import (
	"context"
	"time"
)

// AuditEntry records one mutating API call.
type AuditEntry struct {
	ID     int64     `json:"id"`
	At     time.Time `json:"at"`
	KeyID  string    `json:"key_id"`
	Method string    `json:"method"`
	Route  string    `json:"route"`  // the route pattern, e.g. /api/v1/projects/{id}
	Target string    `json:"target"` // the resource acted on, e.g. project/web
	// ProjectID is the project the request acted on ("" when it named
	// none).
	ProjectID string `json:"project_id,omitempty"`
	Status    int    `json:"status"`
	RequestID string `json:"request_id"`
}

// AuditFilter selects audit entries. Zero fields do not filter.
type AuditFilter struct {
	KeyID  string
	Target string
	// Projects, when not empty, keeps only entries of those projects.
	Projects []string
	Since    time.Time // inclusive
	Until    time.Time // exclusive
	Page
}

// AuditStore persists the audit log.
type AuditStore interface {
	// AppendAudit inserts e and sets its ID.
	AppendAudit(ctx context.Context, e *AuditEntry) error
	// ListAudit returns a page of matching entries, newest first.
	ListAudit(ctx context.Context, f AuditFilter) ([]*AuditEntry, string, error)
}

// Store is everything rdev persists. Implementations: SQLite and PostgreSQL.
type Store interface {
	ProjectStore
	KeyStore
	AuditStore
	CheckoutStore
	SessionStore
	CommandStore
	TaskStore
	// Ping reports whether the database answers.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}
