package httpapi_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

type sseEvent struct {
	ID   int64
	Type string
	Data map[string]any
}

// readSSE reads events from an event stream until it ends or stop says so.
func readSSE(t *testing.T, body io.Reader, stop func(sseEvent) bool) []sseEvent {
	t.Helper()
	var out []sseEvent
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	var cur sseEvent
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.Type != "" {
				out = append(out, cur)
				if stop != nil && stop(cur) {
					return out
				}
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id: "):
			cur.ID, _ = strconv.ParseInt(line[4:], 10, 64)
		case strings.HasPrefix(line, "event: "):
			cur.Type = line[7:]
		case strings.HasPrefix(line, "data: "):
			if err := json.Unmarshal([]byte(line[6:]), &cur.Data); err != nil {
				t.Fatalf("event data %q: %v", line, err)
			}
		}
	}
	return out
}

func (h *harness) stream(t *testing.T, path string, lastID int64) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", h.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+h.admin)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatInt(lastID, 10))
	}
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" || resp.Header.Get("X-Accel-Buffering") != "no" {
		t.Fatalf("stream: %d %v", resp.StatusCode, resp.Header)
	}
	return resp
}

func startSession(t *testing.T, h *harness) string {
	sessionsHarness(t, h)
	r := h.do("POST", "/api/v1/projects/web/sessions", h.admin, `{"new_branch":"agent/cmd"}`)
	r.want(t, 201, "")
	var s struct {
		ID string `json:"id"`
	}
	mustJSON(t, r.Data, &s)
	return s.ID
}

