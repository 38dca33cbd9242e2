package client

import (
	"context"
	"net/url"
	"time"
)

// CreateKey creates an API key; the token is in the result only.
func (c *Client) CreateKey(ctx context.Context, r KeyRequest) (*CreatedKey, error) {
	var k CreatedKey
	return &k, c.do(ctx, "POST", "/keys", nil, r, &k)
}

// ListKeys returns a page of keys.
func (c *Client) ListKeys(ctx context.Context, o ListOptions) ([]APIKey, string, error) {
	var out struct {
		Keys       []APIKey `json:"keys"`
		NextCursor string   `json:"next_cursor"`
	}
	err := c.do(ctx, "GET", "/keys", o.query(), nil, &out)
	return out.Keys, out.NextCursor, err
}

// DeleteKey deletes a key.
func (c *Client) DeleteKey(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/keys/"+url.PathEscape(id), nil, nil, nil)
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	KeyID, Target string
	Since, Until  time.Time
	ListOptions
}

// ListAudit returns a page of audit entries.
func (c *Client) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, string, error) {
	q := f.query()
	if f.KeyID != "" {
		q.Set("key", f.KeyID)
	}
	if f.Target != "" {
		q.Set("target", f.Target)
	}
	if !f.Since.IsZero() {
		q.Set("since", f.Since.UTC().Format(time.RFC3339Nano))
	}
	if !f.Until.IsZero() {
		q.Set("until", f.Until.UTC().Format(time.RFC3339Nano))
	}
	var out struct {
		Entries    []AuditEntry `json:"entries"`
		NextCursor string       `json:"next_cursor"`
	}
	err := c.do(ctx, "GET", "/audit", q, nil, &out)
	return out.Entries, out.NextCursor, err
}
