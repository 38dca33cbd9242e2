package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rdev.dev/rdev/client"
)

// BenchmarkFollowers (P8) runs 100 commands that each print numbered lines
// for a few seconds in a session of the real binary, follows each with 10
// clients (1,000 streams), samples the server's resident memory, and
// checks that every follower received every line, in order.
// RDEV_BENCH_SMALL=1: 10 commands, 100 followers.
//
//	go test ./e2e -run '^$' -bench Followers -benchtime 1x
func BenchmarkFollowers(b *testing.B) {
	commands, per, lines := 100, 10, 1000
	if os.Getenv("RDEV_BENCH_SMALL") != "" {
		commands, lines = 10, 200
	}
	data := b.TempDir()
	s := start(b, nil, "--addr", "127.0.0.1:0", "--data", data, "--log-level", "warn", "--sandbox", "none")
	admin := readKey(b, filepath.Join(data, "admin.key"))
	c := client.New(s.URL, admin)
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "web", Name: "Web"}); err != nil {
		b.Fatal(err)
	}
	// An empty repository has no branch: push one.
	src := b.TempDir()
	run(b, src, "git", "init", "-q", "-b", "main")
	run(b, src, "git", "commit", "-q", "--allow-empty", "-m", "first")
	timed(b, src, admin, "push", "-q", s.URL+"/git/web.git", "main")
	if _, err := c.Deploy(ctx, "web"); err != nil {
		b.Fatal(err)
	}
	sess, err := c.CreateSession(ctx, "web", client.SessionRequest{NewBranch: "p8"})
	if err != nil {
		b.Fatal(err)
	}
	for range b.N {
		var ids []string
		script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do echo line $i; i=$((i+1)); sleep 0.005; done", lines)
		for range commands {
			cm, err := c.RunCommand(ctx, "web", sess.ID, client.CommandRequest{Command: script})
			if err != nil {
				b.Fatal(err)
			}
			ids = append(ids, cm.ID)
		}
		pid := s.cmd.Process.Pid
		base := rssKiB(pid)
		var peak atomic.Int64
		stop := make(chan struct{})
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
					if r := rssKiB(pid); r > peak.Load() {
						peak.Store(r)
					}
				}
			}
		}()
		var wg sync.WaitGroup
		var lost, bad atomic.Int64
		t0 := time.Now()
		for _, id := range ids {
			for range per {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var buf []byte
					_, err := c.Follow(ctx, "web", sess.ID, id, 0, func(e client.Event) error {
						if e.Type == "stdout" {
							buf = append(buf, e.Data...)
						}
						return nil
					})
					if err != nil {
						bad.Add(1)
						return
					}
					want := 0
					for _, line := range splitLines(buf) {
						if line != fmt.Sprintf("line %d", want) {
							lost.Add(1)
							return
						}
						want++
					}
					if want != lines {
						lost.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		close(stop)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(commands*per), "followers")
		b.ReportMetric(float64(base)/1024, "rss-before-MiB")
		b.ReportMetric(float64(peak.Load())/1024, "rss-peak-MiB")
		b.ReportMetric(float64(lost.Load()+bad.Load()), "followers-incomplete")
		b.ReportMetric(time.Since(t0).Seconds(), "seconds")
		if lost.Load()+bad.Load() > 0 {
			b.Errorf("%d followers missed lines, %d failed", lost.Load(), bad.Load())
		}
	}
	s.stop()
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, string(b[start:i]))
			start = i + 1
		}
	}
	return out
}
