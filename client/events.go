package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"rdev.dev/rdev/internal/jsonstr"
)

// Event is one event of a command's stream.
type Event struct {
	ID       int64
	Type     string // start, stdout, stderr, exit, truncated
	Data     []byte // stdout/stderr bytes
	PID      int
	ExitCode *int
	Signal   string
	Reason   string
	Message  string
}

// FollowOnce reads a command's event stream once, from after, calling fn for
// each event. It returns the id of the last event read and nil once the exit
// event was read, or an error (a dropped connection included).
func (c *Client) FollowOnce(ctx context.Context, project, session, cmd string, after int64, fn func(Event) error) (int64, error) {
	return c.followOnce(ctx, commandPath(project, session)+"/"+url.PathEscape(cmd)+"/events", after, fn)
}

// followOnce reads the event stream at path (under /api/v1) once.
func (c *Client) followOnce(ctx context.Context, path string, after int64, fn func(Event) error) (int64, error) {
	u := c.base + "/api/v1" + path
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return after, err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+c.token)
	if after > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(after, 10))
	}
	hc := *c.http
	hc.Timeout = 0 // a stream lasts as long as its command
	resp, err := hc.Do(req)
	if err != nil {
		return after, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var env envelope
		e := &Error{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-ID")}
		if json.Unmarshal(raw, &env) == nil && env.Error != nil {
			e.Code, e.Message, e.Field = env.Error.Code, env.Error.Message, env.Error.Field
		}
		return after, e
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev Event
	var data string
	var decoded bool
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			if ev.Type == "" {
				continue
			}
			if !decoded {
				if err := decodeEvent(&ev, data); err != nil {
					return after, err
				}
			}
			if err := fn(ev); err != nil {
				return after, err
			}
			after = ev.ID
			if ev.Type == "exit" {
				return after, nil
			}
			ev, data, decoded = Event{}, "", false
		case bytes.HasPrefix(line, []byte("id: ")):
			ev.ID, _ = strconv.ParseInt(string(line[4:]), 10, 64)
		case bytes.HasPrefix(line, []byte("event: ")):
			ev.Type = string(line[7:])
		case bytes.HasPrefix(line, []byte("data: ")):
			// Output, most of a stream, is decoded straight from the
			// read buffer; anything else is kept for encoding/json.
			if b, ok := fastData(line[6:]); ok {
				ev.Data, decoded = b, true
			} else {
				data, decoded = string(line[6:]), false
			}
		}
	}
	if err := sc.Err(); err != nil {
		return after, err
	}
	return after, io.ErrUnexpectedEOF
}

// fastData decodes an event body of the form {"data":"…"} whose string
// uses only the server's simple escapes; ok is false for anything else.
func fastData(line []byte) ([]byte, bool) {
	inner, ok := bytes.CutPrefix(line, []byte(`{"data":"`))
	if !ok {
		return nil, false
	}
	if inner, ok = bytes.CutSuffix(inner, []byte(`"}`)); !ok {
		return nil, false
	}
	if b, ok := jsonstr.Unescape(inner); ok && utf8.Valid(b) {
		return b, true
	}
	return nil, false
}

func decodeEvent(ev *Event, data string) error {
	var p struct {
		Data     *string `json:"data"`
		DataB64  string  `json:"data_b64"`
		PID      int     `json:"pid"`
		ExitCode *int    `json:"exit_code"`
		Signal   string  `json:"signal"`
		Reason   string  `json:"reason"`
		Message  string  `json:"message"`
	}
	if err := json.Unmarshal([]byte(data), &p); err != nil {
		return fmt.Errorf("event %d: %w", ev.ID, err)
	}
	switch {
	case p.Data != nil:
		ev.Data = []byte(*p.Data)
	case p.DataB64 != "":
		b, err := base64.StdEncoding.DecodeString(p.DataB64)
		if err != nil {
			return fmt.Errorf("event %d: %w", ev.ID, err)
		}
		ev.Data = b
	}
	ev.PID, ev.ExitCode, ev.Signal, ev.Reason, ev.Message = p.PID, p.ExitCode, p.Signal, p.Reason, p.Message
	return nil
}

// Follow reads a command's events from after until its exit event,
// reconnecting with Last-Event-ID when the connection drops, so fn sees
// every event once, in order. It returns the exit event.
func (c *Client) Follow(ctx context.Context, project, session, cmd string, after int64, fn func(Event) error) (*Event, error) {
	return c.follow(ctx, commandPath(project, session)+"/"+url.PathEscape(cmd)+"/events", after, fn)
}

// FollowTask reads a task's log from after until it finishes (its exit
// event, whose Reason is the task's final status), reconnecting as Follow
// does.
func (c *Client) FollowTask(ctx context.Context, task string, after int64, fn func(Event) error) (*Event, error) {
	return c.follow(ctx, "/tasks/"+url.PathEscape(task)+"/events", after, fn)
}

func (c *Client) follow(ctx context.Context, path string, after int64, fn func(Event) error) (*Event, error) {
	var exit *Event
	wrapped := func(e Event) error {
		if e.Type == "exit" {
			ex := e
			exit = &ex
		}
		return fn(e)
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		last, err := c.followOnce(ctx, path, after, wrapped)
		if err == nil && exit != nil {
			return exit, nil
		}
		var ce *Error
		if errors.As(err, &ce) || ctx.Err() != nil || attempt >= 20 {
			return nil, err
		}
		if last > after {
			after, backoff, attempt = last, 100*time.Millisecond, 0
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}
