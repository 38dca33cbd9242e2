package client

import (
	"context"
	"net/url"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// Checkout types shared with the server.
type (
	Checkout        = rdev.Checkout
	CheckoutRequest = service.CheckoutRequest
	CreatedCheckout = service.CreatedCheckout
	CheckinRequest  = service.CheckinRequest
	CheckinResult   = service.CheckinResult
)

// CreateCheckout checks out a branch of a project; the token is in the
// result only.
func (c *Client) CreateCheckout(ctx context.Context, project string, r CheckoutRequest) (*CreatedCheckout, error) {
	var out CreatedCheckout
	return &out, c.do(ctx, "POST", "/projects/"+url.PathEscape(project)+"/checkouts", nil, r, &out)
}

// GetCheckout returns one checkout.
func (c *Client) GetCheckout(ctx context.Context, project, id string) (*Checkout, error) {
	var out Checkout
	return &out, c.do(ctx, "GET", "/projects/"+url.PathEscape(project)+"/checkouts/"+url.PathEscape(id), nil, nil, &out)
}

// ListCheckouts returns a page of a project's checkouts.
func (c *Client) ListCheckouts(ctx context.Context, project string, o ListOptions) ([]Checkout, string, error) {
	var out struct {
		Checkouts  []Checkout `json:"checkouts"`
		NextCursor string     `json:"next_cursor"`
	}
	err := c.do(ctx, "GET", "/projects/"+url.PathEscape(project)+"/checkouts", o.query(), nil, &out)
	return out.Checkouts, out.NextCursor, err
}

// CheckinCheckout ends a checkout.
func (c *Client) CheckinCheckout(ctx context.Context, project, id string, r CheckinRequest) (*CheckinResult, error) {
	var out CheckinResult
	return &out, c.do(ctx, "POST", "/projects/"+url.PathEscape(project)+"/checkouts/"+url.PathEscape(id)+"/checkin", nil, r, &out)
}
