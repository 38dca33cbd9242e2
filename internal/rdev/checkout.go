package rdev

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"regexp"
	"strings"
	"time"
)

// CheckoutStatus is the state of a checkout.
type CheckoutStatus string

// Checkout statuses. Only an active checkout's token works.
const (
	CheckoutActive    CheckoutStatus = "active"
	CheckoutCheckedIn CheckoutStatus = "checked_in"
	CheckoutExpired   CheckoutStatus = "expired"
	CheckoutRevoked   CheckoutStatus = "revoked"
)

// Checkout expiry bounds: default 24h, at most 30 days.
const (
	DefaultCheckoutTTL = 24 * time.Hour
	MaxCheckoutDays    = 30
)

// Checkout hands one branch of a project to one holder, with a git token
// that may push to that branch only.
type Checkout struct {
	ID           string         `json:"id"`
	ProjectID    string         `json:"project_id"`
	Branch       string         `json:"branch"`
	FeatureSlug  string         `json:"feature_slug,omitempty"`
	BaseCommit   string         `json:"base_commit"`
	Status       CheckoutStatus `json:"status"`
	CreatedBy    string         `json:"created_by"`
	CreatedAt    time.Time      `json:"created_at"`
	ExpiresAt    time.Time      `json:"expires_at"`
	EndedAt      *time.Time     `json:"ended_at,omitempty"`
	ReviewTaskID string         `json:"review_task_id,omitempty"`
	// Review is filled in on reads once a review was queued.
	Review    *ReviewSummary `json:"review,omitempty"`
	TokenHash string         `json:"-"`
}

// Usable reports whether the checkout's token works at now.
func (c *Checkout) Usable(now time.Time) bool {
	return c.Status == CheckoutActive && now.Before(c.ExpiresAt)
}

// CheckoutTokenPrefix starts every checkout token.
const CheckoutTokenPrefix = "rdevco_"

// NewCheckoutToken returns a fresh checkout id and its token.
func NewCheckoutToken() (id, token string) {
	id = NewID("c")
	var secret [32]byte
	rand.Read(secret[:])
	return id, CheckoutTokenPrefix + id + "_" + base64.RawURLEncoding.EncodeToString(secret[:])
}

// CheckoutIDForToken returns the checkout id a checkout token carries.
func CheckoutIDForToken(token string) (string, bool) {
	rest, ok := strings.CutPrefix(token, CheckoutTokenPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	return id, ok && secret != "" && len(id) == 17 && id[0] == 'c'
}

var slugRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// ValidateFeatureSlug accepts an empty slug or a lowercase DNS label.
func ValidateFeatureSlug(s string) error {
	if s != "" && !slugRe.MatchString(s) {
		return Invalid("feature_slug", "must be a lowercase DNS label of 1-63 characters")
	}
	return nil
}

// CheckoutStore persists checkouts and the tasks their check-in queues.
type CheckoutStore interface {
	// CreateCheckout inserts c. ErrCheckoutExists when the branch has an
	// active checkout.
	CreateCheckout(ctx context.Context, c *Checkout) error
	// DeleteCheckout removes a checkout record (undoing a create whose git
	// side failed).
	DeleteCheckout(ctx context.Context, id string) error
	// GetCheckout returns a checkout of project. ErrCheckoutNotFound.
	GetCheckout(ctx context.Context, projectID, id string) (*Checkout, error)
	// CheckoutByID returns any checkout by id. ErrCheckoutNotFound.
	CheckoutByID(ctx context.Context, id string) (*Checkout, error)
	// ListCheckouts returns a page of the project's checkouts, newest first.
	ListCheckouts(ctx context.Context, projectID string, page Page) ([]*Checkout, string, error)
	// EndCheckout moves an active checkout to status at at and, when task
	// is not nil, inserts it and links it, in one transaction.
	// ErrCheckoutNotActive if it is not active; ErrCheckoutNotFound.
	EndCheckout(ctx context.Context, projectID, id string, status CheckoutStatus, at time.Time, task *Task) (*Checkout, error)
	// ExpireCheckouts marks at most limit active checkouts whose expiry is
	// at or before now as expired and returns them.
	ExpireCheckouts(ctx context.Context, now time.Time, limit int) ([]*Checkout, error)
}

// EndedCheckoutError is ErrUnauthorized for the token of a checkout that
// has ended: it names the checkout and how it ended.
type EndedCheckoutError struct {
	ID     string
	Status CheckoutStatus
}

func (e *EndedCheckoutError) Error() string {
	how := string(e.Status)
	switch {
	case e.Status == CheckoutCheckedIn:
		how = "checked in"
	case e.Status == CheckoutActive:
		how = "expired"
	}
	return "checkout " + e.ID + " is " + how + ": its token no longer works (check out again: rdev checkout create)"
}

// Is makes errors.Is(err, ErrUnauthorized) hold.
func (e *EndedCheckoutError) Is(target error) bool { return target == ErrUnauthorized }

// IsCheckoutID reports whether s has the form of a checkout id.
func IsCheckoutID(s string) bool {
	rest, ok := strings.CutPrefix(s, "c")
	if !ok || len(rest) != 16 {
		return false
	}
	for _, r := range rest {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}
