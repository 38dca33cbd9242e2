package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// DefaultReviewTimeout bounds one run of a project's review command.
const DefaultReviewTimeout = 10 * time.Minute

// Review runs review tasks: the project's review command on the branch at
// its checked-in commit, in a fresh workspace, sandboxed where possible.
// The verdict is the command's: exit status 0 passes. Merging a passed
// review (auto_merge) is rdev's, when the result is reported.
type Review struct {
	// Checkout fills the empty directory dir with the project's repository
	// at commit (detached).
	Checkout func(ctx context.Context, projectID, commit, dir string) error
	// Sandbox wraps the command's argv to run confined to dir; nil runs it
	// as it is.
	Sandbox func(argv []string, projectID, dir string) []string
	// Dir holds the workspaces (the system's temporary directory when "").
	Dir     string
	Timeout time.Duration
	// Env is the environment the command starts from (os.Environ() when
	// nil); rdev's own credentials should not be in it.
	Env []string
}

// Handle is the Handler of review tasks.
func (rv *Review) Handle(ctx context.Context, t *rdev.Task, out *Output) (any, error) {
	var p rdev.ReviewPayload
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, Permanent(fmt.Errorf("review payload: %w", err))
	}
	if p.Commit == "" {
		fmt.Fprintf(out.Stderr, "rdev: branch %s was deleted before check-in: nothing to review\n", p.Branch)
		return rdev.ReviewResult{Verdict: rdev.VerdictFailed, Reason: "the branch was deleted before check-in"}, nil
	}
	if strings.TrimSpace(p.ReviewCommand) == "" {
		fmt.Fprintf(out.Stdout, "rdev: project %s has no review command: %s at %.12s passes as it is\n", t.ProjectID, p.Branch, p.Commit)
		return rdev.ReviewResult{Verdict: rdev.VerdictPassed, Reason: "no review command configured"}, nil
	}
	dir, err := os.MkdirTemp(rv.Dir, "review-"+t.ID+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(out.Stdout, "rdev: reviewing %s at %.12s: %s\n", p.Branch, p.Commit, p.ReviewCommand)
	if err := rv.Checkout(ctx, t.ProjectID, p.Commit, dir); err != nil {
		return nil, fmt.Errorf("check out %s at %.12s: %w", p.Branch, p.Commit, err)
	}
	timeout := rv.Timeout
	if timeout <= 0 {
		timeout = DefaultReviewTimeout
	}
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := []string{"/bin/sh", "-c", p.ReviewCommand}
	if rv.Sandbox != nil {
		argv = rv.Sandbox(argv, t.ProjectID, dir)
	}
	cmd := exec.CommandContext(rctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out.Stdout, out.Stderr
	env := rv.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(append([]string{}, env...), "HOME="+dir, "RDEV_TASK="+t.ID, "RDEV_PROJECT="+t.ProjectID,
		"RDEV_BRANCH="+p.Branch, "RDEV_COMMIT="+p.Commit)
	// The command and everything it starts form one process group, killed
	// together when the review ends early.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err() // cancelled or the worker is stopping
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		fmt.Fprintf(out.Stderr, "rdev: the review command ran out of its %s\n", timeout)
		return rdev.ReviewResult{Verdict: rdev.VerdictFailed, Reason: fmt.Sprintf("the review command timed out after %s", timeout)}, nil
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return nil, fmt.Errorf("run the review command: %w", err)
	}
	code := cmd.ProcessState.ExitCode()
	if code == 0 {
		return rdev.ReviewResult{Verdict: rdev.VerdictPassed, ExitCode: &code}, nil
	}
	reason := fmt.Sprintf("the review command exited with status %d", code)
	if code < 0 {
		reason = "the review command was killed by " + cmd.ProcessState.String()
	}
	return rdev.ReviewResult{Verdict: rdev.VerdictFailed, Reason: reason, ExitCode: &code}, nil
}

// GitCheckout clones source (a path or URL) into dir without a work tree,
// then checks commit out, detached. extra is added to git's environment
// (for example credentials as GIT_CONFIG_* variables); shared clones a
// local repository by reference to its objects, writing none.
func GitCheckout(ctx context.Context, source, commit, dir string, shared bool, extra ...string) error {
	args := []string{"clone", "--quiet", "--no-checkout"}
	if shared {
		args = append(args, "--shared")
	}
	if err := git(ctx, "", extra, append(args, "--", source, dir)...); err != nil {
		return err
	}
	return git(ctx, dir, extra, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
}

func git(ctx context.Context, dir string, extra []string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0"), extra...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Bubblewrap returns a Sandbox that runs the command in bubblewrap: the
// filesystem read-only but for its workspace, a private /tmp and PID
// namespace, and the paths in hide (a worker's own credentials) replaced by
// empty directories.
func Bubblewrap(hide ...string) func(argv []string, projectID, dir string) []string {
	return func(argv []string, _, dir string) []string {
		out := []string{"bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"}
		for _, h := range hide {
			if _, err := os.Stat(h); err == nil {
				out = append(out, "--tmpfs", h)
			}
		}
		out = append(out, "--bind", dir, dir, "--unshare-pid", "--die-with-parent", "--chdir", dir, "--")
		return append(out, argv...)
	}
}
