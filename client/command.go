package client

import (
	"bytes"
	"context"
	"net/url"

	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// Command types shared with the server.
type (
	Command        = rdev.Command
	CommandRequest = service.CommandRequest
)

// CommandResult is a finished command with its output (RunCommandWait).
type CommandResult struct {
	Command
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	OutputTruncated bool   `json:"output_truncated"`
}

func commandPath(project, session string) string {
	return sessionPath(project) + "/" + url.PathEscape(session) + "/commands"
}

// RunCommand starts a command in a session.
func (c *Client) RunCommand(ctx context.Context, project, session string, r CommandRequest) (*Command, error) {
	var out Command
	return &out, c.do(ctx, "POST", commandPath(project, session), nil, r, &out)
}

// RunCommandWait runs a command and waits (up to two minutes) for its end.
func (c *Client) RunCommandWait(ctx context.Context, project, session string, r CommandRequest) (*CommandResult, error) {
	var out CommandResult
	return &out, c.do(ctx, "POST", commandPath(project, session), url.Values{"wait": {"true"}}, r, &out)
}

// GetCommand returns one command.
func (c *Client) GetCommand(ctx context.Context, project, session, id string) (*Command, error) {
	var out Command
	return &out, c.do(ctx, "GET", commandPath(project, session)+"/"+url.PathEscape(id), nil, nil, &out)
}

// ListCommands returns a page of a session's commands.
func (c *Client) ListCommands(ctx context.Context, project, session string, o ListOptions) ([]Command, string, error) {
	var out struct {
		Commands   []Command `json:"commands"`
		NextCursor string    `json:"next_cursor"`
	}
	err := c.do(ctx, "GET", commandPath(project, session), o.query(), nil, &out)
	return out.Commands, out.NextCursor, err
}

// Signal sends a signal to a running command.
func (c *Client) Signal(ctx context.Context, project, session, id, signal string) error {
	return c.do(ctx, "POST", commandPath(project, session)+"/"+url.PathEscape(id)+"/signal", nil, map[string]string{"signal": signal}, nil)
}

// WriteStdin sends data to a running command's stdin; eof closes it.
func (c *Client) WriteStdin(ctx context.Context, project, session, id string, data []byte, eof bool) error {
	q := url.Values{}
	if eof {
		q.Set("eof", "true")
	}
	return c.doRaw(ctx, "POST", commandPath(project, session)+"/"+url.PathEscape(id)+"/stdin", q, bytes.NewReader(data), nil)
}
