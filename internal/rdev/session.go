package rdev

import (
	"context"
	"errors"
	"time"
)

// SessionStatus is the state of a session.
type SessionStatus string

// Session statuses (SPEC §2).
const (
	SessionActive     SessionStatus = "active"
	SessionEnded      SessionStatus = "ended"      // checked in
	SessionExpired    SessionStatus = "expired"    // TTL or idleness
	SessionTerminated SessionStatus = "terminated" // by an admin
)

// Session defaults.
const (
	DefaultSessionTTL  = 24 * time.Hour
	MaxSessionDays     = 30
	DefaultPreviewPort = 8080
)

// Session errors; their text is the seed's API message.
var (
	ErrSessionExists    = errors.New("active session already exists for this project")
	ErrSessionNotFound  = errors.New("session not found")
	ErrSessionNotActive = errors.New("session is not active")
	ErrPodNotRunning    = errors.New("project pod is not running")
)

// Session binds one checkout to the project's running pod.
type Session struct {
	ID           string        `json:"id"`
	ProjectID    string        `json:"project_id"`
	CheckoutID   string        `json:"checkout_id"`
	PodName      string        `json:"pod_name"`
	PreviewPort  int           `json:"preview_port"`
	PreviewURL   string        `json:"preview_url"`
	Status       SessionStatus `json:"status"`
	CreatedBy    string        `json:"created_by"`
	CreatedAt    time.Time     `json:"created_at"`
	ExpiresAt    time.Time     `json:"expires_at"`
	LastActiveAt time.Time     `json:"last_active_at"`
	EndedAt      *time.Time    `json:"ended_at,omitempty"`
	ReviewTaskID string        `json:"review_task_id,omitempty"`
	// Review is filled in on reads once a review was queued.
	Review *ReviewSummary `json:"review,omitempty"`
	// Sandbox is "none" when the server runs project code unconfined
	// (--sandbox none); absent otherwise.
	Sandbox string `json:"sandbox,omitempty"`
}

// SessionStore persists sessions.
type SessionStore interface {
	// CreateSession inserts the session and its checkout in one
	// transaction, the session first: ErrSessionExists when the project
	// has an active session, else ErrCheckoutExists when the branch is
	// checked out.
	CreateSession(ctx context.Context, s *Session, c *Checkout) error
	// DeleteSession removes a session and its checkout (undoing a create
	// whose later steps failed).
	DeleteSession(ctx context.Context, id string) error
	// ActiveSession returns the project's active session, or
	// ErrSessionNotFound.
	ActiveSession(ctx context.Context, projectID string) (*Session, error)
	// SessionByID returns any session by id. ErrSessionNotFound.
	SessionByID(ctx context.Context, id string) (*Session, error)
	// GetSession returns a session of project. ErrSessionNotFound.
	GetSession(ctx context.Context, projectID, id string) (*Session, error)
	// ListSessions returns a page of the project's sessions, newest first.
	ListSessions(ctx context.Context, projectID string, page Page) ([]*Session, string, error)
	// EndSession moves an active session to status, ends its checkout the
	// same way (checked_in for ended, revoked otherwise) and stores task
	// when not nil, in one transaction. ErrSessionNotActive.
	EndSession(ctx context.Context, projectID, id string, status SessionStatus, at time.Time, task *Task) (*Session, error)
	// TouchSession records activity at at (never moving it backwards).
	TouchSession(ctx context.Context, id string, at time.Time) error
	// DueSessions returns at most limit active sessions whose expiry is at
	// or before now, or whose last activity is before idleBefore.
	DueSessions(ctx context.Context, now, idleBefore time.Time, limit int) ([]*Session, error)
	// ActiveSessions returns every active session (for re-attaching after a restart).
	ActiveSessions(ctx context.Context) ([]*Session, error)
}
