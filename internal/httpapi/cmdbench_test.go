package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/cluster/local"
	sbx "rdev.dev/rdev/internal/sandbox"
	"rdev.dev/rdev/internal/store/sqlite"
)

// benchSession starts a harness with the given sandbox and a session.
func benchSession(b *testing.B, sandbox string, outputLimit int64) (*client.Client, string) {
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "rdev.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	h := newHarnessWith(b, st, sandbox, outputLimit)
	h.do("POST", "/api/v1/projects", h.admin, map[string]any{"id": "web", "name": "Web", "import_from": makeRepo(b)})
	h.do("POST", "/api/v1/projects/web/deploy", h.admin, nil)
	c := client.New(h.srv.URL, h.admin)
	s, err := c.CreateSession(context.Background(), "web", client.SessionRequest{NewBranch: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	return c, s.ID
}

// BenchmarkExecTrue (P1) runs `true` through the API — start, then follow
// its events to the exit — against a direct fork/exec of the same
// program (and of `bwrap … true` for the sandboxed case), alternating.
//
//	go test ./internal/httpapi -run '^$' -bench ExecTrue -benchtime 300x
func BenchmarkExecTrue(b *testing.B) {
	for _, sandbox := range []string{local.SandboxNone, local.SandboxBwrap} {
		b.Run(sandbox, func(b *testing.B) {
			if sandbox == local.SandboxBwrap {
				if m, _, _ := local.ResolveSandbox(local.SandboxAuto, testUser(b)); m != local.SandboxBwrap {
					b.Skip("bubblewrap is not usable")
				}
			}
			c, sid := benchSession(b, sandbox, 0)
			ctx := context.Background()
			direct := []string{"true"}
			if sandbox == local.SandboxBwrap {
				// bubblewrap alone, with the options rdev gives a command's
				// nested sandbox (the system view, every namespace, the drop
				// to the sandbox's user).
				direct = sbx.Spec{ShareNet: true, DieWithParent: true, DropTo: testUser(b), Chdir: "/tmp"}.Args([]string{"true"})
			}
			var viaRdev, viaFork []time.Duration
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				if err := exec.Command(direct[0], direct[1:]...).Run(); err != nil {
					b.Fatal(err)
				}
				viaFork = append(viaFork, time.Since(t0))
				t0 = time.Now()
				cmd, err := c.RunCommand(ctx, "web", sid, client.CommandRequest{Argv: []string{"true"}})
				if err != nil {
					b.Fatal(err)
				}
				exit, err := c.Follow(ctx, "web", sid, cmd.ID, 0, func(client.Event) error { return nil })
				if err != nil || exit.ExitCode == nil || *exit.ExitCode != 0 {
					b.Fatal(exit, err)
				}
				viaRdev = append(viaRdev, time.Since(t0))
			}
			b.StopTimer()
			slices.Sort(viaRdev)
			slices.Sort(viaFork)
			p50r, p50f := viaRdev[len(viaRdev)/2], viaFork[len(viaFork)/2]
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(p50r.Microseconds())/1000, "rdev-p50-ms")
			b.ReportMetric(float64(p50f.Microseconds())/1000, "fork-p50-ms")
			b.ReportMetric(float64((p50r-p50f).Microseconds())/1000, "added-p50-ms")
		})
	}
}

// BenchmarkOutputThroughput (P2) streams 512 MiB of output (a line of text
// repeated) through SSE to a follower, against the same command's output
// read from a pipe. RDEV_BENCH_SMALL=1 streams 8 MiB.
//
//	go test ./internal/httpapi -run '^$' -bench OutputThroughput -benchtime 1x
func BenchmarkOutputThroughput(b *testing.B) {
	size := int64(512 << 20)
	if os.Getenv("RDEV_BENCH_SMALL") != "" {
		size = 8 << 20
	}
	script := fmt.Sprintf("yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c %d", size)
	c, sid := benchSession(b, local.SandboxNone, 2*size)
	ctx := context.Background()
	var pipe, bigPipe, sse time.Duration
	// The baseline: the command's output read from a pipe, as Linux makes
	// it (64 KiB) and grown to 1 MiB as rdev grows its command pipes.
	direct := func(grow bool) time.Duration {
		t0 := time.Now()
		cmd := exec.Command("/bin/sh", "-c", script)
		out, _ := cmd.StdoutPipe()
		if grow {
			f := out.(*os.File)
			rc, _ := f.SyscallConn()
			rc.Control(func(fd uintptr) { unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
		}
		cmd.Start()
		n, _ := io.CopyBuffer(struct{ io.Writer }{io.Discard}, out, make([]byte, 256<<10))
		cmd.Wait()
		if n != size {
			b.Fatalf("pipe read %d", n)
		}
		return time.Since(t0)
	}
	b.ResetTimer()
	for range b.N {
		pipe += direct(false)
		bigPipe += direct(true)
		t0 := time.Now()
		run, err := c.RunCommand(ctx, "web", sid, client.CommandRequest{Command: script})
		if err != nil {
			b.Fatal(err)
		}
		var got int64
		if _, err := c.Follow(ctx, "web", sid, run.ID, 0, func(e client.Event) error {
			got += int64(len(e.Data))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		sse += time.Since(t0)
		if got != size {
			b.Fatalf("SSE delivered %d of %d bytes", got, size)
		}
	}
	b.StopTimer()
	mib := float64(size) / (1 << 20) * float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(mib/pipe.Seconds(), "pipe-MiB/s")
	b.ReportMetric(mib/sse.Seconds(), "sse-MiB/s")
	b.ReportMetric(mib/bigPipe.Seconds(), "pipe1M-MiB/s")
	b.ReportMetric(pipe.Seconds()/sse.Seconds(), "x_pipe")
	b.ReportMetric(bigPipe.Seconds()/sse.Seconds(), "x_pipe1M")
}
