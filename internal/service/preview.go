package service

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// Preview links: a token binds a session id and an expiry under the
// server's preview secret. It dies with the session.
const (
	DefaultPreviewLinkTTL = time.Hour
	MaxPreviewLinkTTL     = 7 * 24 * time.Hour
	// PreviewTokenParam carries a signed link's token in the URL.
	PreviewTokenParam = "rdev_preview_token"
)

// PreviewLink is a signed, expiring URL of a session's preview.
type PreviewLink struct {
	URL       string    `json:"url"`
	ExpiresAt time.Time `json:"expires_at"`
}

// CreatePreviewLink signs a link to the session's preview, valid for ttl
// (a Go duration; default 1h, at most 7 days) while the session lives.
func (s *Service) CreatePreviewLink(ctx context.Context, caller *rdev.APIKey, projectID, sid, ttl string) (*PreviewLink, error) {
	d := DefaultPreviewLinkTTL
	if ttl != "" {
		var err error
		d, err = time.ParseDuration(ttl)
		if err != nil || d <= 0 || d > MaxPreviewLinkTTL {
			return nil, rdev.Invalid("ttl", "ttl must be a Go duration between 1s and 168h (e.g., 30m, 24h)")
		}
	}
	sess, err := s.activeSession(ctx, caller, projectID, sid)
	if err != nil {
		return nil, err
	}
	exp := s.clock().Add(d).Truncate(time.Second)
	if exp.After(sess.ExpiresAt) {
		exp = sess.ExpiresAt.Truncate(time.Second)
	}
	u, err := url.Parse(sess.PreviewURL)
	if err != nil {
		return nil, err
	}
	q := u.Query()
	q.Set(PreviewTokenParam, s.signPreview(sid, exp))
	u.RawQuery = q.Encode()
	return &PreviewLink{URL: u.String(), ExpiresAt: exp}, nil
}

func (s *Service) signPreview(sid string, exp time.Time) string {
	e := strconv.FormatInt(exp.Unix(), 10)
	m := hmac.New(sha256.New, s.previewSecret)
	m.Write([]byte("preview|" + sid + "|" + e))
	return e + "." + hex.EncodeToString(m.Sum(nil))
}

// PreviewTokenValid reports whether token is a signed link token of sid
// that has not expired, and when it expires.
func (s *Service) PreviewTokenValid(sid, token string) (time.Time, bool) {
	e, _, ok := strings.Cut(token, ".")
	if !ok || len(s.previewSecret) == 0 {
		return time.Time{}, false
	}
	unix, err := strconv.ParseInt(e, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	exp := time.Unix(unix, 0).UTC()
	if !hmac.Equal([]byte(token), []byte(s.signPreview(sid, exp))) || !s.clock().Before(exp) {
		return time.Time{}, false
	}
	return exp, true
}

// PreviewTarget returns the active session sid; rdev.ErrSessionNotFound
// when the session does not exist or has ended.
func (s *Service) PreviewTarget(ctx context.Context, sid string) (*rdev.Session, error) {
	sess, err := s.store.SessionByID(ctx, sid)
	if err != nil {
		return nil, err
	}
	if sess.Status != rdev.SessionActive {
		return nil, rdev.ErrSessionNotFound
	}
	return sess, nil
}

// DialPreview connects to the preview port of the active session sid.
func (s *Service) DialPreview(ctx context.Context, sid string) (net.Conn, error) {
	sess, err := s.PreviewTarget(ctx, sid)
	if err != nil {
		return nil, err
	}
	return s.cluster.DialPreview(ctx, sess.ProjectID, sid)
}

// AuthorizePreviewKey checks that an API key may read the session's
// project: rdev.ErrUnauthorized, rdev.ErrForbidden or
// rdev.ErrSessionNotFound (outside its allow-list).
func (s *Service) AuthorizePreviewKey(ctx context.Context, token string, sess *rdev.Session) error {
	k, err := s.Authenticate(ctx, token)
	if err != nil {
		return err
	}
	if !k.HasScope(rdev.ScopeSessionsRead, rdev.ScopeProjectsRead) {
		return rdev.ErrForbidden
	}
	if !k.AllowsProject(sess.ProjectID) {
		return rdev.ErrSessionNotFound
	}
	return nil
}

// TouchPreview records preview traffic as session activity, at most every
// ten seconds per session.
func (s *Service) TouchPreview(ctx context.Context, sid string) {
	now := s.clock()
	if s.previews.due(sid, now) {
		if err := s.store.TouchSession(ctx, sid, now); err != nil && !errors.Is(err, context.Canceled) {
			s.log.Warn("touch session", "session", sid, "err", err)
		}
	}
}
