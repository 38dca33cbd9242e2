package client

import (
	"context"
	"net/url"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// Session types shared with the server.
type (
	Session        = rdev.Session
	SessionRequest = service.SessionRequest
	CreatedSession = service.CreatedSession
	SessionEnd     = service.SessionEnd
	ClusterStatus  = cluster.Status
)

func sessionPath(project string) string { return "/projects/" + url.PathEscape(project) + "/sessions" }

// Deploy makes a project running.
func (c *Client) Deploy(ctx context.Context, project string) (*ClusterStatus, error) {
	var out ClusterStatus
	return &out, c.do(ctx, "POST", "/projects/"+url.PathEscape(project)+"/deploy", nil, nil, &out)
}

// Undeploy stops a project.
func (c *Client) Undeploy(ctx context.Context, project string) (*ClusterStatus, error) {
	var out ClusterStatus
	return &out, c.do(ctx, "POST", "/projects/"+url.PathEscape(project)+"/undeploy", nil, nil, &out)
}

// Status reports whether a project is running.
func (c *Client) Status(ctx context.Context, project string) (*ClusterStatus, error) {
	var out ClusterStatus
	return &out, c.do(ctx, "GET", "/projects/"+url.PathEscape(project)+"/status", nil, nil, &out)
}

// CreateSession creates a session and its checkout.
func (c *Client) CreateSession(ctx context.Context, project string, r SessionRequest) (*CreatedSession, error) {
	var out CreatedSession
	return &out, c.do(ctx, "POST", sessionPath(project), nil, r, &out)
}

// GetSession returns one session.
func (c *Client) GetSession(ctx context.Context, project, id string) (*Session, error) {
	var out Session
	return &out, c.do(ctx, "GET", sessionPath(project)+"/"+url.PathEscape(id), nil, nil, &out)
}

// ListSessions returns a page of a project's sessions.
func (c *Client) ListSessions(ctx context.Context, project string, o ListOptions) ([]Session, string, error) {
	var out struct {
		Sessions   []Session `json:"sessions"`
		NextCursor string    `json:"next_cursor"`
	}
	err := c.do(ctx, "GET", sessionPath(project), o.query(), nil, &out)
	return out.Sessions, out.NextCursor, err
}

// CheckinSession ends a session.
func (c *Client) CheckinSession(ctx context.Context, project, id string, r CheckinRequest) (*SessionEnd, error) {
	var out SessionEnd
	return &out, c.do(ctx, "POST", sessionPath(project)+"/"+url.PathEscape(id)+"/checkin", nil, r, &out)
}

// TerminateSession force-terminates a session (admin).
func (c *Client) TerminateSession(ctx context.Context, project, id string) (*SessionEnd, error) {
	var out SessionEnd
	return &out, c.do(ctx, "DELETE", sessionPath(project)+"/"+url.PathEscape(id), nil, nil, &out)
}

// KeepaliveSession resets a session's idle timer.
func (c *Client) KeepaliveSession(ctx context.Context, project, id string) (*Session, error) {
	var out Session
	return &out, c.do(ctx, "POST", sessionPath(project)+"/"+url.PathEscape(id)+"/keepalive", nil, nil, &out)
}

// PreviewLink is a signed, expiring link to a session's preview.
type PreviewLink = service.PreviewLink

// CreatePreviewLink signs a link to a session's preview (ttl: a Go
// duration, "" for the default hour).
func (c *Client) CreatePreviewLink(ctx context.Context, project, id, ttl string) (*PreviewLink, error) {
	var out PreviewLink
	body := map[string]string{}
	if ttl != "" {
		body["ttl"] = ttl
	}
	return &out, c.do(ctx, "POST", sessionPath(project)+"/"+url.PathEscape(id)+"/preview-links", nil, body, &out)
}
