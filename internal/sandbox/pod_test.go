package sandbox_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"rdev.dev/rdev/internal/sandbox"
)

func startPod(t *testing.T) (*sandbox.Pod, string, *sandbox.Credential) {
	u := requireBwrap(t)
	dir := t.TempDir()
	ws := filepath.Join(dir, "ws")
	if err := u.MkdirOwned(ws); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	p, err := sandbox.StartPod(context.Background(), sandbox.PodConfig{Dir: dir, Binds: []sandbox.Bind{{Src: ws, RW: true}},
		Executable: exe, Cred: u, Log: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p, ws, u
}

func TestPodRunsNestedProcesses(t *testing.T) {
	p, ws, u := startPod(t)
	nested := sandbox.Spec{Binds: []sandbox.Bind{{Src: ws, RW: true}}, ShareNet: true, DieWithParent: true, Chdir: ws, DropTo: u}
	proc, err := p.Client().Exec(context.Background(), nested.Args([]string{"/bin/sh", "-c", "echo out; echo err >&2; id -u; exit 3"}),
		sandbox.NewEnv(ws).List(), "", false)
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	done := make(chan struct{})
	go func() { io.Copy(&errb, proc.Stderr()); close(done) }()
	out, _ := io.ReadAll(proc.Stdout())
	<-done
	code, sig, err := proc.Wait()
	if err != nil || code != 3 || sig != 0 {
		t.Fatalf("exit %d %v %v", code, sig, err)
	}
	if !strings.HasPrefix(string(out), "out\n") || errb.String() != "err\n" {
		t.Fatalf("output %q %q", out, errb.String())
	}
}
