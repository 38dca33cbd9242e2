package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Relay is a loopback port of the pod's network namespace whose
// connections the agent passes to a unix socket of rdev's: the egress
// proxy, or rdev's git host.
type Relay struct {
	Listen string // host:port inside the pod, e.g. 127.0.0.1:3128
	Socket string // rdev's unix socket
}

// ParseRelay reads "LISTEN=SOCKET".
func ParseRelay(s string) (Relay, error) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '=' {
			return Relay{Listen: s[:i], Socket: s[i+1:]}, nil
		}
	}
	return Relay{}, fmt.Errorf("relay %q: want LISTEN=SOCKET", s)
}

// Agent is the supervisor inside a pod's sandbox. It holds the pod's
// namespaces for as long as the pod lives, starts the pod's processes (each
// in a nested sandbox of its own, which rdev describes) on rdev's request
// over Socket, and relays ports. The code it starts cannot reach it: the
// socket's directory is not in their sandboxes and the agent is outside
// their PID namespaces, so they can neither signal nor trace it.
type Agent struct {
	Socket string
	Relays []Relay
	Log    *slog.Logger
}

// Run serves until ctx ends or the socket fails.
func (a *Agent) Run(ctx context.Context) error {
	os.Remove(a.Socket)
	ln, err := ListenUnix(a.Socket)
	if err != nil {
		return err
	}
	defer ln.Close()
	for _, r := range a.Relays {
		rl, err := net.Listen("tcp", r.Listen)
		if err != nil {
			return fmt.Errorf("relay %s: %w", r.Listen, err)
		}
		defer rl.Close()
		go a.relay(rl, r.Socket)
	}
	go func() { <-ctx.Done(); ln.Close() }()
	err = accept(ln, func(c net.Conn) { go a.serve(c) })
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// MaxRelayed bounds the connections a relay carries at once: the code of
// the pod opens them, and each holds file descriptors of the agent's and
// rdev's. Past it, new ones are closed at once.
const MaxRelayed = 256

func (a *Agent) relay(ln net.Listener, socket string) {
	slots := make(chan struct{}, MaxRelayed)
	accept(ln, func(c net.Conn) {
		select {
		case slots <- struct{}{}:
		default:
			c.Close()
			return
		}
		go func() {
			defer func() { <-slots }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			up, err := DialUnix(ctx, socket)
			cancel()
			if err != nil {
				a.Log.Warn("relay", "to", socket, "err", err)
				c.Close()
				return
			}
			splice(c, up)
		}()
	})
}

// accept hands ln's connections to handle until ln is closed. Other
// errors (out of file descriptors, say) are waited out, as net/http's
// server does, rather than ending the loop.
func accept(ln net.Listener, handle func(net.Conn)) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		handle(c)
	}
}

func (a *Agent) serve(c net.Conn) {
	br := bufio.NewReaderSize(c, 64<<10)
	var req request
	if err := readLine(br, &req); err != nil {
		c.Close()
		return
	}
	switch req.Op {
	case "exec":
		a.exec(&bufferedConn{Conn: c, br: br}, req)
	case "dial":
		a.dial(&bufferedConn{Conn: c, br: br}, req.Port)
	default:
		writeLine(c, reply{Error: "unknown operation " + strconv.Quote(req.Op)})
		c.Close()
	}
}

func (a *Agent) dial(c net.Conn, port int) {
	up, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 10*time.Second)
	if err != nil {
		writeLine(c, reply{Error: err.Error()})
		c.Close()
		return
	}
	if err := writeLine(c, reply{}); err != nil {
		up.Close()
		c.Close()
		return
	}
	splice(c, up)
}

// exec runs one process and streams it over c. When rdev goes away before
// the process ends, the process is killed: nothing runs without an owner.
func (a *Agent) exec(c net.Conn, req request) {
	defer c.Close()
	if len(req.Argv) == 0 {
		writeLine(c, reply{Error: "no command"})
		return
	}
	cmd := exec.Command(req.Argv[0], req.Argv[1:]...)
	cmd.Env = req.Env
	cmd.Dir = req.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdin io.WriteCloser
	var err error
	if req.Stdin {
		if stdin, err = cmd.StdinPipe(); err != nil {
			writeLine(c, reply{Error: err.Error()})
			return
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		writeLine(c, reply{Error: err.Error()})
		return
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		writeLine(c, reply{Error: err.Error()})
		return
	}
	if err := cmd.Start(); err != nil {
		writeLine(c, reply{Error: err.Error()})
		return
	}
	pid := cmd.Process.Pid
	var wmu sync.Mutex
	send := func(typ byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return writeFrame(c, typ, p)
	}
	wmu.Lock()
	err = writeLine(c, reply{PID: pid})
	wmu.Unlock()
	if err != nil {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	in := newStdinQueue(stdin)
	go func() { // rdev's frames: stdin, signals; its end kills the process
		buf := make([]byte, 0, 32<<10)
		for {
			typ, p, err := readFrame(c, buf)
			if err != nil {
				syscall.Kill(-pid, syscall.SIGKILL)
				in.close()
				return
			}
			switch typ {
			case frameStdin:
				in.push(append([]byte(nil), p...))
			case frameStdinEOF:
				in.close()
			case frameSignal:
				if len(p) == 1 {
					syscall.Kill(-pid, syscall.Signal(p[0]))
				}
			}
		}
	}()
	var wg sync.WaitGroup
	for _, s := range []struct {
		r   io.Reader
		typ byte
	}{{stdout, frameStdout}, {stderr, frameStderr}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.r.Read(buf)
				if n > 0 && send(s.typ, buf[:n]) != nil {
					io.Copy(io.Discard, s.r)
					return
				}
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	err = cmd.Wait()
	st := exitStatus{Code: cmd.ProcessState.ExitCode()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Code, st.Signal = -1, int(ws.Signal())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		st.Error = err.Error()
	}
	b, _ := json.Marshal(st)
	send(frameExit, b)
}

// stdinQueue feeds a process's stdin without ever blocking the reader of
// rdev's frames (a signal must get through while the process does not
// read its input).
type stdinQueue struct {
	mu     sync.Mutex
	cond   *sync.Cond
	chunks [][]byte
	closed bool
}

func newStdinQueue(w io.WriteCloser) *stdinQueue {
	q := &stdinQueue{}
	q.cond = sync.NewCond(&q.mu)
	if w == nil {
		q.closed = true
		return q
	}
	go func() {
		defer w.Close()
		for {
			q.mu.Lock()
			for len(q.chunks) == 0 && !q.closed {
				q.cond.Wait()
			}
			if len(q.chunks) == 0 {
				q.mu.Unlock()
				return
			}
			p := q.chunks[0]
			q.chunks = q.chunks[1:]
			q.mu.Unlock()
			if _, err := w.Write(p); err != nil {
				q.close()
				return
			}
		}
	}()
	return q
}

func (q *stdinQueue) push(p []byte) {
	q.mu.Lock()
	if !q.closed {
		q.chunks = append(q.chunks, p)
	}
	q.mu.Unlock()
	q.cond.Signal()
}

func (q *stdinQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.cond.Signal()
}
