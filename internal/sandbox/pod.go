package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"rdev.dev/rdev/internal/limits"
)

// PodConfig describes a project pod's sandbox.
type PodConfig struct {
	// Dir is the pod's directory. Its run/ holds the agent's socket and
	// rdev's relay sockets.
	Dir string
	// Binds are what the pod's processes may be given (each bound at its
	// own path): for a project, its sessions' workspaces, their temporary
	// directories, its code read-only and its bare repository read-only
	// (workspaces borrow its objects). Nothing else of rdev's data
	// directory is in the sandbox.
	Binds []Bind
	// Executable is the rdev binary: the agent, and the git credential
	// helper of workspaces.
	Executable string
	Cred       *Credential
	Relays     []Relay
	// Hide are paths inside the system view to mask (rdev's data
	// directory when it lies under /opt, say).
	Hide []string
	// Wrap is put before bubblewrap's command line: `rdev sandbox-enter
	// <group> --`, which moves itself into the sandbox's resource group
	// and then becomes bubblewrap, so that nothing of the sandbox ever runs
	// outside the group.
	Wrap []string
	Log  *slog.Logger
}

// Pod is a running pod sandbox.
type Pod struct {
	cfg    PodConfig
	cmd    *exec.Cmd
	done   chan struct{}
	client *Client
}

// RunDir is where a pod's sockets live.
func RunDir(podDir string) string { return filepath.Join(podDir, "run") }

// StartPod starts the pod's sandbox with its agent and waits until the
// agent answers.
func StartPod(ctx context.Context, cfg PodConfig) (*Pod, error) {
	run := RunDir(cfg.Dir)
	if err := cfg.Cred.MkdirOwned(run); err != nil {
		return nil, err
	}
	socket := filepath.Join(run, "agent.sock")
	os.Remove(socket)
	var binds []string
	for _, b := range append([]Bind{{Src: run, RW: true}, {Src: cfg.Executable}}, cfg.Binds...) {
		flag := "--ro-bind"
		if b.RW {
			flag = "--bind"
		}
		binds = append(binds, flag, mustAbs(b.Src), mustAbs(b.Src))
	}
	argv := []string{cfg.Executable, "sandbox-agent", "--socket", socket}
	for _, r := range cfg.Relays {
		argv = append(argv, "--relay", r.Listen+"="+r.Socket)
	}
	full := Spec{Hide: cfg.Hide, DieWithParent: true, Hostname: "pod", Root: cfg.Cred != nil}.Args(argv)
	sep := len(full) - len(argv) - 1
	args := append(append(append([]string{}, cfg.Wrap...), full[:sep]...), binds...)
	args = append(args, full[sep:]...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = NewEnv("/").List()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = logWriter{cfg.Log}
	cmd.Stderr = logWriter{cfg.Log}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the pod's sandbox: %w", err)
	}
	p := &Pod{cfg: cfg, cmd: cmd, done: make(chan struct{}), client: &Client{Socket: socket}}
	go func() { cmd.Wait(); close(p.done) }()
	fail := func(err error) (*Pod, error) {
		p.Stop()
		return nil, fmt.Errorf("start the pod's sandbox: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := DialUnix(context.Background(), socket)
		if err == nil {
			c.Close()
			return p, nil
		}
		lastErr := err
		select {
		case <-p.done:
			return fail(errors.New("the sandbox exited at start (see the log)"))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("its agent did not answer within 10s: %v", lastErr))
		}
	}
}

// Client is how rdev reaches the pod's agent.
func (p *Pod) Client() *Client { return p.client }

// Done is closed when the sandbox has exited.
func (p *Pod) Done() <-chan struct{} { return p.done }

// Stop ends the sandbox and everything in it: the agent is the PID
// namespace's first process under bubblewrap's, so killing bubblewrap's
// process group takes every process of the pod with it.
func (p *Pod) Stop() {
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cfg.Log.Warn("pod sandbox did not exit after SIGKILL", "dir", p.cfg.Dir)
	}
}

// logWriter passes a sandbox's own output (bubblewrap's and the agent's
// errors, never the project's processes') to rdev's log.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	if w.log != nil {
		w.log.Warn("pod sandbox", "output", string(p))
	}
	return len(p), nil
}

// Enter is `rdev sandbox-enter GROUP... -- COMMAND...`: it moves itself
// into the resource group GROUP describes (limits.Group.Args), then
// becomes COMMAND (bubblewrap), so that every process of the sandbox is
// born inside the group. It returns only on failure.
func Enter(args []string) int {
	var group, argv []string
	for i, a := range args {
		if a == "--" {
			group, argv = args[:i], args[i+1:]
			break
		}
	}
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "rdev sandbox-enter: want GROUP... -- COMMAND...")
		return 2
	}
	g, err := limits.FromArgs(group)
	if err == nil {
		err = g.Enter()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rdev sandbox-enter:", err)
		return 1
	}
	path, err := exec.LookPath(argv[0])
	if err == nil {
		err = syscall.Exec(path, argv, os.Environ())
	}
	fmt.Fprintln(os.Stderr, "rdev sandbox-enter:", err)
	return 127
}

// RunHelper runs the process rdev starts at a sandbox's edge when args
// name one ("sandbox-agent …" or "sandbox-reap -- …") and reports whether
// it did. A test binary standing in for rdev calls it first thing in
// TestMain; rdev's command line has the same commands (hidden).
func RunHelper(args []string) (code int, ok bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "sandbox-agent":
		a := &Agent{Log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
		for i := 1; i+1 < len(args); i += 2 {
			switch args[i] {
			case "--socket":
				a.Socket = args[i+1]
			case "--relay":
				r, err := ParseRelay(args[i+1])
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 2, true
				}
				a.Relays = append(a.Relays, r)
			}
		}
		if err := a.Run(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "rdev sandbox-agent:", err)
			return 1, true
		}
		return 0, true
	case "sandbox-enter":
		return Enter(args[1:]), true
	case "sandbox-reap":
		rest := args[1:]
		if len(rest) > 0 && rest[0] == "--" {
			rest = rest[1:]
		}
		return Reap(rest, os.NewFile(3, "control")), true
	}
	return 0, false
}
