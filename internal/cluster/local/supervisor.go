package local

import (
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"syscall"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// supervisor keeps one component's process running, restarting it with
// exponential backoff (1 s to 30 s) when it exits.
type supervisor struct {
	comp rdev.Component
	// run starts one run of the component.
	run func() (cluster.Proc, error)
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	state    string
	proc     cluster.Proc
	restarts int
	lastExit *int
	lastErr  string
	since    time.Time
	exitedAt *time.Time
	stopping bool
	stopc    chan struct{}
	done     chan struct{}
}

func newSupervisor(comp rdev.Component, run func() (cluster.Proc, error), log *slog.Logger, now func() time.Time) *supervisor {
	return &supervisor{comp: comp, run: run, log: log, now: now, stopc: make(chan struct{}), done: make(chan struct{})}
}

func (s *supervisor) start() { go s.loop() }

func (s *supervisor) loop() {
	defer close(s.done)
	backoff := time.Second
	for {
		started := s.now()
		err := s.runOnce()
		s.mu.Lock()
		if s.stopping {
			s.state = cluster.StateStopped
			s.mu.Unlock()
			return
		}
		s.state = cluster.StateRestarting
		s.restarts++
		s.mu.Unlock()
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		s.log.Warn("component exited; restarting", "err", err, "in", backoff.String())
		select {
		case <-s.stopc:
			s.mu.Lock()
			s.state = cluster.StateStopped
			s.mu.Unlock()
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (s *supervisor) runOnce() error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	p, err := s.run()
	if err != nil {
		s.lastErr = err.Error()
		s.mu.Unlock()
		return err
	}
	s.proc, s.state, s.since = p, cluster.StateRunning, s.now().UTC()
	s.mu.Unlock()
	go io.Copy(io.Discard, p.Stderr())
	io.Copy(io.Discard, p.Stdout())
	code, sig, err := p.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	at := s.now().UTC()
	s.lastExit, s.exitedAt, s.proc = &code, &at, nil
	switch {
	case err != nil:
	case sig != "":
		err = errors.New("killed by " + sig)
	case code != 0:
		err = errors.New("exit status " + strconv.Itoa(code))
	}
	if err != nil {
		s.lastErr = err.Error()
	}
	return err
}

// stop ends the process and everything it started: SIGTERM, then SIGKILL
// after 5 s.
func (s *supervisor) stop() {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.stopping = true
	close(s.stopc)
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		p.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
			return
		case <-time.After(5 * time.Second):
			p.Signal(syscall.SIGKILL)
		}
	}
	<-s.done
}

func (s *supervisor) status() cluster.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := cluster.Process{Component: s.comp.Name, State: s.state, Restarts: s.restarts, LastExit: s.lastExit,
		Since: s.since, Port: s.comp.Port, LastError: s.lastErr, ExitedAt: s.exitedAt}
	if p.State == "" {
		p.State = cluster.StateRestarting
	}
	if s.proc != nil {
		p.PID = s.proc.PID()
	}
	return p
}
