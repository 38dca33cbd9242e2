package service

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// CommandRequest is the input of RunCommand.
type CommandRequest = rdev.CommandSpec

// DefaultOutputLimit bounds the stored output of one command.
const DefaultOutputLimit = 64 << 20

// Output batching: a batch is stored when it holds this much, or this long
// after its first bytes.
const (
	batchBytes = 1 << 20
	batchDelay = 20 * time.Millisecond
)

// ValidateCommand checks a command request; errors are *rdev.InvalidError.
func ValidateCommand(r *CommandRequest) (time.Duration, error) {
	switch {
	case r.Command == "" && len(r.Argv) == 0:
		return 0, rdev.Invalid("command", "command (a shell string) or argv is required")
	case r.Command != "" && len(r.Argv) > 0:
		return 0, rdev.Invalid("argv", "specify either command or argv, not both")
	case len(r.Command) > 64<<10 || strings.ContainsRune(r.Command, 0):
		return 0, rdev.Invalid("command", "must be at most 64 KiB without NUL")
	case len(r.Argv) > 4096:
		return 0, rdev.Invalid("argv", "at most 4096 arguments")
	}
	for i, a := range r.Argv {
		if strings.ContainsRune(a, 0) || (i == 0 && a == "") {
			return 0, rdev.Invalid("argv", "argv[%d] must be non-empty and without NUL", i)
		}
	}
	if len(r.Env) > 256 {
		return 0, rdev.Invalid("env", "at most 256 variables")
	}
	for k, v := range r.Env {
		if !envNameOK(k) || strings.ContainsRune(v, 0) {
			return 0, rdev.Invalid("env", "invalid variable %q", k)
		}
		if rdev.ReservedEnv(k) {
			return 0, rdev.Invalid("env", "%s: variables named RDEV_* are set by rdev; use another name", k)
		}
	}
	if strings.ContainsRune(r.Cwd, 0) || len(r.Cwd) > 4096 {
		return 0, rdev.Invalid("cwd", "invalid cwd")
	}
	if r.Timeout == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(r.Timeout)
	if err != nil || d <= 0 || d > 7*24*time.Hour {
		return 0, rdev.Invalid("timeout", "timeout must be a Go duration between 1ns and 168h (e.g., 30s, 10m)")
	}
	return d, nil
}

func envNameOK(k string) bool {
	if k == "" || len(k) > 256 {
		return false
	}
	for i, c := range k {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// run is a command this process is running.
type run struct {
	cmd    *rdev.Command
	proc   cluster.Proc
	done   chan struct{}
	mu     sync.Mutex
	wake   chan struct{} // closed when events are stored, then replaced
	reason string        // set before a kill: killed or timeout
	// recent holds the newest stored events (up to recentBytes of
	// output), so that live followers read from memory, not the store.
	recent      []rdev.Event
	recentBytes int
	stdin       sync.Mutex
}

func (r *run) waitChan() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.wake
}

// recentLimit bounds the output a run keeps in memory for its followers.
const recentLimit = 8 << 20

// stored records events that are now in the store and wakes followers.
func (r *run) stored(events []rdev.Event) {
	r.mu.Lock()
	for _, e := range events {
		r.recent = append(r.recent, e)
		r.recentBytes += len(e.Data)
	}
	for len(r.recent) > 1 && r.recentBytes > recentLimit {
		r.recentBytes -= len(r.recent[0].Data)
		r.recent[0] = rdev.Event{}
		r.recent = r.recent[1:]
	}
	r.mu.Unlock()
	r.notify()
}

// since returns the kept events after the id after, and whether the
// memory covers that point (else the store must be read).
func (r *run) since(after int64) ([]rdev.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recent) == 0 || r.recent[0].ID > after+1 {
		return nil, false
	}
	i := int(after + 1 - r.recent[0].ID)
	if i >= len(r.recent) {
		return nil, true
	}
	return slices.Clone(r.recent[i:]), true
}

