package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/sandbox"
)

// WorkspacePath is a session's workspace directory.
func (c *Cluster) WorkspacePath(projectID, sessionID string) string {
	return filepath.Join(c.podDir(projectID), "sessions", sessionID)
}

// resolveCwd returns the directory cwd names inside the workspace, refusing
// one that leaves it (through "..", an absolute path or a symbolic link).
func resolveCwd(workspace, cwd string) (string, error) {
	if filepath.IsAbs(cwd) {
		return "", rdev.Invalid("cwd", "cwd must be relative to the workspace")
	}
	if rel := filepath.Clean(cwd); rel == ".." || strings.HasPrefix(rel, "../") {
		return "", rdev.Invalid("cwd", "cwd must stay inside the workspace")
	}
	dir := filepath.Join(workspace, filepath.Clean("/" + cwd)[1:])
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", rdev.Invalid("cwd", "cwd %q does not exist in the workspace", cwd)
	}
	root, err := filepath.EvalSymlinks(workspace)
	if err != nil {
		return "", err
	}
	if real != root && !strings.HasPrefix(real, root+string(filepath.Separator)) {
		return "", rdev.Invalid("cwd", "cwd must stay inside the workspace")
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return "", rdev.Invalid("cwd", "cwd %q is not a directory", cwd)
	}
	return real, nil
}

// Exec starts a process in the session's workspace. With a sandbox it
// runs through the pod's agent in a nested sandbox of its own: the
// workspace read-write, the session's /tmp, the project's repository
// read-only, the pod's network, its own PID namespace (so everything it
// starts dies with it). Without one it runs under the reaper, which kills
// what it leaves behind. Either way its environment is built from nothing.
func (c *Cluster) Exec(ctx context.Context, spec cluster.ExecSpec) (cluster.Proc, error) {
	if len(spec.Argv) == 0 {
		return nil, rdev.Invalid("argv", "a command is required")
	}
	ws := c.WorkspacePath(spec.ProjectID, spec.SessionID)
	if _, err := os.Stat(ws); err != nil {
		return nil, fmt.Errorf("workspace of %s: %w", spec.SessionID, err)
	}
	dir, err := resolveCwd(ws, spec.Cwd)
	if err != nil {
		return nil, err
	}
	if _, err := lookPathIn(spec.Argv[0], dir); err != nil {
		return nil, rdev.Invalid("argv", "cannot start %q: %v", spec.Argv[0], err)
	}
	env := sandbox.NewEnv(ws).Set("RDEV_WORKSPACE", ws).Add(spec.Env...)
	if c.cfg.Sandbox != SandboxBwrap {
		return c.reap(spec.Argv, env.List(), dir, spec.Stdin)
	}
	sb, err := c.runningSandbox(spec.ProjectID)
	if err != nil {
		return nil, err
	}
	if c.cfg.Egress != nil {
		env.Proxy("http://127.0.0.1:" + strconv.Itoa(ProxyPort))
	}
	nested := sandbox.Spec{
		Binds: []sandbox.Bind{
			{Src: ws, RW: true},
			{Src: c.cfg.RepoPath(spec.ProjectID)},
			{Src: c.cfg.Executable},
		},
		Tmp:           c.tmpPath(spec.ProjectID, spec.SessionID),
		Hide:          sandbox.Hidden(c.cfg.DataDir),
		ShareNet:      true,
		DieWithParent: true,
		Chdir:         dir,
		Hostname:      spec.SessionID,
		DropTo:        c.cfg.User,
	}
	// The agent starts bubblewrap with a fixed environment; the
	// command's own is applied inside, after the privilege drop.
	nested.Env = env.List()
	p, err := sb.Client().Exec(ctx, nested.Args(spec.Argv), sandbox.NewEnv("/").List(), "", spec.Stdin)
	if err != nil {
		var se *sandbox.StartError
		if errors.As(err, &se) {
			return nil, rdev.Invalid("argv", "cannot start %q: %v", spec.Argv[0], se.Msg)
		}
		return nil, err
	}
	return agentProc{p}, nil
}

// componentStarter starts one run of a component: with a sandbox, through
// the pod's agent in a nested sandbox that sees the project's code
// read-only, its own copy of the code read-write when it is writable, and
// the components' shared /tmp; without one, under the reaper. It runs in
// its copy when it has one, in the code otherwise. sb is the pod's
// sandbox (nil without one): a starter never waits for the cluster's lock,
// which is held while components are stopped.
func (c *Cluster) componentStarter(project string, comp rdev.Component, sb *sandbox.Pod) func() (cluster.Proc, error) {
	dir := c.basePath(project)
	binds := []sandbox.Bind{{Src: filepath.Join(c.podDir(project), "code")}, {Src: c.cfg.RepoPath(project)}}
	if comp.Writable {
		dir = filepath.Join(c.componentsDir(project), comp.Name, "work")
		binds = append(binds, sandbox.Bind{Src: dir, RW: true})
	}
	return func() (cluster.Proc, error) {
		env := sandbox.NewEnv(dir).AddMap(comp.Env).Set("RDEV_PROJECT", project).Set("RDEV_COMPONENT", comp.Name) // rdev's own last: they win
		if comp.Port != nil {
			env.Set("PORT", strconv.Itoa(*comp.Port))
		}
		argv := []string{"/bin/sh", "-c", comp.Command}
		if c.cfg.Sandbox != SandboxBwrap {
			return c.reap(argv, env.List(), dir, false)
		}
		if sb == nil {
			return nil, rdev.ErrPodNotRunning
		}
		if c.cfg.Egress != nil {
			env.Proxy("http://127.0.0.1:" + strconv.Itoa(ProxyPort))
		}
		tmp := filepath.Join(c.podDir(project), "tmp", "components")
		if err := c.cfg.User.MkdirOwned(tmp); err != nil {
			return nil, err
		}
		nested := sandbox.Spec{
			Binds:         binds,
			Tmp:           tmp,
			Hide:          sandbox.Hidden(c.cfg.DataDir),
			ShareNet:      true,
			DieWithParent: true,
			Chdir:         dir,
			Hostname:      comp.Name,
			DropTo:        c.cfg.User,
		}
		nested.Env = env.List()
		p, err := sb.Client().Exec(context.Background(), nested.Args(argv), sandbox.NewEnv("/").List(), "", false)
		if err != nil {
			return nil, err
		}
		return agentProc{p}, nil
	}
}

