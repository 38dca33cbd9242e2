package kube

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// WorkspaceContainer is the dev pod's container sessions exec into.
const WorkspaceContainer = "workspace"

// stream runs argv in the dev pod through the API server's pods/exec:
// WebSocket first, SPDY when the server refuses the upgrade, as kubectl
// does. A nil stdin gives the process none; the error carries the exit
// code (utilexec.ExitError) when the process ran.
func (c *Cluster) stream(ctx context.Context, pod string, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	req := c.Client.CoreV1().RESTClient().Post().Namespace(c.Namespace).Resource("pods").Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: WorkspaceContainer, Command: argv,
			Stdin: stdin != nil, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(c.rest, "GET", req.URL().String())
	if err != nil {
		return err
	}
	spdy, err := remotecommand.NewSPDYExecutor(c.rest, "POST", req.URL())
	if err != nil {
		return err
	}
	ex, err := remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
}

// exitCode splits a stream's error into the process's exit code and an
// error of the stream itself.
func exitCode(err error) (int, error) {
	if err == nil {
		return 0, nil
	}
	var ee utilexec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		return ee.ExitStatus(), nil
	}
	return -1, err
}

// run runs a short program in the dev pod and returns its output (stdout
// and stderr together) and exit code; stdin, when not empty, is its input.
func (c *Cluster) run(ctx context.Context, pod string, argv []string, stdin string) (string, int, error) {
	var out lockedBuffer
	var in io.Reader
	if stdin != "" {
		in = strings.NewReader(stdin)
	}
	code, err := exitCode(c.stream(ctx, pod, argv, in, &out, &out))
	return out.String(), code, err
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// execScript starts a command in a workspace: it checks the working
// directory stays inside the workspace and the program exists, sets the
// environment, says its PID on the first line of stdout, and becomes the
// command. What goes wrong before the command starts is said on that line
// instead, as "rdev-error <message>". $1 workspace, $2 cwd, then
// KEY=VALUE… "--" argv….
const execScript = `ws=$1 cwd=$2
shift 2
while [ "$1" != -- ]; do export "$1"; shift; done
shift
cd "$ws" 2>/dev/null || { echo "rdev-error the session's workspace is missing"; exit 125; }
root=$(pwd -P)
cd "./$cwd" 2>/dev/null || { echo "rdev-error cwd \"$cwd\" does not exist in the workspace"; exit 125; }
case $(pwd -P) in "$root"|"$root"/*) ;; *) echo "rdev-error cwd must stay inside the workspace"; exit 125;; esac
command -v "$1" >/dev/null 2>&1 || { echo "rdev-error cannot start \"$1\": not found"; exit 125; }
export HOME="$ws" RDEV_WORKSPACE="$ws"
echo "rdev-pid $$"
exec "$@"
`

// Exec starts a process in the session's workspace of the dev pod. Its
// output streams through the API server until it exits; signals are sent
// by another exec (kill).
func (c *Cluster) Exec(ctx context.Context, spec cluster.ExecSpec) (cluster.Proc, error) {
	if len(spec.Argv) == 0 {
		return nil, rdev.Invalid("argv", "a command is required")
	}
	if strings.HasPrefix(spec.Cwd, "/") {
		return nil, rdev.Invalid("cwd", "cwd must be relative to the workspace")
	}
	if rel := path.Clean(spec.Cwd); rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, rdev.Invalid("cwd", "cwd must stay inside the workspace")
	}
	pod, err := c.devPod(ctx, spec.ProjectID)
	if err != nil {
		return nil, err
	}
	for _, kv := range spec.Env {
		if kv == "--" || !strings.Contains(kv, "=") {
			return nil, rdev.Invalid("env", "environment entry %q is not KEY=VALUE", kv)
		}
	}
	argv := append([]string{"/bin/sh", "-c", execScript, "rdev-exec", c.workspace(spec.SessionID), spec.Cwd}, spec.Env...)
	argv = append(append(argv, "--"), spec.Argv...)

	p := &proc{c: c, pod: pod.name, done: make(chan struct{}), started: make(chan string, 1)}
	var stdoutW, stderrW *io.PipeWriter
	p.stdout, stdoutW = io.Pipe()
	p.stderr, stderrW = io.Pipe()
	var stdin io.Reader
	if spec.Stdin {
		var r *io.PipeReader
		r, p.stdin = io.Pipe()
		stdin = r
	}
	first := &firstLine{w: stdoutW, line: p.started}
	go func() {
		p.code, p.err = exitCode(c.stream(context.WithoutCancel(ctx), pod.name, argv, stdin, first, stderrW))
		if p.err != nil {
			p.err = fmt.Errorf("exec in %s: %w", pod.name, p.err)
		}
		first.finish()
		stdoutW.Close()
		stderrW.Close()
		close(p.done)
	}()
	var line string
	select {
	case line = <-p.started:
	case <-p.done:
		line = first.partial()
	}
	if pid, ok := strings.CutPrefix(line, "rdev-pid "); ok {
		p.pid, _ = strconv.Atoi(pid)
		return p, nil
	}
	// The command never started: drain what the stream still holds.
	go io.Copy(io.Discard, p.stdout)
	go io.Copy(io.Discard, p.stderr)
	<-p.done
	if msg, ok := strings.CutPrefix(line, "rdev-error "); ok {
		field := "argv"
		if strings.HasPrefix(msg, "cwd") {
			field = "cwd"
		}
		if strings.Contains(msg, "workspace is missing") {
			return nil, fmt.Errorf("workspace of %s: %s", spec.SessionID, msg)
		}
		return nil, rdev.Invalid(field, "%s", msg)
	}
	if p.err != nil {
		return nil, p.err
	}
	return nil, fmt.Errorf("exec in %s: the command did not start (exit %d)", pod.name, p.code)
}