func (r *run) notify() {
	r.mu.Lock()
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

func (r *run) kill(reason string) {
	r.mu.Lock()
	if r.reason == "" {
		r.reason = reason
	}
	r.mu.Unlock()
	r.proc.Signal(syscall.SIGKILL)
}

// hub holds the running commands of this process.
type hub struct {
	mu   sync.Mutex
	runs map[string]*run
}

func (h *hub) get(id string) *run {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.runs[id]
}

func (h *hub) ofSession(sid string) []*run {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*run
	for _, r := range h.runs {
		if r.cmd.SessionID == sid {
			out = append(out, r)
		}
	}
	return out
}

// activeSession returns the caller's active session of the project.
func (s *Service) activeSession(ctx context.Context, caller *rdev.APIKey, projectID, sid string) (*rdev.Session, error) {
	sess, err := s.GetSession(ctx, caller, projectID, sid)
	if err != nil {
		return nil, err
	}
	if sess.Status != rdev.SessionActive {
		return nil, rdev.ErrSessionNotActive
	}
	return sess, nil
}

// RunCommand starts a command in the session's workspace and returns it
// once its start event is stored. The command outlives the request.
func (s *Service) RunCommand(ctx context.Context, caller *rdev.APIKey, projectID, sid string, r CommandRequest) (*rdev.Command, error) {
	timeout, err := ValidateCommand(&r)
	if err != nil {
		return nil, err
	}
	sess, err := s.activeSession(ctx, caller, projectID, sid)
	if err != nil {
		return nil, err
	}
	argv := r.Argv
	if r.Command != "" {
		argv = []string{"/bin/sh", "-c", r.Command}
	}
	cmdID := rdev.NewID("x")
	addr, err := s.cluster.PreviewAddr(ctx, projectID, sid)
	if err != nil {
		return nil, err
	}
	_, port, _ := strings.Cut(addr, ":")
	env := []string{"PORT=" + port, "RDEV_PREVIEW_PORT=" + fmt.Sprint(sess.PreviewPort), "RDEV_SESSION=" + sid, "RDEV_PROJECT=" + projectID, "RDEV_COMMAND=" + cmdID}
	for k, v := range r.Env {
		env = append(env, k+"="+v)
	}
	proc, err := s.cluster.Exec(ctx, cluster.ExecSpec{ProjectID: projectID, SessionID: sid, Argv: argv, Env: env, Cwd: r.Cwd, Stdin: r.Stdin})
	if err != nil {
		return nil, err
	}
	now := s.clock()
	cmd := &rdev.Command{ID: cmdID, SessionID: sid, ProjectID: projectID, Spec: r, Status: rdev.CommandRunning,
		PID: proc.PID(), StartedAt: now, LastEventID: 1}
	rn := &run{cmd: cmd, proc: proc, done: make(chan struct{}), wake: make(chan struct{})}
	bg := context.WithoutCancel(ctx)
	if err := s.store.CreateCommand(bg, cmd); err != nil {
		proc.Signal(syscall.SIGKILL)
		go proc.Wait()
		return nil, err
	}
	if _, err := s.store.AppendEvents(bg, cmd.ID, []rdev.Event{{ID: 1, Type: rdev.EventStart, PID: proc.PID(), At: now}}, 0, 0); err != nil {
		proc.Signal(syscall.SIGKILL)
		go proc.Wait()
		return nil, err
	}
	s.hub.mu.Lock()
	s.hub.runs[cmd.ID] = rn
	s.hub.mu.Unlock()
	s.store.TouchSession(bg, sid, now)
	go s.supervise(rn, timeout)
	c := *cmd
	return &c, nil
}

// writeQueue bounds the batches waiting for the store (each up to
// batchBytes): past it, reading the command's output waits.
const writeQueue = 16

type batch struct {
	events []rdev.Event
	bytes  int64
}

type chunk struct {
	typ  string
	data []byte
}

// supervise pumps the command's output into the store in batches, then
// records its exit.
func (s *Service) supervise(r *run, timeout time.Duration) {
	ctx := context.Background()
	id := r.cmd.ID
	chunks := make(chan chunk, 64)
	var readers sync.WaitGroup
	for typ, rd := range map[string]io.Reader{rdev.EventStdout: r.proc.Stdout(), rdev.EventStderr: r.proc.Stderr()} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				buf := make([]byte, 256<<10)
				n, err := rd.Read(buf)
				if n > 0 {
					chunks <- chunk{typ, buf[:n]}
				}
				if err != nil {
					return
				}
			}
		}()
	}
	go func() { readers.Wait(); close(chunks) }()
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	// The writer: batches go to the store in order, off the read path, at
	// most writeQueue batches behind.
	writes := make(chan batch, writeQueue)
	written := make(chan struct{})
	go func() {
		defer close(written)
		for b := range writes {
			dropped, err := s.store.AppendEvents(ctx, id, b.events, b.bytes, s.outputLimit)
			if err != nil {
				s.log.Error("store command output", "command", id, "err", err)
			}
			if dropped > 0 {
				// Followers that far behind must learn it from the store.
				r.mu.Lock()
				r.recent, r.recentBytes = nil, 0
				r.mu.Unlock()
			}
		}
	}()
	next := r.cmd.LastEventID
	var pending []chunk
	var pendingBytes int
	tails := map[string][]byte{}
	lastTouch := time.Now()
	flush := func(final bool) {
		var events []rdev.Event
		var total int64
		at := s.clock()
		// seal ends the newest event: an incomplete UTF-8 sequence at its end
		// waits for the next batch (unless this is the last one).
		seal := func() {
			n := len(events)
			if n == 0 || final {
				return
			}
			e := &events[n-1]
			e.Data, tails[e.Type] = splitUTF8Tail(e.Data)
			total -= int64(len(tails[e.Type]))
			if len(e.Data) == 0 {
				events, next = events[:n-1], next-1
			}
		}
		left := pendingBytes
		for _, c := range pending {
			total += int64(len(c.data))
			if n := len(events); n > 0 && events[n-1].Type == c.typ {
				events[n-1].Data = append(events[n-1].Data, c.data...)
				left -= len(c.data)
				continue
			}
			seal()
			tail := tails[c.typ]
			tails[c.typ] = nil
			total += int64(len(tail))
			// One allocation holds the rest of the batch if it is all of
			// this type, as it usually is.
			data := make([]byte, 0, len(tail)+left)
			data = append(append(data, tail...), c.data...)
			left -= len(c.data)
			next++
			events = append(events, rdev.Event{ID: next, Type: c.typ, Data: data, At: at})
		}
		seal()
		if final {
			for _, typ := range []string{rdev.EventStdout, rdev.EventStderr} {
				if t := tails[typ]; len(t) > 0 {
					next++
					total += int64(len(t))
					events = append(events, rdev.Event{ID: next, Type: typ, Data: t, At: at})
					tails[typ] = nil
				}
			}
		}
		pending, pendingBytes = nil, 0
		if len(events) == 0 {
			return
		}
		// Followers get the batch from memory at once; the writer stores
		// it in order behind them.
		r.stored(events)
		writes <- batch{events, total}
		if time.Since(lastTouch) > 10*time.Second {
			s.store.TouchSession(ctx, r.cmd.SessionID, at)
			lastTouch = time.Now()
		}
	}
	var batchTimer <-chan time.Time
