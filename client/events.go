package client

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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
	u := c.base + "/api/v1" + commandPath(project, session) + "/" + url.PathEscape(cmd) + "/events"
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
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Type == "" {
				continue
			}
			if err := decodeEvent(&ev, data); err != nil {
				return after, err
			}
			if err := fn(ev); err != nil {
				return after, err
			}
			after = ev.ID
			if ev.Type == "exit" {
				return after, nil
			}
			ev, data = Event{}, ""
		case strings.HasPrefix(line, "id: "):
			ev.ID, _ = strconv.ParseInt(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			ev.Type = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		}
	}
	if err := sc.Err(); err != nil {
		return after, err
	}
	return after, io.ErrUnexpectedEOF
}

func decodeEvent(ev *Event, data string) error {
	// Output is most of a stream: unescape the server's simple escapes
	// directly; anything else goes through encoding/json.
	if inner, ok := strings.CutPrefix(data, `{"data":"`); ok {
		if inner, ok = strings.CutSuffix(inner, `"}`); ok {
			if b, ok := unescape(inner); ok && utf8.Valid(b) {
				ev.Data = b
				return nil
			}
		}
	}
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
		last, err := c.FollowOnce(ctx, project, session, cmd, after, wrapped)
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

// unescape decodes the inside of a JSON string that uses only the escapes
// \n \r \t \" \\ and \u00XX; ok is false for anything else.
func unescape(s string) ([]byte, bool) {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c < 0x20: // JSON wants these escaped
			return nil, false
		case c != '\\':
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, false
		}
		i++
		switch s[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case '"', '\\', '/':
			out = append(out, s[i])
		case 'u':
			if i+4 >= len(s) || s[i+1] != '0' || s[i+2] != '0' {
				return nil, false
			}
			hi, lo := unhex(s[i+3]), unhex(s[i+4])
			if hi < 0 || lo < 0 || hi >= 8 { // \u0080 and up are code points, not bytes
				return nil, false
			}
			out = append(out, byte(hi<<4|lo))
			i += 4
		default:
			return nil, false
		}
	}
	return out, true
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
