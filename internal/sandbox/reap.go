package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Reap is the process rdev starts for each command when there is no
// sandbox (--sandbox none): it runs argv and makes sure nothing argv
// starts outlives it. It is a child subreaper, so every orphan below it —
// a double fork, a process that called setsid or cleared its
// environment — becomes its child, and when argv exits (or control, the
// pipe from rdev, closes) it kills them all. Signal numbers read from
// control go to argv's process group. It exits as argv did.
func Reap(argv []string, control io.Reader) int {
	if len(argv) == 0 {
		fmt.Fprintln(os.Stderr, "rdev sandbox-reap: no command")
		return 127
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "rdev sandbox-reap:", err)
		return 127
	}
	// The reaper outlives every signal but SIGKILL (rdev signals the
	// command through control). They are caught, not ignored: an ignored
	// signal would stay ignored in the command, across exec.
	caught := make(chan os.Signal, 64)
	signal.Notify(caught, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
		syscall.SIGPIPE, syscall.SIGALRM, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	go func() {
		for range caught {
		}
	}()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "rdev: cannot start %q: %v\n", argv[0], errors.Unwrap(err))
		return 127
	}
	pid := cmd.Process.Pid
	// Nothing but argv's own streams is left open in argv; the reaper's
	// copies go so that rdev sees the output end when the last process
	// writing it does.
	os.Stdin.Close()
	os.Stdout.Close()
	os.Stderr.Close()
	exited := make(chan struct{})
	go func() {
		b := make([]byte, 1)
		for {
			if _, err := control.Read(b); err != nil {
				// rdev is gone or gave the process up: end it.
				syscall.Kill(-pid, syscall.SIGKILL)
				return
			}
			select {
			case <-exited:
				return
			default:
				syscall.Kill(-pid, syscall.Signal(b[0]))
			}
		}
	}()
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err == nil || !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	close(exited)
	sweepChildren()
	if ws.Signaled() {
		// Die of the same signal, so that rdev reports it.
		sig := ws.Signal()
		signal.Reset(sig)
		syscall.Kill(os.Getpid(), sig)
		time.Sleep(time.Second) // the signal is handled asynchronously
		return 128 + int(sig)
	}
	return ws.ExitStatus()
}

// sweepChildren kills every child of this process until none is left:
// orphans keep arriving while their parents die, and each is reaped.
func sweepChildren() {
	self := os.Getpid()
	for {
		for _, pid := range childrenOf(self) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		var ws syscall.WaitStatus
		_, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.ECHILD) {
			return
		}
		if err == nil {
			// Reap whatever else is ready, then look again.
			syscall.Wait4(-1, &ws, 0, nil)
		}
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces; the
		// fields after its closing one are state, then ppid.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			out = append(out, n)
		}
	}
	return out
}