loop:
	for {
		select {
		case c, ok := <-chunks:
			if !ok {
				break loop
			}
			if len(pending) == 0 {
				batchTimer = time.After(batchDelay)
			}
			pending = append(pending, c)
			pendingBytes += len(c.data)
			if pendingBytes >= batchBytes {
				flush(false)
				batchTimer = nil
			}
		case <-batchTimer:
			flush(false)
			batchTimer = nil
		case <-timer:
			r.kill(rdev.CommandTimeout)
			timer = nil
		}
	}
	flush(true)
	close(writes)
	<-written
	code, sig, err := r.proc.Wait()
	if err != nil {
		s.log.Warn("command wait", "command", id, "err", err)
	}
	r.mu.Lock()
	reason := r.reason
	r.mu.Unlock()
	if reason == "" {
		reason = rdev.CommandExited
		if sig != "" {
			reason = rdev.CommandKilled
		}
	}
	end := s.clock()
	exit := rdev.Event{ID: next + 1, Type: rdev.EventExit, Signal: sig, Reason: reason, At: end}
	if sig == "" {
		exit.ExitCode = &code
	}
	if _, err := s.store.AppendEvents(ctx, id, []rdev.Event{exit}, 0, 0); err != nil {
		s.log.Error("store command exit", "command", id, "err", err)
	}
	fin := *r.cmd
	fin.Status, fin.ExitCode, fin.Signal, fin.EndedAt = reason, exit.ExitCode, sig, &end
	if err := s.store.FinishCommand(ctx, &fin); err != nil {
		s.log.Error("finish command", "command", id, "err", err)
	}
	// Finished in the store and gone from the hub before any follower
	// sees the exit event: whoever reads it finds the command ended.
	s.hub.mu.Lock()
	delete(s.hub.runs, id)
	s.hub.mu.Unlock()
	r.stored([]rdev.Event{exit})
	close(r.done)
}