// firstLine passes a stream on to w after taking its first line, which it
// sends on line.
type firstLine struct {
	w    io.Writer
	line chan<- string
	mu   sync.Mutex
	buf  []byte
	done bool
}

func (f *firstLine) Write(b []byte) (int, error) {
	f.mu.Lock()
	if !f.done {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			f.buf = append(f.buf, b...)
			f.mu.Unlock()
			return len(b), nil
		}
		f.buf = append(f.buf, b[:i]...)
		f.done = true
		f.line <- string(f.buf)
		f.mu.Unlock()
		n, err := f.w.Write(b[i+1:])
		return i + 1 + n, err
	}
	f.mu.Unlock()
	return f.w.Write(b)
}

// finish ends the stream; partial is what came of a first line that never
// ended.
func (f *firstLine) finish() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.done = true
}

func (f *firstLine) partial() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return string(f.buf)
}

type proc struct {
	c       *Cluster
	pod     string
	pid     int
	started chan string
	stdin   *io.PipeWriter
	stdout  *io.PipeReader
	stderr  *io.PipeReader
	done    chan struct{}
	code    int
	err     error

	mu   sync.Mutex
	sent map[int]syscall.Signal // exit code a signal we sent would give → the signal
}

func (p *proc) PID() int { return p.pid }
func (p *proc) Stdin() io.WriteCloser {
	if p.stdin == nil {
		return nil
	}
	return p.stdin
}
func (p *proc) Stdout() io.Reader { return p.stdout }
func (p *proc) Stderr() io.Reader { return p.stderr }

// Signal sends sig to the process's group in the pod, or to the process
// when it leads none.
func (p *proc) Signal(sig syscall.Signal) error {
	name := ""
	for n, s := range cluster.Signals {
		if s == sig {
			name = strings.TrimPrefix(n, "SIG")
		}
	}
	if name == "" {
		return fmt.Errorf("signal %d cannot be sent", int(sig))
	}
	select {
	case <-p.done:
		return nil
	default:
	}
	p.mu.Lock()
	if p.sent == nil {
		p.sent = map[int]syscall.Signal{}
	}
	p.sent[128+int(sig)] = sig
	p.mu.Unlock()
	pid := strconv.Itoa(p.pid)
	out, code, err := p.c.run(context.Background(), p.pod, []string{"/bin/sh", "-c",
		`kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2"`, "rdev-kill", name, pid}, "")
	if err != nil {
		return err
	}
	if code != 0 {
		select {
		case <-p.done: // it ended meanwhile
			return nil
		default:
		}
		return fmt.Errorf("kill %s: %s", pid, strings.TrimSpace(out))
	}
	return nil
}

// Wait waits for the stream to end. An exit code of 128+n after rdev sent
// signal n is reported as that signal, as the local backend does.
func (p *proc) Wait() (int, string, error) {
	<-p.done
	if p.stdin != nil {
		p.stdin.Close()
	}
	if p.err != nil {
		return -1, "", p.err
	}
	p.mu.Lock()
	sig, ok := p.sent[p.code]
	p.mu.Unlock()
	if ok {
		for n, s := range cluster.Signals {
			if s == sig {
				return -1, n, nil
			}
		}
	}
	return p.code, "", nil
}
