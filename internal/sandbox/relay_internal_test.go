package sandbox

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// The code of a pod cannot spend the agent's (and rdev's) file
// descriptors through a relay: past MaxRelayed connections at once, new
// ones are closed unrelayed, and a slot frees when a connection ends.
func TestRelayBounded(t *testing.T) {
	dir, err := os.MkdirTemp("", "relay") // short: unix socket paths are bounded
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "up")
	up, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	upstream := make(chan net.Conn, MaxRelayed+2)
	go func() {
		for {
			c, err := up.Accept()
			if err != nil {
				return
			}
			upstream <- c
		}
	}()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go (&Agent{Log: slog.New(slog.DiscardHandler)}).relay(ln, sock)

	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	relayed := func() net.Conn {
		t.Helper()
		select {
		case u := <-upstream:
			t.Cleanup(func() { u.Close() })
			return u
		case <-time.After(10 * time.Second):
			t.Fatal("a connection was not relayed")
			return nil
		}
	}
	var first, firstUp net.Conn
	for i := range MaxRelayed {
		c := dial()
		u := relayed()
		if i == 0 {
			first, firstUp = c, u
		}
	}
	// One too many: closed without reaching upstream.
	extra := dial()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := extra.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !isReset(err) {
		t.Fatalf("a connection past the bound: read %v, want it closed", err)
	}
	select {
	case <-upstream:
		t.Fatal("a connection past the bound was relayed")
	default:
	}
	// A connection ends: the next one is relayed again.
	first.Close()
	firstUp.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := dial()
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			relayed() // still open after 200 ms: it was relayed
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no slot freed after a relayed connection ended")
		}
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
