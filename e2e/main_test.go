// Package e2e drives the real rdev binary: it is built once per run, started
// as a process, and used through its HTTP API and its CLI.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/cluster/kube/kubetest"
	"rdev.dev/rdev/internal/httpapi/openapitest"
)

var binary string

func TestMain(m *testing.M) {
	// RDEV_E2E_BINARY runs the suite against a binary built beforehand
	// (CI's second run, as an unprivileged user without a Go toolchain).
	if b := os.Getenv("RDEV_E2E_BINARY"); b != "" {
		binary = b
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "rdev-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "rdev")
	build := exec.Command("go", "build", "-o", binary, "../cmd/rdev")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building rdev:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running `rdev serve` process.
type server struct {
	t      testing.TB
	cmd    *exec.Cmd
	URL    string
	mu     sync.Mutex
	stderr bytes.Buffer
	done   chan error
}

// start runs `rdev serve` with args and env (added to a minimal
// environment) and waits until it listens.
func start(t testing.TB, env []string, args ...string) *server {
	t.Helper()
	s, err := tryStart(t, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func tryStart(t testing.TB, env []string, args ...string) (*server, error) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--log-level", "warn"}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	if p := os.Getenv("RDEV_CGROUP_PARENT"); p != "" {
		// The cgroup subtree delegated to the user the suite runs as.
		cmd.Env = append(cmd.Env, "RDEV_CGROUP_PARENT="+p)
	}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, cmd: cmd, done: make(chan error, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	urlc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.stderr.WriteString(line + "\n")
			s.mu.Unlock()
			if u, ok := strings.CutPrefix(line, "rdev listening on "); ok {
				urlc <- u
			}
		}
		s.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	select {
	case s.URL = <-urlc:
		return s, nil
	case err := <-s.done:
		s.done <- err
		return s, fmt.Errorf("rdev serve exited before listening (%v):\n%s", err, s.log())
	case <-time.After(60 * time.Second):
		return s, fmt.Errorf("rdev serve did not listen within 60s:\n%s", s.log())
	}
}

func (s *server) log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// stop sends SIGTERM and waits for a clean exit.
func (s *server) stop() {
	s.t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	if err := s.wait(30 * time.Second); err != nil {
		s.t.Fatalf("rdev serve did not exit cleanly after SIGTERM: %v\n%s", err, s.log())
	}
}

func (s *server) wait(d time.Duration) error {
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(d):
		return fmt.Errorf("still running after %v", d)
	}
}

// client returns an SDK client whose every response is checked against
// the OpenAPI document.
func (s *server) client(t *testing.T, token string) *client.Client {
	v := openapitest.New(t)
	return client.New(s.URL, token).WithHTTPClient(&http.Client{Transport: v.Transport(t, nil), Timeout: time.Minute})
}

// cliOK runs the CLI as cli does and returns its stdout, failing the test
// when it exits non-zero.
func cliOK(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, env, args...)
	if code != 0 {
		t.Fatalf("rdev %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// cli runs the rdev binary as a client.
func cli(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func readKey(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func drain(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}

// kubeCluster starts a Kubernetes control plane with controllers and a test
// node, makes namespace ns, and returns an admin kubeconfig file for it.
func kubeCluster(t *testing.T, ns string) string {
	path, _ := kubeClusterClient(t, ns)
	return path
}

// kubeClusterClient is kubeCluster with an admin client of the cluster.
func kubeClusterClient(t *testing.T, ns string) (string, kubernetes.Interface) {
	cp, _ := kubetest.StartCluster(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	kubetest.Namespace(t, kc, ns)
	return cp.Kubeconfig(t), kc
}