// splitUTF8Tail holds back an incomplete UTF-8 sequence at the end of b, so
// that a character is not cut between two events.
func splitUTF8Tail(b []byte) ([]byte, []byte) {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return b[:i], append([]byte(nil), b[i:]...)
			}
			break
		}
	}
	return b, nil
}

// GetCommand returns a command of a session.
func (s *Service) GetCommand(ctx context.Context, caller *rdev.APIKey, projectID, sid, id string) (*rdev.Command, error) {
	if _, err := s.GetSession(ctx, caller, projectID, sid); err != nil {
		return nil, err
	}
	return s.store.GetCommand(ctx, sid, id)
}

// ListCommands returns a page of a session's commands.
func (s *Service) ListCommands(ctx context.Context, caller *rdev.APIKey, projectID, sid string, page rdev.Page) ([]*rdev.Command, string, error) {
	if _, err := s.GetSession(ctx, caller, projectID, sid); err != nil {
		return nil, "", err
	}
	return s.store.ListCommands(ctx, sid, page)
}

// WaitCommand waits until the command ends or ctx is done, and returns it.
func (s *Service) WaitCommand(ctx context.Context, sid, id string) (*rdev.Command, error) {
	if r := s.hub.get(id); r != nil {
		select {
		case <-r.done:
		case <-ctx.Done():
		}
	}
	return s.store.GetCommand(context.WithoutCancel(ctx), sid, id)
}

// CommandOutput concatenates the stored stdout and stderr of a command,
// each up to limit bytes.
func (s *Service) CommandOutput(ctx context.Context, id string, limit int) (stdout, stderr []byte, truncated bool, err error) {
	var after int64
	for {
		evs, err := s.store.ListEvents(ctx, id, after, 512)
		if err != nil {
			return nil, nil, false, err
		}
		for _, e := range evs {
			after = e.ID
			switch e.Type {
			case rdev.EventStdout:
				stdout, truncated = appendBounded(stdout, e.Data, limit, truncated)
			case rdev.EventStderr:
				stderr, truncated = appendBounded(stderr, e.Data, limit, truncated)
			}
		}
		if len(evs) < 512 {
			return stdout, stderr, truncated, nil
		}
	}
}

func appendBounded(dst, src []byte, limit int, truncated bool) ([]byte, bool) {
	if room := limit - len(dst); room < len(src) {
		return append(dst, src[:max(room, 0)]...), true
	}
	return append(dst, src...), truncated
}

