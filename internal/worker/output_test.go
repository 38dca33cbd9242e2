package worker

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// logAPI records AppendTaskLog calls; the rest of API is unused here.
type logAPI struct {
	API
	mu    sync.Mutex
	calls []string // "stream:data"
	fail  bool
}

func (a *logAPI) AppendTaskLog(ctx context.Context, task, worker, stream string, data []byte) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.fail {
		return errors.New("server gone")
	}
	a.calls = append(a.calls, stream+":"+string(data))
	return nil
}

func (a *logAPI) joined() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return strings.Join(a.calls, "|")
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestOutputKeepsTheOrderOfTheStreams(t *testing.T) {
	api := &logAPI{}
	o := newOutput(context.Background(), api, "t1", "w1", quiet())
	o.Stdout.Write([]byte("a"))
	o.Stdout.Write([]byte("b"))
	o.Stderr.Write([]byte("c")) // a switch sends what stdout holds first
	o.Stdout.Write([]byte("d"))
	o.Close()
	if got := api.joined(); got != "stdout:ab|stderr:c|stdout:d" {
		t.Fatalf("sent %q", got)
	}
}

func TestOutputSendsAfterTheDelay(t *testing.T) {
	api := &logAPI{}
	o := newOutput(context.Background(), api, "t1", "w1", quiet())
	o.Stdout.Write([]byte("early\n"))
	deadline := time.Now().Add(5 * time.Second)
	for api.joined() == "" {
		if time.Now().After(deadline) {
			t.Fatal("nothing sent within 5 s of the first write")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := api.joined(); got != "stdout:early\n" {
		t.Fatalf("sent %q", got)
	}
	o.Close()
}

func TestOutputBoundedWithANote(t *testing.T) {
	api := &logAPI{}
	o := newOutput(context.Background(), api, "t1", "w1", quiet())
	chunk := bytes.Repeat([]byte("x"), 1<<20)
	for range MaxTaskLog>>20 + 2 { // two MiB past the bound
		if n, err := o.Stdout.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	o.Close()
	sent := 0
	for _, c := range api.calls {
		if data, ok := strings.CutPrefix(c, "stdout:"); ok {
			sent += len(data)
		}
	}
	last := api.calls[len(api.calls)-1]
	if sent != MaxTaskLog || !strings.HasPrefix(last, "stderr:rdev: 2097152 more bytes of output were not logged") {
		t.Fatalf("sent %d bytes of stdout (bound %d); last call %.80q", sent, MaxTaskLog, last)
	}
	// Writes after Close are taken and dropped.
	if n, err := o.Stderr.Write([]byte("late")); n != 4 || err != nil {
		t.Fatal(n, err)
	}
}

func TestOutputNeverFailsTheCommand(t *testing.T) {
	api := &logAPI{fail: true}
	o := newOutput(context.Background(), api, "t1", "w1", quiet())
	big := bytes.Repeat([]byte("y"), logBatch+1) // sent at once, and refused
	if n, err := o.Stdout.Write(big); n != len(big) || err != nil {
		t.Fatalf("write with the server gone: %d %v", n, err)
	}
	o.Close()
}
