package worker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// A task's log is sent in batches: when a stream holds this much, or this
// long after its first unsent byte.
const (
	logBatch   = 256 << 10
	logDelay   = 200 * time.Millisecond
	MaxTaskLog = 16 << 20 // what one attempt may log; past it the rest is counted, not sent
)

// Output is a task's stdout and stderr, sent to its log in batches.
type Output struct {
	Stdout, Stderr *stream

	ctx           context.Context
	api           API
	task, worker  string
	log           *slog.Logger
	mu            sync.Mutex
	sent, dropped int64
	timer         *time.Timer
	closed        bool
}

type stream struct {
	o    *Output
	name string
	buf  []byte
}

func newOutput(ctx context.Context, api API, task, worker string, log *slog.Logger) *Output {
	o := &Output{ctx: ctx, api: api, task: task, worker: worker, log: log}
	o.Stdout, o.Stderr = &stream{o: o, name: rdev.EventStdout}, &stream{o: o, name: rdev.EventStderr}
	return o
}

// Write adds p to the stream; it never fails (a log that cannot be sent
// must not fail the task).
func (s *stream) Write(p []byte) (int, error) {
	o := s.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return len(p), nil
	}
	room := MaxTaskLog - o.sent - int64(len(o.Stdout.buf)+len(o.Stderr.buf))
	keep := p
	if int64(len(keep)) > room {
		keep = keep[:max(room, 0)]
		o.dropped += int64(len(p) - len(keep))
	}
	if len(keep) == 0 {
		return len(p), nil
	}
	// Keep the order of the two streams: switching streams sends what the
	// other one holds first.
	other := o.Stdout
	if s == o.Stdout {
		other = o.Stderr
	}
	if len(other.buf) > 0 {
		o.flushLocked(other)
	}
	s.buf = append(s.buf, keep...)
	if len(s.buf) >= logBatch {
		o.flushLocked(s)
	} else if o.timer == nil {
		o.timer = time.AfterFunc(logDelay, o.tick)
	}
	return len(p), nil
}

func (o *Output) tick() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.timer = nil
	o.flushLocked(o.Stdout)
	o.flushLocked(o.Stderr)
}

// flushLocked sends a stream's bytes; called with o.mu held, so sends keep
// their order.
func (o *Output) flushLocked(s *stream) {
	if len(s.buf) == 0 {
		return
	}
	for b := s.buf; len(b) > 0; {
		n := min(len(b), 1<<20)
		if err := o.api.AppendTaskLog(o.ctx, o.task, o.worker, s.name, b[:n]); err != nil {
			o.log.Warn("task log", "task", o.task, "err", err)
			break
		}
		o.sent += int64(n)
		b = b[n:]
	}
	s.buf = s.buf[:0]
}

// Close sends what is left (with a note of what was dropped).
func (o *Output) Close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.timer != nil {
		o.timer.Stop()
		o.timer = nil
	}
	o.flushLocked(o.Stdout)
	o.flushLocked(o.Stderr)
	if o.dropped > 0 {
		o.Stderr.buf = fmt.Appendf(o.Stderr.buf, "rdev: %d more bytes of output were not logged (the log keeps %d MiB per attempt)\n", o.dropped, MaxTaskLog>>20)
		o.flushLocked(o.Stderr)
	}
	o.closed = true
}
