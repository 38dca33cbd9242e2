// Package client is the Go SDK for rdev's HTTP API. The rdev CLI and the
// end-to-end tests use it; so can your own tools and workers.
//
//	c := client.New("http://127.0.0.1:7420", token)
//	p, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web"})
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// Types shared with the server.
type (
	Project        = rdev.Project
	Component      = rdev.Component
	Limits         = rdev.Limits
	Egress         = rdev.Egress
	ProjectPatch   = rdev.ProjectPatch
	ProjectRequest = service.ProjectRequest
	APIKey         = rdev.APIKey
	Scope          = rdev.Scope
	KeyRequest     = service.KeyRequest
	CreatedKey     = service.CreatedKey
	AuditEntry     = rdev.AuditEntry
)

// Client calls one rdev server with one API key.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for the server at baseURL (e.g. http://127.0.0.1:7420)
// authenticating with token.
func New(baseURL, token string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: &http.Client{Timeout: 5 * time.Minute}}
}

// WithHTTPClient replaces the underlying *http.Client.
func (c *Client) WithHTTPClient(h *http.Client) *Client {
	c.http = h
	return c
}

// Error is an error response from the server.
type Error struct {
	Status    int
	Code      string
	Message   string
	Field     string
	RequestID string
}

// BaseURL is the server's URL the client talks to.
func (c *Client) BaseURL() string { return c.base }

// GitAuthEnv is the environment that makes git send the client's API key
// to rdev's git host (as GIT_CONFIG_* variables, so it is neither on a
// command line nor written into a repository's config).
func (c *Client) GitAuthEnv() []string {
	return []string{"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: Bearer " + c.token}
}

// Is lets errors.Is match the API's conflicts on tasks with the domain's
// errors: rdev.ErrLeaseNotHeld (LEASE_NOT_HELD) and rdev.ErrTaskFinished
// (TASK_FINISHED).
func (e *Error) Is(target error) bool {
	switch target {
	case rdev.ErrLeaseNotHeld:
		return e.Code == "LEASE_NOT_HELD"
	case rdev.ErrTaskFinished:
		return e.Code == "TASK_FINISHED"
	}
	return false
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s (%d %s", e.Message, e.Status, e.Code)
	if e.RequestID != "" {
		s += ", request id " + e.RequestID
	}
	return s + ")"
}

// ErrorCode returns the code of an *Error, or "".
func ErrorCode(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return ""
}

type envelope struct {
	Data  json.RawMessage `json:"data"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
	Meta struct {
		RequestID string `json:"request_id"`
	} `json:"meta"`
}

// do sends a request to path under /api/v1 and decodes the data of the
// answer into out (unless nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	return c.doRaw(ctx, method, path, query, body, out)
}

// doRaw is do with a body already encoded.
func (c *Client) doRaw(ctx context.Context, method, path string, query url.Values, body io.Reader, out any) error {
	in := body
	u := c.base + "/api/v1" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNoContent {
		return nil // nothing to decode; out stays as it was
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return &Error{Status: resp.StatusCode, Code: "BAD_RESPONSE", Message: fmt.Sprintf("unreadable response: %.200s", raw),
			RequestID: resp.Header.Get("X-Request-ID")}
	}
	if env.Error != nil || resp.StatusCode >= 400 {
		e := &Error{Status: resp.StatusCode, RequestID: env.Meta.RequestID}
		if env.Error != nil {
			e.Code, e.Message, e.Field = env.Error.Code, env.Error.Message, env.Error.Field
		}
		return e
	}
	if out != nil {
		return json.Unmarshal(env.Data, out)
	}
	return nil
}

// ListOptions pages a list.
type ListOptions struct {
	Limit  int
	Cursor string
}

func (o ListOptions) query() url.Values {
	q := url.Values{}
	if o.Limit > 0 {
		q.Set("limit", fmt.Sprint(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	return q
}

// Deleted is the answer to a delete.
type Deleted struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}
