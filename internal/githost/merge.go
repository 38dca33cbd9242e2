package githost

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Merge outcomes.
const (
	MergeFastForward = "fast-forward"
	MergeCommit      = "merge-commit"
	MergeUpToDate    = "already-merged"
)

// MergeResult is what Merge did.
type MergeResult struct {
	Kind      string   // MergeFastForward, MergeCommit or MergeUpToDate
	Commit    string   // the target branch's commit afterwards
	Conflicts []string // paths that conflict; nothing was merged
}

// ErrTargetMoved means the target branch moved while merging, three times
// in a row.
var ErrTargetMoved = errors.New("the target branch kept moving during the merge")

// Merge merges commit into refs/heads/<target> of project id in the bare
// repository, with no work tree: a fast-forward when target is an ancestor
// of commit, otherwise a merge commit written by `git merge-tree
// --write-tree`. The ref moves only from the value the merge was computed
// on, so a concurrent push is never overwritten (the merge is redone).
// Conflicts come back in the result, with nothing changed.
func (h *Host) Merge(ctx context.Context, id, target, commit, message string) (*MergeResult, error) {
	repo := h.Path(id)
	ref := "refs/heads/" + target
	for range 3 {
		base, err := h.ResolveBranch(ctx, id, target)
		if err != nil {
			return nil, fmt.Errorf("target branch %s: %w", target, err)
		}
		if h.isAncestor(ctx, repo, commit, base) {
			return &MergeResult{Kind: MergeUpToDate, Commit: base}, nil
		}
		kind, next := MergeFastForward, commit
		if !h.isAncestor(ctx, repo, base, commit) {
			tree, conflicts, err := h.mergeTree(ctx, repo, base, commit)
			if err != nil {
				return nil, err
			}
			if len(conflicts) > 0 {
				return &MergeResult{Conflicts: conflicts, Commit: base}, nil
			}
			out, err := h.runWithIdentity(ctx, repo, "commit-tree", tree, "-p", base, "-p", commit, "-m", message)
			if err != nil {
				return nil, err
			}
			kind, next = MergeCommit, strings.TrimSpace(out)
		}
		if _, err := h.run(ctx, repo, "update-ref", "-m", "rdev: "+message, ref, next, base); err != nil {
			if now, rerr := h.ResolveBranch(ctx, id, target); rerr == nil && now != base {
				continue // moved under us: merge again onto the new tip
			}
			return nil, err
		}
		return &MergeResult{Kind: kind, Commit: next}, nil
	}
	return nil, ErrTargetMoved
}

// isAncestor reports whether a is an ancestor of (or equal to) b.
func (h *Host) isAncestor(ctx context.Context, repo, a, b string) bool {
	_, err := h.run(ctx, repo, "merge-base", "--is-ancestor", a, b)
	return err == nil
}

// mergeTree computes the merged tree of a and b, or the conflicting paths.
func (h *Host) mergeTree(ctx context.Context, repo, a, b string) (string, []string, error) {
	cmd := exec.CommandContext(ctx, h.git, "merge-tree", "--write-tree", "--name-only", "--no-messages", "-z", a, b)
	cmd.Dir, cmd.Env = repo, gitEnv()
	out, err := cmd.Output()
	// Output: the tree id, NUL, then (on conflict, exit status 1) the
	// conflicted paths, each followed by NUL.
	fields := strings.Split(strings.TrimRight(string(out), "\x00"), "\x00")
	var ee *exec.ExitError
	switch {
	case err == nil:
		return fields[0], nil, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1 && len(fields) > 1:
		seen := map[string]bool{}
		var paths []string
		for _, p := range fields[1:] {
			if p != "" && !seen[p] {
				seen[p] = true
				paths = append(paths, p)
			}
		}
		return "", paths, nil
	}
	return "", nil, fmt.Errorf("git merge-tree: %w: %s", err, strings.TrimSpace(string(out)))
}

// runWithIdentity runs git as rdev, for commits rdev writes itself.
func (h *Host) runWithIdentity(ctx context.Context, dir string, args ...string) (string, error) {
	full := append([]string{"-c", "user.name=rdev", "-c", "user.email=rdev@localhost"}, args...)
	return h.run(ctx, dir, full...)
}
