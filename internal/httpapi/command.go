package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"rdev.dev/rdev/internal/jsonstr"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/service"
)

// SSEKeepalive is how often an idle event stream gets a comment line.
var SSEKeepalive = 15 * time.Second

// commandResult is the answer of POST …/commands?wait=true.
type commandResult struct {
	*rdev.Command
	Stdout          string `json:"stdout"`
	Stderr          string `json:"stderr"`
	OutputTruncated bool   `json:"output_truncated,omitempty"`
}

// waitOutputLimit bounds each of stdout and stderr in a wait=true answer.
const waitOutputLimit = 1 << 20

func (s *Server) runCommand(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid := chi.URLParam(r, "sid")
	setTarget(r, "session/"+sid)
	var req service.CommandRequest
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	cmd, err := s.svc.RunCommand(r.Context(), caller(r.Context()), id, sid, req)
	if err != nil {
		s.respondError(w, r, err, "Failed to run command")
		return
	}
	setTarget(r, "command/"+cmd.ID)
	if r.URL.Query().Get("wait") != "true" {
		respond(w, r, http.StatusCreated, cmd)
		return
	}
	done, err := s.svc.WaitCommand(r.Context(), sid, cmd.ID)
	if err != nil {
		s.respondError(w, r, err, "Failed to run command")
		return
	}
	out, errOut, trunc, err := s.svc.CommandOutput(r.Context(), cmd.ID, waitOutputLimit)
	if err != nil {
		s.respondError(w, r, err, "Failed to run command")
		return
	}
	respond(w, r, http.StatusCreated, commandResult{Command: done, Stdout: string(out), Stderr: string(errOut), OutputTruncated: trunc})
}

func (s *Server) listCommands(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	page, err := pageParams(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	cs, next, err := s.svc.ListCommands(r.Context(), caller(r.Context()), id, chi.URLParam(r, "sid"), page)
	if err != nil {
		s.respondError(w, r, err, "Failed to list commands")
		return
	}
	respond(w, r, http.StatusOK, listBody{"commands": cs}.next(next))
}

func (s *Server) getCommand(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	c, err := s.svc.GetCommand(r.Context(), caller(r.Context()), id, chi.URLParam(r, "sid"), chi.URLParam(r, "cmd"))
	if err != nil {
		s.respondError(w, r, err, "Failed to get command")
		return
	}
	respond(w, r, http.StatusOK, c)
}

func (s *Server) commandStdin(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid, cid := chi.URLParam(r, "sid"), chi.URLParam(r, "cmd")
	setTarget(r, "command/"+cid)
	body := http.MaxBytesReader(w, r.Body, MaxBodyBytes)
	n, err := s.svc.WriteStdin(r.Context(), caller(r.Context()), id, sid, cid, body, r.URL.Query().Get("eof") == "true")
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = errBodyTooLarge
	}
	if err != nil {
		s.respondError(w, r, err, "Failed to write stdin")
		return
	}
	respond(w, r, http.StatusOK, map[string]any{"written": n, "eof": r.URL.Query().Get("eof") == "true"})
}

func (s *Server) commandSignal(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid, cid := chi.URLParam(r, "sid"), chi.URLParam(r, "cmd")
	setTarget(r, "command/"+cid)
	var req struct {
		Signal string `json:"signal"`
	}
	if err := decode(w, r, &req); err != nil {
		s.respondError(w, r, err, "")
		return
	}
	if err := s.svc.SignalCommand(r.Context(), caller(r.Context()), id, sid, cid, req.Signal); err != nil {
		s.respondError(w, r, err, "Failed to signal command")
		return
	}
	respond(w, r, http.StatusOK, map[string]string{"id": cid, "signal": req.Signal})
}

// commandEvents streams a command's events as Server-Sent Events, from
// Last-Event-ID (or ?after=) on, and ends after the exit event.
func (s *Server) commandEvents(w http.ResponseWriter, r *http.Request) {
	id, err := projectID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	sid, cid := chi.URLParam(r, "sid"), chi.URLParam(r, "cmd")
	after, err := lastEventID(r)
	if err != nil {
		s.respondError(w, r, err, "")
		return
	}
	if _, err := s.svc.GetCommand(r.Context(), caller(r.Context()), id, sid, cid); err != nil {
		s.respondError(w, r, err, "Failed to get command")
		return
	}
	s.streamEvents(w, r, "command/"+cid, func(idle func() error, emit func(rdev.Event) error) error {
		return s.svc.Follow(r.Context(), sid, cid, after, SSEKeepalive, idle, emit)
	})
}

// lastEventID is where an event stream resumes: Last-Event-ID, or ?after=.
func lastEventID(r *http.Request) (int64, error) {
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, rdev.Invalid("after", "Last-Event-ID and after must be a non-negative event id")
		}
		return n, nil
	}
	return 0, nil
}

// streamEvents answers with Server-Sent Events: one flush per event, a
// keep-alive comment when idle, until follow returns.
func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request, what string, follow func(idle func() error, emit func(rdev.Event) error) error) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	var buf []byte
	err := follow(
		func() error {
			if _, err := w.Write([]byte(": keepalive\n\n")); err != nil {
				return err
			}
			return rc.Flush()
		},
		func(e rdev.Event) error {
			buf = appendSSE(buf[:0], e)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			return rc.Flush()
		})
	if err != nil && r.Context().Err() == nil {
		s.log.WarnContext(r.Context(), "event stream ended", "stream", what, "err", err)
	}
}

// appendSSE encodes one event: id, event type and a JSON data line. Output
// that is not UTF-8 goes as data_b64.
func appendSSE(b []byte, e rdev.Event) []byte {
	var payload any
	switch e.Type {
	case rdev.EventStdout, rdev.EventStderr:
		if utf8.Valid(e.Data) {
			// Output is most of the stream: escape it directly rather than
			// through encoding/json's reflection and HTML escaping.
			b = fmt.Appendf(b, "id: %d\nevent: %s\ndata: {\"data\":", e.ID, e.Type)
			b = jsonstr.Append(b, e.Data)
			return append(b, '}', '\n', '\n')
		} else {
			payload = struct {
				DataB64 string `json:"data_b64"`
			}{base64.StdEncoding.EncodeToString(e.Data)}
		}
	case rdev.EventStart:
		payload = struct {
			PID     int    `json:"pid"`
			Message string `json:"message,omitempty"`
		}{e.PID, e.Reason}
	case rdev.EventExit:
		payload = struct {
			ExitCode *int   `json:"exit_code"`
			Signal   string `json:"signal,omitempty"`
			Reason   string `json:"reason"`
		}{e.ExitCode, e.Signal, e.Reason}
	default:
		payload = struct {
			Message string `json:"message"`
		}{e.Reason}
	}
	data, _ := json.Marshal(payload)
	b = fmt.Appendf(b, "id: %d\nevent: %s\ndata: ", e.ID, e.Type)
	b = append(b, data...)
	return append(b, '\n', '\n')
}
