package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// DefaultReviewTimeout bounds one run of a project's review command.
const DefaultReviewTimeout = 10 * time.Minute

// Review runs review tasks: the project's review command on the branch at
// its checked-in commit, in a sandbox of its own (see cluster.Reviewer).
// The verdict is the command's exit status as the sandbox's runner
// observed it: 0 passes. Merging a passed review (auto_merge) is rdev's,
// when the result is reported.
type Review struct {
	Runner  cluster.Reviewer
	Timeout time.Duration
	// Project returns the project's limits and egress policy, when the
	// worker may read them (nil: the server's defaults, public egress).
	Project func(ctx context.Context, projectID string) (*rdev.Project, error)
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
	spec := cluster.ReviewSpec{TaskID: t.ID, ProjectID: t.ProjectID, Branch: p.Branch, Commit: p.Commit, Command: p.ReviewCommand,
		Egress: rdev.Egress{Mode: rdev.EgressPublic}}
	if rv.Project != nil {
		if proj, err := rv.Project(ctx, t.ProjectID); err == nil {
			spec.Limits, spec.Egress = proj.Limits, proj.Egress
		}
	}
	timeout := rv.Timeout
	if timeout <= 0 {
		timeout = DefaultReviewTimeout
	}
	fmt.Fprintf(out.Stdout, "rdev: reviewing %s at %.12s: %s\n", p.Branch, p.Commit, p.ReviewCommand)
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	exit, err := rv.Runner.RunReview(rctx, spec, out.Stdout, out.Stderr)
	switch {
	case ctx.Err() != nil:
		return nil, ctx.Err() // cancelled or the worker is stopping
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		fmt.Fprintf(out.Stderr, "rdev: the review command ran out of its %s\n", timeout)
		return rdev.ReviewResult{Verdict: rdev.VerdictFailed, Reason: fmt.Sprintf("the review command timed out after %s", timeout)}, nil
	case errors.Is(err, rdev.ErrSandboxUnavailable):
		return nil, Permanent(err)
	case err != nil:
		return nil, fmt.Errorf("run the review: %w", err)
	}
	code := exit.Code
	if code == 0 {
		return rdev.ReviewResult{Verdict: rdev.VerdictPassed, ExitCode: &code}, nil
	}
	reason := fmt.Sprintf("the review command exited with status %d", code)
	if exit.Signal != "" {
		reason = "the review command was killed by " + exit.Signal
	}
	return rdev.ReviewResult{Verdict: rdev.VerdictFailed, Reason: reason, ExitCode: &code}, nil
}

// GitCheckout clones source (a path or URL) into dir without a work tree,
// then checks commit out, detached: the trusted step of a review. extra is
// added to git's environment (for example credentials as GIT_CONFIG_*
// variables); shared clones a local repository by reference to its
// objects, writing none. Hooks never run.
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
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "core.hooksPath=/dev/null"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=/nonexistent", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0"}, extra...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}
