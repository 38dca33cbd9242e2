package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
)

// Client talks to a pod's agent over its unix socket.
type Client struct {
	Socket string
}

// ErrAgentGone means the pod's agent does not answer: the pod stopped.
var ErrAgentGone = errors.New("the pod's sandbox is not running")

func (c *Client) open(ctx context.Context, req request) (*bufferedConn, reply, error) {
	conn, err := DialUnix(ctx, c.Socket)
	if err != nil {
		return nil, reply{}, fmt.Errorf("%w: %v", ErrAgentGone, err)
	}
	if err := writeLine(conn, req); err != nil {
		conn.Close()
		return nil, reply{}, fmt.Errorf("%w: %v", ErrAgentGone, err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	var rep reply
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = readLine(br, &rep)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, reply{}, fmt.Errorf("%w: %v", ErrAgentGone, err)
	}
	return &bufferedConn{Conn: conn, br: br}, rep, nil
}

// Dial connects to port on the pod's loopback.
func (c *Client) Dial(ctx context.Context, port int) (net.Conn, error) {
	conn, rep, err := c.open(ctx, request{Op: "dial", Port: port})
	if err != nil {
		return nil, err
	}
	if rep.Error != "" {
		conn.Close()
		return nil, fmt.Errorf("port %s of the pod: %s", strconv.Itoa(port), rep.Error)
	}
	return conn, nil
}

// StartError is the agent's refusal to start a process (the program could
// not be executed).
type StartError struct{ Msg string }

func (e *StartError) Error() string { return e.Msg }

// Exec starts argv in the pod (argv is usually a nested bubblewrap command
// line) with exactly env.
func (c *Client) Exec(ctx context.Context, argv, env []string, dir string, stdin bool) (*Proc, error) {
	conn, rep, err := c.open(ctx, request{Op: "exec", Argv: argv, Env: env, Dir: dir, Stdin: stdin})
	if err != nil {
		return nil, err
	}
	if rep.Error != "" {
		conn.Close()
		return nil, &StartError{Msg: rep.Error}
	}
	p := &Proc{conn: conn, pid: rep.PID, exited: make(chan struct{}), stdout: newBufPipe(), stderr: newBufPipe()}
	if stdin {
		p.stdin = &procStdin{p: p}
	}
	go p.demux()
	return p, nil
}

// Proc is a process started through the agent. Its output arrives over
// the agent's connection; closing that connection (Kill) ends it.
type Proc struct {
	conn           *bufferedConn
	pid            int
	stdout, stderr *bufPipe
	stdin          io.WriteCloser

	wmu    sync.Mutex
	exited chan struct{}
	status exitStatus
	err    error
}

// PID is the process's id in the pod's PID namespace.
func (p *Proc) PID() int { return p.pid }

// Stdin is nil unless Exec asked for it.
func (p *Proc) Stdin() io.WriteCloser { return p.stdin }

// Stdout and Stderr are the process's output streams; read both.
func (p *Proc) Stdout() io.Reader { return p.stdout }
func (p *Proc) Stderr() io.Reader { return p.stderr }

// Signal sends sig to the process's group inside the pod.
func (p *Proc) Signal(sig syscall.Signal) error {
	return p.send(frameSignal, []byte{byte(sig)})
}

// Kill ends the process by closing its connection: the agent kills what is
// left of it.
func (p *Proc) Kill() { p.conn.Close() }

func (p *Proc) send(typ byte, b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	select {
	case <-p.exited:
		return errors.New("process already exited")
	default:
	}
	return writeFrame(p.conn, typ, b)
}

// Wait returns the exit status once the output has been read to its end:
// the exit code, or -1 and the signal that ended it.
func (p *Proc) Wait() (int, syscall.Signal, error) {
	<-p.exited
	return p.status.Code, syscall.Signal(p.status.Signal), p.err
}

func (p *Proc) demux() {
	defer close(p.exited)
	defer p.conn.Close()
	buf := make([]byte, 0, 64<<10)
	for {
		typ, b, err := readFrame(p.conn, buf)
		if err != nil {
			p.err = fmt.Errorf("%w: %v", ErrAgentGone, err)
			p.status = exitStatus{Code: -1, Signal: int(syscall.SIGKILL)}
			p.stdout.Close()
			p.stderr.Close()
			return
		}
		switch typ {
		case frameStdout:
			p.stdout.Write(b)
		case frameStderr:
			p.stderr.Write(b)
		case frameExit:
			p.stdout.Close()
			p.stderr.Close()
			if err := json.Unmarshal(b, &p.status); err != nil {
				p.err = err
			} else if p.status.Error != "" {
				p.err = errors.New(p.status.Error)
			}
			return
		}
	}
}

type procStdin struct {
	p      *Proc
	closed bool
	mu     sync.Mutex
}

func (s *procStdin) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, io.ErrClosedPipe
	}
	for off := 0; off < len(b); off += maxFrame {
		end := min(off+maxFrame, len(b))
		if err := s.p.send(frameStdin, b[off:end]); err != nil {
			return off, err
		}
	}
	return len(b), nil
}

func (s *procStdin) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.p.send(frameStdinEOF, nil)
}

// pipeBuffer is how much output of one stream the agent's connection may
// run ahead of its reader, as an operating system pipe would hold (rdev
// grows those to 1 MiB): a reader of stdout alone does not stall stderr's
// first megabyte.
const pipeBuffer = 1 << 20

// bufPipe is an in-memory pipe with a pipeBuffer of room.
type bufPipe struct {
	mu     sync.Mutex
	cond   *sync.Cond
	buf    []byte
	closed bool
}

func newBufPipe() *bufPipe {
	p := &bufPipe{}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *bufPipe) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) >= pipeBuffer && !p.closed {
		p.cond.Wait()
	}
	if p.closed {
		return 0, io.ErrClosedPipe
	}
	p.buf = append(p.buf, b...)
	p.cond.Broadcast()
	return len(b), nil
}

func (p *bufPipe) Read(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.buf) == 0 && !p.closed {
		p.cond.Wait()
	}
	if len(p.buf) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.buf)
	p.buf = p.buf[n:]
	if len(p.buf) == 0 {
		p.buf = nil
	}
	p.cond.Broadcast()
	return n, nil
}

// Close ends the stream: the reader sees EOF after what was written.
func (p *bufPipe) Close() error {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.cond.Broadcast()
	return nil
}
