package rdev

import (
	"context"
	"errors"
	"time"
)

// Command statuses: running, then the reason it ended.
const (
	CommandRunning = "running"
	CommandExited  = "exited"
	CommandKilled  = "killed"
	CommandTimeout = "timeout"
	CommandLost    = "lost" // the server stopped while it ran
)

// Event types of a command's stream.
const (
	EventStart     = "start"
	EventStdout    = "stdout"
	EventStderr    = "stderr"
	EventExit      = "exit"
	EventTruncated = "truncated" // older output was dropped to stay within the bound
)

// Command errors.
var (
	ErrCommandNotFound   = errors.New("command not found")
	ErrCommandNotRunning = errors.New("command is not running")
	ErrNoStdin           = errors.New("command was started without stdin")
	ErrStdinClosed       = errors.New("the command's stdin is closed")
)

// CommandSpec is what to run.
type CommandSpec struct {
	Command string            `json:"command,omitempty"` // a shell string, run by /bin/sh -c
	Argv    []string          `json:"argv,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	Cwd     string            `json:"cwd,omitempty"`     // relative to the workspace
	Timeout string            `json:"timeout,omitempty"` // a Go duration
	Stdin   bool              `json:"stdin,omitempty"`
}

// Command is a process run in a session's workspace.
type Command struct {
	ID           string      `json:"id"`
	SessionID    string      `json:"session_id"`
	ProjectID    string      `json:"project_id"`
	Spec         CommandSpec `json:"spec"`
	Status       string      `json:"status"`
	ExitCode     *int        `json:"exit_code,omitempty"`
	Signal       string      `json:"signal,omitempty"`
	PID          int         `json:"pid,omitempty"`
	StartedAt    time.Time   `json:"started_at"`
	EndedAt      *time.Time  `json:"ended_at,omitempty"`
	Bytes        int64       `json:"bytes"`         // output bytes produced
	DroppedBytes int64       `json:"dropped_bytes"` // of which dropped to stay within the bound
	LastEventID  int64       `json:"last_event_id"`
}

// Event is one entry of a command's stream. IDs increase from 1 without
// gaps as they are made; dropped output leaves a gap that a truncated event
// reports.
type Event struct {
	ID       int64     `json:"id"`
	Type     string    `json:"type"`
	Data     []byte    `json:"-"`
	At       time.Time `json:"at"`
	ExitCode *int      `json:"exit_code,omitempty"`
	Signal   string    `json:"signal,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	PID      int       `json:"pid,omitempty"`
}

// CommandStore persists commands and their output.
type CommandStore interface {
	// CreateCommand inserts c (running).
	CreateCommand(ctx context.Context, c *Command) error
	// GetCommand returns a command of session. ErrCommandNotFound.
	GetCommand(ctx context.Context, sessionID, id string) (*Command, error)
	// ListCommands returns a page of the session's commands, newest first.
	ListCommands(ctx context.Context, sessionID string, page Page) ([]*Command, string, error)
	// AppendEvents stores events (ids in order, after the command's last),
	// counts outputBytes, and drops the oldest output events while the
	// command's stored output exceeds maxBytes. It returns the bytes
	// dropped by this call.
	AppendEvents(ctx context.Context, commandID string, events []Event, outputBytes, maxBytes int64) (int64, error)
	// FinishCommand records the end of a running command.
	FinishCommand(ctx context.Context, c *Command) error
	// ListEvents returns at most limit events with id > after, in order.
	ListEvents(ctx context.Context, commandID string, after int64, limit int) ([]Event, error)
	// LoseRunningCommands marks every running command lost at at, with an
	// exit event, and returns them (called at start: their process died
	// with the previous server).
	LoseRunningCommands(ctx context.Context, at time.Time) ([]*Command, error)
	// RunningCommands returns the session's running commands.
	RunningCommands(ctx context.Context, sessionID string) ([]*Command, error)
}
