package client

import (
	"context"
	"net/url"
)

// CreateProject registers a project.
func (c *Client) CreateProject(ctx context.Context, r ProjectRequest) (*Project, error) {
	var p Project
	return &p, c.do(ctx, "POST", "/projects", nil, r, &p)
}

// GetProject returns one project.
func (c *Client) GetProject(ctx context.Context, id string) (*Project, error) {
	var p Project
	return &p, c.do(ctx, "GET", "/projects/"+url.PathEscape(id), nil, nil, &p)
}

// ListProjects returns a page of projects and the cursor of the next page.
func (c *Client) ListProjects(ctx context.Context, o ListOptions) ([]Project, string, error) {
	var out struct {
		Projects   []Project `json:"projects"`
		NextCursor string    `json:"next_cursor"`
	}
	err := c.do(ctx, "GET", "/projects", o.query(), nil, &out)
	return out.Projects, out.NextCursor, err
}

// PatchProject changes the fields set in patch.
func (c *Client) PatchProject(ctx context.Context, id string, patch ProjectPatch) (*Project, error) {
	var p Project
	return &p, c.do(ctx, "PATCH", "/projects/"+url.PathEscape(id), nil, patch, &p)
}

// DeleteProject deletes a project.
func (c *Client) DeleteProject(ctx context.Context, id string) error {
	return c.do(ctx, "DELETE", "/projects/"+url.PathEscape(id), nil, nil, nil)
}
