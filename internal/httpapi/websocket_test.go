package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestPreviewPassesWebSockets: an upgrade through the preview proxy
// reaches the session's app, and bytes flow both ways after it.
func TestPreviewPassesWebSockets(t *testing.T) {
	h := newHarness(t)
	sid := startSession(t, h)
	r := h.do("POST", "/api/v1/projects/web/sessions/"+sid+"/commands?wait=true", h.admin, `{"command":"printf %s $PORT"}`)
	var res struct {
		Stdout string `json:"stdout"`
	}
	mustJSON(t, r.Data, &res)
	// The session's app: answers an upgrade with 101, then echoes.
	ln, err := net.Listen("tcp", "127.0.0.1:"+res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("Authorization") != "" {
			http.Error(w, "want an upgrade without rdev's credentials", 400)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(conn, brw)
	}))

	conn, err := net.Dial("tcp", strings.TrimPrefix(h.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /socket HTTP/1.1\r\nHost: %s.preview.localhost\r\nAuthorization: Bearer %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", sid, h.admin)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("upgrade through the preview: %d %s", resp.StatusCode, b)
	}
	fmt.Fprint(conn, "ping through rdev")
	buf := make([]byte, len("ping through rdev"))
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping through rdev" {
		t.Fatalf("echo after the upgrade: %q %v", buf, err)
	}
}
