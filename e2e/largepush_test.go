package e2e

import (
	"bufio"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"rdev.dev/rdev/client"
)

// rssKiB reads a process's resident set size.
func rssKiB(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// TestLargePushStreams pushes about 200 MB of incompressible data and
// samples the server's resident memory meanwhile: request and response
// bodies must stream through rdev, not be held.
func TestLargePushStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data)
	admin := readKey(t, filepath.Join(data, "admin.key"))
	if _, err := s.client(t, admin).CreateProject(context.Background(), client.ProjectRequest{ID: "big", Name: "Big"}); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	mustGit(t, src, "", "init", "-q", "-b", "main")
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	buf := make([]byte, 1<<20)
	for i := range 4 {
		f, err := os.Create(filepath.Join(src, "blob"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		for range 50 {
			for j := 0; j < len(buf); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					buf[j+k] = byte(v >> (8 * k))
				}
			}
			f.Write(buf)
		}
		f.Close()
	}
	mustGit(t, src, "", "add", ".")
	mustGit(t, src, "", "commit", "-q", "-m", "200 MB")

	pid := s.cmd.Process.Pid
	base := rssKiB(pid)
	var peak atomic.Int64
	peak.Store(base)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(10 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				if r := rssKiB(pid); r > peak.Load() {
					peak.Store(r)
				}
			}
		}
	}()
	start := time.Now()
	mustGit(t, src, admin, "push", "-q", s.URL+"/git/big.git", "main")
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	growth := peak.Load() - base
	t.Logf("pushed 200 MiB in %v; server RSS %d KiB before, peak %d KiB (+%d KiB)", elapsed.Round(time.Millisecond), base, peak.Load(), growth)
	if growth > 50*1024 {
		t.Fatalf("the server's resident memory grew by %d KiB during a 200 MiB push (limit 50 MiB)", growth)
	}
	// And it arrived whole.
	out := mustGit(t, t.TempDir(), admin, "ls-remote", s.URL+"/git/big.git", "main")
	head := strings.TrimSpace(mustGit(t, src, "", "rev-parse", "HEAD"))
	if !strings.HasPrefix(out, head) {
		t.Fatalf("remote main %q, local %s", out, head)
	}
	s.stop()
}
