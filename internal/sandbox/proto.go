package sandbox

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
)

// The agent protocol, over one unix-socket connection per operation: the
// client sends a request as one JSON line, the agent answers one JSON
// line; then an exec carries frames both ways until the process's exit
// frame, and a dial carries the raw bytes of the relayed connection.
//
// A frame is a type byte, a big-endian uint32 length and the payload.

const (
	frameStdin    byte = 1 // client → agent: bytes for the process's stdin
	frameStdinEOF byte = 2 // client → agent: close stdin
	frameSignal   byte = 3 // client → agent: one byte, a signal number for the process group
	frameStdout   byte = 4 // agent → client
	frameStderr   byte = 5 // agent → client
	frameExit     byte = 6 // agent → client: JSON exitStatus; the last frame
)

// maxFrame bounds one frame's payload.
const maxFrame = 1 << 20

// request is the first line of a connection to the agent.
type request struct {
	Op    string   `json:"op"` // "exec" or "dial"
	Argv  []string `json:"argv,omitempty"`
	Env   []string `json:"env,omitempty"`
	Dir   string   `json:"dir,omitempty"`
	Stdin bool     `json:"stdin,omitempty"`
	Port  int      `json:"port,omitempty"`
}

// reply is the agent's first line.
type reply struct {
	PID   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
}

type exitStatus struct {
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
	Error  string `json:"error,omitempty"`
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func readLine(r *bufio.Reader, v any) error {
	line, err := r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return errors.New("agent protocol: line too long")
		}
		return err
	}
	return json.Unmarshal(line, v)
}

func writeFrame(w io.Writer, typ byte, p []byte) error {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

func readFrame(r io.Reader, buf []byte) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("agent protocol: frame of %d bytes", n)
	}
	if int(n) > cap(buf) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return 0, nil, err
	}
	return h[0], buf, nil
}

// bufferedConn is a connection whose first bytes were read ahead into br.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// CloseWrite half-closes a unix or TCP connection, so a relayed peer sees
// the end of one direction while the other goes on.
func (c *bufferedConn) CloseWrite() error { return closeWrite(c.Conn) }

func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// splice copies both ways until both directions end.
func splice(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		closeWrite(dst)
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	<-done
	a.Close()
	b.Close()
}
