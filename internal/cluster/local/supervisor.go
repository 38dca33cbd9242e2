package local

import (
	"log/slog"
	"os"
	"os/exec"
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
	argv []string
	dir  string
	log  *slog.Logger
	now  func() time.Time

	mu       sync.Mutex
	state    string
	cmd      *exec.Cmd
	restarts int
	lastExit *int
	lastErr  string
	since    time.Time
	exitedAt *time.Time
	stopping bool
	stopc    chan struct{}
	done     chan struct{}
}

func newSupervisor(comp rdev.Component, argv []string, dir string, log *slog.Logger, now func() time.Time) *supervisor {
	return &supervisor{comp: comp, argv: argv, dir: dir, log: log, now: now, stopc: make(chan struct{}), done: make(chan struct{})}
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
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Dir = s.dir
	cmd.Env = os.Environ()
	if s.comp.Port != nil {
		cmd.Env = append(cmd.Env, "PORT="+strconv.Itoa(*s.comp.Port))
	}
	for k, v := range s.comp.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Its own process group, so that stopping reaches its children; and it
	// dies with rdev.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return nil
	}
	if err := cmd.Start(); err != nil {
		s.lastErr = err.Error()
		s.mu.Unlock()
		return err
	}
	s.cmd, s.state, s.since = cmd, cluster.StateRunning, s.now().UTC()
	s.mu.Unlock()
	err := cmd.Wait()
	s.mu.Lock()
	code := cmd.ProcessState.ExitCode()
	at := s.now().UTC()
	s.lastExit, s.exitedAt, s.cmd = &code, &at, nil
	if err != nil {
		s.lastErr = err.Error()
	}
	s.mu.Unlock()
	return err
}

// stop ends the process group: SIGTERM, then SIGKILL after 5 s.
func (s *supervisor) stop() {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.stopping = true
	close(s.stopc)
	cmd := s.cmd
	s.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-s.done:
			return
		case <-time.After(5 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
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
	if s.cmd != nil && s.cmd.Process != nil {
		p.PID = s.cmd.Process.Pid
	}
	return p
}