// agentProc is a process started through a pod's agent.
type agentProc struct{ *sandbox.Proc }

func (p agentProc) Wait() (int, string, error) {
	code, sig, err := p.Proc.Wait()
	if sig != 0 {
		return -1, signalName(sig), err
	}
	return code, "", err
}

// reap starts argv under `rdev sandbox-reap` (no sandbox): in its own
// process group, dying with rdev, its orphans killed when it ends.
func (c *Cluster) reap(argv, env []string, dir string, stdin bool) (cluster.Proc, error) {
	if c.cfg.Executable != "" {
		argv = append([]string{c.cfg.Executable, "sandbox-reap", "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd}
	var err error
	if c.cfg.Executable != "" {
		var r *os.File
		if r, p.control, err = os.Pipe(); err != nil {
			return nil, err
		}
		defer r.Close()
		cmd.ExtraFiles = []*os.File{r}
	}
	if stdin {
		if p.stdin, err = cmd.StdinPipe(); err != nil {
			return nil, err
		}
	}
	if p.stdout, err = cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if p.stderr, err = cmd.StderrPipe(); err != nil {
		return nil, err
	}
	for _, r := range []io.Reader{p.stdout, p.stderr} {
		growPipe(r)
	}
	if err := cmd.Start(); err != nil {
		if p.control != nil {
			p.control.Close()
		}
		var ee *exec.Error
		if errors.As(err, &ee) || errors.Is(err, os.ErrNotExist) {
			return nil, rdev.Invalid("argv", "cannot start %q: %v", argv[0], errors.Unwrap(err))
		}
		return nil, err
	}
	return p, nil
}

// pipeSize is the capacity asked for a command's output pipes: a command
// that writes fast then blocks (and wakes rdev) once per megabyte rather
// than once per 64 KiB, Linux's default.
const pipeSize = 1 << 20

// growPipe enlarges an output pipe to pipeSize where the system allows
// (fs.pipe-max-size); a pipe that cannot grow keeps its size.
func growPipe(r io.Reader) {
	f, ok := r.(*os.File)
	if !ok {
		return
	}
	if rc, err := f.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize) })
	}
}

// proc is a process started without a sandbox. control, when set, is the
// pipe to its reaper: signals go through it, and closing it kills
// everything the process started.
type proc struct {
	cmd            *exec.Cmd
	control        *os.File
	stdin          io.WriteCloser
	stdout, stderr io.Reader
}

func (p *proc) PID() int              { return p.cmd.Process.Pid }
func (p *proc) Stdin() io.WriteCloser { return p.stdin }
func (p *proc) Stdout() io.Reader     { return p.stdout }
func (p *proc) Stderr() io.Reader     { return p.stderr }
func (p *proc) Signal(sig syscall.Signal) error {
	if p.control != nil {
		_, err := p.control.Write([]byte{byte(sig)})
		return err
	}
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

func (p *proc) Wait() (int, string, error) {
	err := p.cmd.Wait()
	if p.control != nil {
		p.control.Close()
	}
	ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return -1, signalName(ws.Signal()), nil
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return p.cmd.ProcessState.ExitCode(), "", err
	}
	return p.cmd.ProcessState.ExitCode(), "", nil
}

func signalName(s syscall.Signal) string {
	for name, sig := range cluster.Signals {
		if sig == s {
			return name
		}
	}
	return fmt.Sprintf("SIG%d", int(s))
}

// KillCommands kills every process whose environment names one of the
// commands (RDEV_COMMAND=<id>): what a server that died left running.
func (c *Cluster) KillCommands(ids []string) int {
	want := map[string]bool{}
	for _, id := range ids {
		want["RDEV_COMMAND="+id] = true
	}
	return killByEnv(want)
}

// KillSession kills every process a session's commands started, running
// or left in the background (RDEV_SESSION=<id> in their environment).
func (c *Cluster) KillSession(sessionID string) int {
	return killByEnv(map[string]bool{"RDEV_SESSION=" + sessionID: true})
}

func killByEnv(want map[string]bool) int {
	entries, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if want[string(kv)] {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					n++
				}
				break
			}
		}
	}
	return n
}

// lookPathIn resolves a program as exec would, relative paths from dir,
// others in the fixed PATH every project process has.
func lookPathIn(name, dir string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", errors.New("no such executable file")
		}
		return p, nil
	}
	for _, d := range filepath.SplitList(sandbox.Path) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("executable file not found in $PATH (" + sandbox.Path + ")")
}