func TestCommandEvents(t *testing.T) {
	h := newHarness(t)
	sid := startSession(t, h)
	base := "/api/v1/projects/web/sessions/" + sid + "/commands"

	t.Run("WaitAndEvents", func(t *testing.T) {
		r := h.do("POST", base+"?wait=true", h.admin, `{"command":"echo out; echo err >&2; exit 3"}`)
		r.want(t, 201, "")
		var res struct {
			ID       string `json:"id"`
			Status   string `json:"status"`
			ExitCode *int   `json:"exit_code"`
			Stdout   string `json:"stdout"`
			Stderr   string `json:"stderr"`
		}
		mustJSON(t, r.Data, &res)
		if res.Status != "exited" || res.ExitCode == nil || *res.ExitCode != 3 || res.Stdout != "out\n" || res.Stderr != "err\n" {
			t.Fatalf("wait: %s", r.Data)
		}
		resp := h.stream(t, base+"/"+res.ID+"/events", 0)
		defer resp.Body.Close()
		evs := readSSE(t, resp.Body, nil)
		var kinds []string
		for i, e := range evs {
			kinds = append(kinds, e.Type)
			if e.ID != int64(i+1) {
				t.Fatalf("event ids not 1..n: %+v", evs)
			}
		}
		got := strings.Join(kinds, ",")
		if got != "start,stdout,stderr,exit" && got != "start,stderr,stdout,exit" {
			t.Fatalf("events %s", got)
		}
		last := evs[len(evs)-1]
		if last.Data["exit_code"] != float64(3) || last.Data["reason"] != "exited" || evs[0].Data["pid"] == nil {
			t.Fatalf("exit %+v start %+v", last, evs[0])
		}
	})

	t.Run("CharactersSplitAcrossBatchesArriveWhole", func(t *testing.T) {
		// The first bytes of é and ✓ come in one batch, the rest after the
		// batch delay: each stream's events must still be valid UTF-8 text
		// (data, not data_b64) that joins to what was written.
		script := `printf 'a\303'; printf 'x\342\234' >&2; sleep 0.2; printf '\251b\n'; printf '\223y\n' >&2`
		body, _ := json.Marshal(map[string]string{"command": script})
		r := h.do("POST", base+"?wait=true", h.admin, string(body))
		r.want(t, 201, "")
		var res struct {
			ID string `json:"id"`
		}
		mustJSON(t, r.Data, &res)
		resp := h.stream(t, base+"/"+res.ID+"/events", 0)
		defer resp.Body.Close()
		got := map[string]string{}
		for _, e := range readSSE(t, resp.Body, nil) {
			if e.Type != "stdout" && e.Type != "stderr" {
				continue
			}
			d, ok := e.Data["data"].(string)
			if !ok {
				t.Fatalf("event %d is not text: %+v", e.ID, e.Data)
			}
			got[e.Type] += d
		}
		if got["stdout"] != "aéb\n" || got["stderr"] != "x✓y\n" {
			t.Fatalf("stdout %q stderr %q", got["stdout"], got["stderr"])
		}
	})

	t.Run("ResumeIsByteExact", func(t *testing.T) {
		// 10 MB of output in numbered lines, on stdout.
		r := h.do("POST", base, h.admin, `{"command":"i=0; while [ $i -lt 100000 ]; do printf '%099d\n' $i; i=$((i+1)); done"}`)
		r.want(t, 201, "")
		var c struct {
			ID string `json:"id"`
		}
		mustJSON(t, r.Data, &c)
		path := base + "/" + c.ID + "/events"
		// First connection: read about half, then drop it.
		resp := h.stream(t, path, 0)
		var first bytes.Buffer
		var lastID int64
		readSSE(t, resp.Body, func(e sseEvent) bool {
			if e.Type == "stdout" {
				first.WriteString(e.Data["data"].(string))
			}
			lastID = e.ID
			return first.Len() > 5<<20
		})
		resp.Body.Close()
		resp = h.stream(t, path, lastID)
		defer resp.Body.Close()
		var rest bytes.Buffer
		evs := readSSE(t, resp.Body, nil)
		for i, e := range evs {
			if i == 0 && e.ID != lastID+1 {
				t.Fatalf("resumed at %d after %d", e.ID, lastID)
			}
			if e.Type == "stdout" {
				rest.WriteString(e.Data["data"].(string))
			}
		}
		var want bytes.Buffer
		for i := range 100000 {
			fmt.Fprintf(&want, "%099d\n", i)
		}
		got := append(first.Bytes(), rest.Bytes()...)
		if len(got) != want.Len() || sha256.Sum256(got) != sha256.Sum256(want.Bytes()) {
			t.Fatalf("resumed output: %d bytes, want %d, equal=%v", len(got), want.Len(), bytes.Equal(got, want.Bytes()))
		}
	})

	t.Run("StdinSignalTimeout", func(t *testing.T) {
		r := h.do("POST", base, h.admin, `{"argv":["cat"],"stdin":true}`)
		r.want(t, 201, "")
		var c struct {
			ID string `json:"id"`
		}
		mustJSON(t, r.Data, &c)
		h.do("POST", base+"/"+c.ID+"/stdin", h.admin, "hello ").want(t, 200, "")
		h.do("POST", base+"/"+c.ID+"/stdin?eof=true", h.admin, "world").want(t, 200, "")
		resp := h.stream(t, base+"/"+c.ID+"/events", 0)
		evs := readSSE(t, resp.Body, nil)
		resp.Body.Close()
		var out strings.Builder
		for _, e := range evs {
			if e.Type == "stdout" {
				out.WriteString(e.Data["data"].(string))
			}
		}
		if out.String() != "hello world" || evs[len(evs)-1].Data["exit_code"] != float64(0) {
			t.Fatalf("cat: %q %+v", out.String(), evs[len(evs)-1])
		}
		h.do("POST", base+"/"+c.ID+"/stdin", h.admin, "late").want(t, 409, "COMMAND_NOT_RUNNING")
		// A stdin closed while the command runs.
		r = h.do("POST", base, h.admin, `{"command":"exec 0<&-; sleep 30","stdin":true}`)
		r.want(t, 201, "")
		var c2 struct {
			ID string `json:"id"`
		}
		mustJSON(t, r.Data, &c2)
		h.do("POST", base+"/"+c2.ID+"/stdin?eof=true", h.admin, "").want(t, 200, "")
		h.do("POST", base+"/"+c2.ID+"/stdin", h.admin, "more").want(t, 409, "STDIN_CLOSED")
		h.do("POST", base+"/"+c2.ID+"/signal", h.admin, `{"signal":"KILL"}`).want(t, 200, "")

		r = h.do("POST", base, h.admin, `{"command":"sleep 30"}`)
		mustJSON(t, r.Data, &c)
		h.do("POST", base+"/"+c.ID+"/signal", h.admin, `{"signal":"SIGBOGUS"}`).want(t, 400, "BAD_REQUEST")
		h.do("POST", base+"/"+c.ID+"/signal", h.admin, `{"signal":"SIGTERM"}`).want(t, 200, "")
		resp = h.stream(t, base+"/"+c.ID+"/events", 0)
		evs = readSSE(t, resp.Body, nil)
		resp.Body.Close()
		if e := evs[len(evs)-1]; e.Data["reason"] != "killed" || e.Data["signal"] != "SIGTERM" {
			t.Fatalf("after SIGTERM: %+v", e)
		}

		t0 := time.Now()
		r = h.do("POST", base+"?wait=true", h.admin, `{"command":"sleep 30","timeout":"300ms"}`)
		var res struct {
			Status string `json:"status"`
		}
		mustJSON(t, r.Data, &res)
		if res.Status != "timeout" || time.Since(t0) > 10*time.Second {
			t.Fatalf("timeout: %s after %v", r.Data, time.Since(t0))
		}
	})

	t.Run("BadRequests", func(t *testing.T) {
		h.do("POST", base, h.admin, `{}`).want(t, 400, "BAD_REQUEST")
		h.do("POST", base, h.admin, `{"command":"x","argv":["y"]}`).want(t, 400, "BAD_REQUEST")
		h.do("POST", base, h.admin, `{"command":"pwd","cwd":"../.."}`).want(t, 400, "BAD_REQUEST")
		h.do("POST", base, h.admin, `{"command":"pwd","cwd":"/etc"}`).want(t, 400, "BAD_REQUEST")
		h.do("POST", base, h.admin, `{"command":"x","timeout":"soon"}`).want(t, 400, "BAD_REQUEST")
		h.do("POST", base, h.admin, `{"argv":["/no/such/program"]}`).want(t, 400, "BAD_REQUEST")
		h.do("GET", base+"/xnosuch", h.admin, nil).want(t, 404, "NOT_FOUND")
		h.do("GET", base+"/xnosuch/events", h.admin, nil).want(t, 404, "NOT_FOUND")
	})

	t.Run("EndingTheSessionKillsCommands", func(t *testing.T) {
		r := h.do("POST", base, h.admin, `{"command":"sleep 60 & sleep 60; wait"}`)
		r.want(t, 201, "")
		var c struct {
			ID string `json:"id"`
		}
		mustJSON(t, r.Data, &c)
		h.do("POST", "/api/v1/projects/web/sessions/"+sid+"/checkin", h.admin, `{"skip_review":true}`).want(t, 200, "")
		r = h.do("GET", base+"/"+c.ID, h.admin, nil)
		var got struct {
			Status string `json:"status"`
		}
		mustJSON(t, r.Data, &got)
		if got.Status != "killed" {
			t.Fatalf("command after check-in: %s", r.Data)
		}
		h.do("POST", base, h.admin, `{"command":"true"}`).want(t, 400, "BAD_REQUEST")
	})
}
