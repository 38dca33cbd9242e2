package kube

import (
	"context"
	"net"
)

// DialPreview connects to the session's preview port at the dev pod's IP.
func (c *Cluster) DialPreview(ctx context.Context, projectID, sessionID string) (net.Conn, error) {
	addr, err := c.PreviewAddr(ctx, projectID, sessionID)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
