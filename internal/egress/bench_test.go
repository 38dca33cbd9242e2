package egress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// echo serves loopback connections that send back what they read.
func echo(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

var ping = make([]byte, 64)

func roundTrip(b *testing.B, c net.Conn, r io.Reader) {
	if _, err := c.Write(ping); err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, len(ping))); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkConnectDirect is the baseline of BenchmarkConnectThroughProxy:
// a new loopback connection and one 64-byte round trip.
func BenchmarkConnectDirect(b *testing.B) {
	addr := echo(b)
	for b.Loop() {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		roundTrip(b, c, c)
		c.Close()
	}
}

// BenchmarkConnectThroughProxy is the same through a CONNECT tunnel: the
// relay's unix socket, a name lookup, the judgement, the dial and the
// splice.
func BenchmarkConnectThroughProxy(b *testing.B) {
	e := newEnv(b, Sandbox{Policy: public}, "")
	e.net.name("echo.test", "203.0.113.40")
	e.net.route("203.0.113.40:7", echo(b))
	line := []byte(connectLine("echo.test:7"))
	for b.Loop() {
		c, err := net.Dial("unix", e.sock)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Write(line); err != nil {
			b.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("CONNECT: %v %v", resp, err)
		}
		roundTrip(b, c, br)
		c.Close()
	}
}
