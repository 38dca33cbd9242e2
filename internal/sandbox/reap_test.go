package sandbox_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reap starts script under the reaper (this test binary standing in for
// rdev), returning the command and the control pipe's writing end.
func reap(t *testing.T, script string) (*exec.Cmd, *os.File) {
	t.Helper()
	exe, _ := os.Executable()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "sandbox-reap", "--", "/bin/sh", "-c", script)
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { w.Close(); cmd.Process.Kill() })
	return cmd, w
}

func TestReapKeepsTheExitStatus(t *testing.T) {
	cmd, w := reap(t, "exit 3")
	err := cmd.Wait()
	w.Close()
	if cmd.ProcessState.ExitCode() != 3 {
		t.Fatalf("exit status %v, want 3", err)
	}
}

func TestReapPassesSignals(t *testing.T) {
	cmd, w := reap(t, "sleep 30")
	time.Sleep(200 * time.Millisecond)
	w.Write([]byte{byte(syscall.SIGTERM)})
	cmd.Wait()
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Fatalf("status %v, want killed by SIGTERM", cmd.ProcessState)
	}
}

// TestReapLeavesNothing: what a command leaves behind — a setsid'd
// process, a double fork, one that cleared its environment — dies with
// it, and so does everything when rdev lets go of the control pipe.
func TestReapLeavesNothing(t *testing.T) {
	marker := "rdev-reap-marker-" + strings.ReplaceAll(t.Name(), "/", "-")
	script := "(setsid sleep 7771 " + marker + " &); (sh -c 'sleep 7772 " + marker + " &' &); env -i sleep 7773 " + marker + " & echo started"
	cmd, w := reap(t, script)
	cmd.Wait()
	w.Close()
	waitGone(t, marker)

	cmd, w = reap(t, "setsid sleep 7774 "+marker+" & sleep 30")
	time.Sleep(300 * time.Millisecond)
	w.Close() // rdev went away
	cmd.Wait()
	waitGone(t, marker)
}

func waitGone(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-f", marker).Output()
		if len(strings.TrimSpace(string(out))) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes outlived their command: %s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