// Follow calls emit for every event of the command after the id after, in
// order, live as they are stored, until the exit event has been emitted or
// ctx ends. Output dropped to stay within the bound is reported as one
// truncated event in its place. idle is called every keepalive while no
// event comes.
func (s *Service) Follow(ctx context.Context, sid, id string, after int64, keepalive time.Duration, idle func() error, emit func(rdev.Event) error) error {
	tick := time.NewTicker(keepalive)
	defer tick.Stop()
	for {
		r := s.hub.get(id)
		var wake <-chan struct{}
		var evs []rdev.Event
		fromMemory := false
		if r != nil {
			wake = r.waitChan()
			evs, fromMemory = r.since(after)
		}
		if !fromMemory {
			var err error
			if evs, err = s.store.ListEvents(ctx, id, after, 256); err != nil {
				return err
			}
		}
		for _, e := range evs {
			if e.ID > after+1 && (e.Type == rdev.EventStdout || e.Type == rdev.EventStderr || after > 0) {
				cmd, err := s.store.GetCommand(ctx, sid, id)
				if err == nil && cmd.DroppedBytes > 0 {
					if err := emit(rdev.Event{ID: e.ID - 1, Type: rdev.EventTruncated, At: e.At, Reason: fmt.Sprintf("%d bytes of older output were dropped", cmd.DroppedBytes)}); err != nil {
						return err
					}
				}
			}
			if err := emit(e); err != nil {
				return err
			}
			after = e.ID
			if e.Type == rdev.EventExit {
				return nil
			}
		}
		if len(evs) == 256 || (fromMemory && len(evs) > 0) {
			continue
		}
		if r == nil {
			cmd, err := s.store.GetCommand(ctx, sid, id)
			if err != nil {
				return err
			}
			if cmd.Status != rdev.CommandRunning && cmd.LastEventID <= after {
				return nil
			}
			// Running elsewhere (another replica) or just finishing: look
			// again shortly.
			t := time.NewTimer(250 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		case <-tick.C:
			if err := idle(); err != nil {
				return err
			}
		}
	}
}

// WriteStdin sends data to a running command's stdin, closing it when eof.
func (s *Service) WriteStdin(ctx context.Context, caller *rdev.APIKey, projectID, sid, id string, data io.Reader, eof bool) (int64, error) {
	if _, err := s.activeSession(ctx, caller, projectID, sid); err != nil {
		return 0, err
	}
	if _, err := s.store.GetCommand(ctx, sid, id); err != nil {
		return 0, err
	}
	r := s.hub.get(id)
	if r == nil {
		return 0, rdev.ErrCommandNotRunning
	}
	in := r.proc.Stdin()
	if in == nil {
		return 0, rdev.ErrNoStdin
	}
	r.stdin.Lock()
	defer r.stdin.Unlock()
	buf := make([]byte, 32<<10)
	var n int64
	for {
		m, rerr := data.Read(buf)
		if m > 0 {
			if _, werr := in.Write(buf[:m]); werr != nil {
				// The process closed its stdin, exited, or eof was sent.
				return n, rdev.ErrStdinClosed
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return n, rerr // the request body: too large, or cut
		}
	}
	if eof {
		in.Close()
	}
	s.store.TouchSession(ctx, sid, s.clock())
	return n, nil
}

// SignalCommand sends a signal (by name, e.g. SIGTERM) to a running
// command and everything it started.
func (s *Service) SignalCommand(ctx context.Context, caller *rdev.APIKey, projectID, sid, id, name string) error {
	sig, ok := cluster.Signals[strings.ToUpper(name)]
	if !ok {
		sig, ok = cluster.Signals["SIG"+strings.ToUpper(name)]
	}
	if !ok {
		return rdev.Invalid("signal", "unknown signal %q (e.g. SIGTERM, SIGINT, SIGKILL)", name)
	}
	if _, err := s.activeSession(ctx, caller, projectID, sid); err != nil {
		return err
	}
	if _, err := s.store.GetCommand(ctx, sid, id); err != nil {
		return err
	}
	r := s.hub.get(id)
	if r == nil {
		return rdev.ErrCommandNotRunning
	}
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM || sig == syscall.SIGINT {
		r.mu.Lock()
		if r.reason == "" {
			r.reason = rdev.CommandKilled
		}
		r.mu.Unlock()
	}
	return r.proc.Signal(sig)
}

// killSessionCommands kills every running command of a session and
// everything they started, waiting up to five seconds for them to end.
func (s *Service) killSessionCommands(sid string) {
	runs := s.hub.ofSession(sid)
	for _, r := range runs {
		r.kill(rdev.CommandKilled)
	}
	deadline := time.After(5 * time.Second)
	for _, r := range runs {
		select {
		case <-r.done:
		case <-deadline:
			return
		}
	}
}

// reaper is implemented by clusters that can find processes a previous
// server left behind.
type reaper interface {
	KillCommands(ids []string) int
}

// Recover marks the commands a previous server left running as lost, and
// kills whatever of them still runs.
func (s *Service) Recover(ctx context.Context) error {
	lost, err := s.store.LoseRunningCommands(ctx, s.clock())
	ids := make([]string, 0, len(lost))
	for _, c := range lost {
		s.log.Warn("command lost with the previous server", "command", c.ID, "session", c.SessionID)
		ids = append(ids, c.ID)
	}
	if r, ok := s.cluster.(reaper); ok && len(ids) > 0 {
		if n := r.KillCommands(ids); n > 0 {
			s.log.Warn("killed processes left by lost commands", "processes", n)
		}
	}
	return err
}
