package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"rdev.dev/rdev/client"
)

// benchSize is the repository the git benchmarks use: about 5,000 files and
// 50 MB, and 1,000 commits to push; RDEV_BENCH_SMALL=1 (CI's smoke run)
// shrinks both.
func benchSize() (files, fileBytes, commits int) {
	if os.Getenv("RDEV_BENCH_SMALL") != "" {
		return 200, 2000, 50
	}
	return 5000, 10000, 1000
}

// bigRepo makes a repository of files random files and returns its path.
func bigRepo(b *testing.B, files, size int) string {
	dir := b.TempDir()
	run(b, dir, "git", "init", "-q", "-b", "main")
	rng := rand.New(rand.NewChaCha8([32]byte{7}))
	raw := make([]byte, size*3/4)
	for i := range files {
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		p := filepath.Join(dir, fmt.Sprintf("d%02d", i%50), fmt.Sprintf("f%05d.txt", i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(raw)), 0o644)
	}
	run(b, dir, "git", "add", ".")
	run(b, dir, "git", "commit", "-q", "-m", "tree")
	return dir
}

func run(b testing.TB, dir string, name string, args ...string) {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func timed(b *testing.B, dir, token string, args ...string) time.Duration {
	b.Helper()
	t0 := time.Now()
	cmd := exec.Command("git", append([]string{"-c", "credential.helper=", "-c", "credential.helper=!" + binary + " git-credential"}, args...)...)
	cmd.Dir = dir
	cmd.Env = gitEnv("RDEV_GIT_TOKEN=" + token)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return time.Since(t0)
}

// BenchmarkClone clones the same repository through rdev's smart HTTP and
// with `git clone --no-local` from its bare directory, alternating, and
// reports both times and their ratio (local time / rdev time: 1.0 means
// rdev costs nothing). "transfer" clones with --no-checkout, "full" also
// writes the work tree.
//
//	go test ./e2e -run '^$' -bench Clone -benchtime 5x
func BenchmarkClone(b *testing.B) {
	files, size, _ := benchSize()
	src := bigRepo(b, files, size)
	data := b.TempDir()
	s := start(b, nil, "--addr", "127.0.0.1:0", "--data", data, "--log-level", "warn")
	admin := readKey(b, filepath.Join(data, "admin.key"))
	if _, err := client.New(s.URL, admin).CreateProject(context.Background(), client.ProjectRequest{ID: "big", Name: "Big", ImportFrom: src}); err != nil {
		b.Fatal(err)
	}
	bare := filepath.Join(data, "repos", "big.git")
	for _, mode := range []string{"transfer", "full"} {
		b.Run(mode, func(b *testing.B) {
			var extra []string
			if mode == "transfer" {
				extra = []string{"--no-checkout"}
			}
			var local, viaRdev time.Duration
			for range b.N {
				dst := b.TempDir()
				local += timed(b, dst, "", append([]string{"clone", "-q", "--no-local"}, append(extra, bare, "local")...)...)
				viaRdev += timed(b, dst, admin, append([]string{"clone", "-q"}, append(extra, s.URL+"/git/big.git", "rdev")...)...)
				os.RemoveAll(dst)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(float64(local.Milliseconds())/float64(b.N), "local-ms")
			b.ReportMetric(float64(viaRdev.Milliseconds())/float64(b.N), "rdev-ms")
			b.ReportMetric(local.Seconds()/viaRdev.Seconds(), "x_local")
		})
	}
}

// BenchmarkPush pushes a history of many small commits into an empty
// repository through rdev and into an empty local bare repository, and
// reports both times and their ratio.
//
//	go test ./e2e -run '^$' -bench Push -benchtime 5x
func BenchmarkPush(b *testing.B) {
	_, _, commits := benchSize()
	src := b.TempDir()
	run(b, src, "git", "init", "-q", "-b", "main")
	for i := range commits {
		os.WriteFile(filepath.Join(src, "log.txt"), []byte(fmt.Sprintf("line %d\n", i)), 0o644)
		os.WriteFile(filepath.Join(src, fmt.Sprintf("f%04d", i%100)), []byte(fmt.Sprint(i)), 0o644)
		run(b, src, "git", "add", ".")
		run(b, src, "git", "commit", "-q", "-m", fmt.Sprint("commit ", i))
	}
	data := b.TempDir()
	s := start(b, nil, "--addr", "127.0.0.1:0", "--data", data, "--log-level", "warn")
	admin := readKey(b, filepath.Join(data, "admin.key"))
	c := client.New(s.URL, admin)
	var local, viaRdev time.Duration
	b.ResetTimer()
	for i := range b.N {
		bare := filepath.Join(b.TempDir(), "t.git")
		run(b, "", "git", "init", "-q", "--bare", bare)
		local += timed(b, src, "", "push", "-q", bare, "main")
		id := fmt.Sprintf("push-%d", i)
		if _, err := c.CreateProject(context.Background(), client.ProjectRequest{ID: id, Name: id}); err != nil {
			b.Fatal(err)
		}
		viaRdev += timed(b, src, admin, "push", "-q", s.URL+"/git/"+id+".git", "main")
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(local.Milliseconds())/float64(b.N), "local-ms")
	b.ReportMetric(float64(viaRdev.Milliseconds())/float64(b.N), "rdev-ms")
	b.ReportMetric(local.Seconds()/viaRdev.Seconds(), "x_local")
}

// BenchmarkCloneThroughEgress clones the same repository (--no-checkout:
// the transfer) from inside a session — through the pod's relay and rdev's
// egress proxy to rdev's git host — and from this machine straight to
// rdev's port, alternating, and reports both and their ratio (direct time
// / proxied time: 1.0 means the proxy costs nothing). The proxied time
// includes starting the command in the sandbox.
//
//	go test ./e2e -run '^$' -bench CloneThroughEgress -benchtime 5x
func BenchmarkCloneThroughEgress(b *testing.B) {
	if _, err := exec.LookPath("bwrap"); err != nil {
		b.Skip("bubblewrap is not installed")
	}
	files, size, _ := benchSize()
	src := bigRepo(b, files, size)
	data := b.TempDir()
	s := start(b, nil, "--addr", "127.0.0.1:0", "--data", data, "--log-level", "warn", "--sandbox", "bwrap")
	admin := readKey(b, filepath.Join(data, "admin.key"))
	c := client.New(s.URL, admin)
	ctx := context.Background()
	if _, err := c.CreateProject(ctx, client.ProjectRequest{ID: "big", Name: "Big", ImportFrom: src}); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Deploy(ctx, "big"); err != nil {
		b.Fatal(err)
	}
	sess, err := c.CreateSession(ctx, "big", client.SessionRequest{NewBranch: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	url := s.URL + "/git/big.git"
	var direct, proxied time.Duration
	for range b.N {
		dst := b.TempDir()
		direct += timed(b, dst, admin, "clone", "-q", "--no-checkout", url, "direct")
		t0 := time.Now()
		// The session's own credential helper authenticates the clone.
		res, err := c.RunCommandWait(ctx, "big", sess.ID, client.CommandRequest{Command: "git -c credential.helper= -c \"credential.helper=$(git config credential.helper)\" clone -q --no-checkout " + url + " /tmp/c && rm -rf /tmp/c", Timeout: "10m"})
		proxied += time.Since(t0)
		if err != nil || res.ExitCode == nil || *res.ExitCode != 0 {
			b.Fatalf("clone through the egress proxy: %v %+v", err, res)
		}
		os.RemoveAll(dst)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(direct.Milliseconds())/float64(b.N), "direct-ms")
	b.ReportMetric(float64(proxied.Milliseconds())/float64(b.N), "proxied-ms")
	b.ReportMetric(direct.Seconds()/proxied.Seconds(), "x_direct")
}
