// Package githost keeps each project's bare repository in the data directory
// and serves it over git's smart HTTP protocol with git's own http-backend.
// Push rules are enforced by a pre-receive hook that rdev installs and
// points every receive-pack at (core.hooksPath on the server's command
// line), reading a policy that only the server sets.
package githost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"rdev.dev/rdev/internal/rdev"
)

// Host manages bare repositories under one directory.
type Host struct {
	root  string // <data>/repos: one <project>.git each
	hooks string // <data>/git-hooks: the pre-receive hook
	// noHooks is an empty directory, the hooks path of pushes that may
	// update any ref.
	noHooks string
	git     string
	log     *slog.Logger
}

// New prepares the repository and hook directories under dataDir. It fails
// when git is not installed.
func New(dataDir string, log *slog.Logger) (*Host, error) {
	git, err := exec.LookPath("git")
	if err != nil {
		return nil, errors.New("git is not installed: rdev's git host runs git's own programs (install the git package)")
	}
	h := &Host{root: filepath.Join(dataDir, "repos"), hooks: filepath.Join(dataDir, "git-hooks"),
		noHooks: filepath.Join(dataDir, "git-hooks", "none"), git: git, log: log}
	for _, d := range []string{h.root, h.hooks, h.noHooks, filepath.Join(h.root, ".staging"), filepath.Join(h.root, ".trash")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(h.hooks, "pre-receive"), []byte(preReceive), 0o755); err != nil {
		return nil, fmt.Errorf("install pre-receive hook: %w", err)
	}
	// Leftovers of an interrupted create or delete.
	for _, d := range []string{".staging", ".trash"} {
		entries, _ := os.ReadDir(filepath.Join(h.root, d))
		for _, e := range entries {
			os.RemoveAll(filepath.Join(h.root, d, e.Name()))
		}
	}
	return h, nil
}

// preReceive enforces RDEV_PUSH_POLICY, which the server sets for each
// request: "any" (keys that may write), or "ref:refs/heads/<branch>" (a
// checkout token: that branch only, no deletion). Anything else refuses.
const preReceive = `#!/bin/sh
# Installed by rdev. Enforces the push policy the server sets per request.
case "$RDEV_PUSH_POLICY" in
any) exit 0 ;;
ref:refs/heads/*) allowed="${RDEV_PUSH_POLICY#ref:}" ;;
*) echo "rdev: pushes are not allowed with this credential" >&2; exit 1 ;;
esac
status=0
while read -r old new ref; do
	if [ "$ref" != "$allowed" ]; then
		echo "rdev: refusing to update $ref: this checkout token may push only to $allowed" >&2
		status=1
		continue
	fi
	case "$new" in
	*[!0]*) ;;
	*) echo "rdev: refusing to delete $ref: a checkout token cannot delete branches" >&2; status=1 ;;
	esac
done
exit $status
`

// Path returns the repository directory of project id.
func (h *Host) Path(id string) string { return filepath.Join(h.root, id+".git") }

// gitEnv isolates git from the server user's configuration and terminal.
func gitEnv() []string {
	return append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_ASKPASS=/bin/false", "SSH_ASKPASS=/bin/false")
}

// run runs git with args in dir and returns its standard output.
func (h *Host) run(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.git, args...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Stage creates the repository of a new project in a staging directory: an
// empty repository whose HEAD is defaultBranch, or a bare clone of
// importFrom with every branch and tag, through the HTTP proxy via when it
// is not "". Commit or Discard the result. Import failures are
// *rdev.InvalidError for field import_from.
func (h *Host) Stage(ctx context.Context, id, defaultBranch, importFrom, via string) (string, error) {
	staged, err := os.MkdirTemp(filepath.Join(h.root, ".staging"), id+"-")
	if err != nil {
		return "", err
	}
	if importFrom == "" {
		if _, err := h.run(ctx, staged, "init", "--quiet", "--bare", "--initial-branch="+defaultBranch, "."); err != nil {
			os.RemoveAll(staged)
			return "", err
		}
	} else {
		os.Remove(staged) // git clone wants to create it
		args := []string{"clone", "--quiet", "--bare", "--no-local", "--", importFrom, staged}
		if via != "" {
			// Every connection through the proxy, none around it; no
			// protocol but http(s) (no redirect to file:// or ssh).
			args = append([]string{"-c", "http.proxy=" + via, "-c", "protocol.allow=never", "-c", "protocol.http.allow=always",
				"-c", "protocol.https.allow=always", "-c", "http.followRedirects=initial"}, args...)
		}
		if _, err := h.run(ctx, filepath.Dir(staged), args...); err != nil {
			os.RemoveAll(staged)
			h.log.Info("import failed", "project", id, "from", importFrom, "err", err)
			return "", rdev.Invalid("import_from", "cannot import %s: %s", importFrom, lastLine(err.Error()))
		}
		// A clone keeps the source as a remote; the project's repository
		// stands alone.
		h.run(ctx, staged, "remote", "remove", "origin")
		if _, err := h.run(ctx, staged, "rev-parse", "--verify", "--quiet", "refs/heads/"+defaultBranch); err != nil {
			os.RemoveAll(staged)
			return "", rdev.Invalid("import_from", "the imported repository has no branch %q (the project's default branch)", defaultBranch)
		}
		if _, err := h.run(ctx, staged, "symbolic-ref", "HEAD", "refs/heads/"+defaultBranch); err != nil {
			os.RemoveAll(staged)
			return "", err
		}
	}
	return staged, nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimPrefix(s, "fatal: ")
}

// Commit moves a staged repository into place for project id, replacing a
// leftover directory of the same name.
func (h *Host) Commit(staged, id string) error {
	final := h.Path(id)
	if _, err := os.Stat(final); err == nil {
		if err := h.trash(final); err != nil {
			return err
		}
	}
	return os.Rename(staged, final)
}

// Discard removes a staged repository.
func (h *Host) Discard(staged string) { os.RemoveAll(staged) }

// Delete removes the repository of project id; a missing one is not an error.
func (h *Host) Delete(id string) error {
	p := h.Path(id)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return h.trash(p)
}

// trash renames dir out of the way (atomic), then removes it.
func (h *Host) trash(dir string) error {
	t, err := os.MkdirTemp(filepath.Join(h.root, ".trash"), "x-")
	if err != nil {
		return err
	}
	dst := filepath.Join(t, "repo")
	if err := os.Rename(dir, dst); err != nil {
		os.RemoveAll(t)
		return err
	}
	return os.RemoveAll(t)
}

var shaRe = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// ResolveBranch returns the commit at refs/heads/<branch>, or
// rdev.ErrBranchNotFound.
func (h *Host) ResolveBranch(ctx context.Context, id, branch string) (string, error) {
	out, err := h.run(ctx, h.Path(id), "rev-parse", "--verify", "--quiet", "refs/heads/"+branch+"^{commit}")
	if sha := strings.TrimSpace(out); err == nil && shaRe.MatchString(sha) {
		return sha, nil
	}
	return "", rdev.ErrBranchNotFound
}

// SetDefaultBranch points the repository's HEAD (what a clone checks out)
// at branch, which must exist unless the repository has no branch yet;
// rdev.ErrBranchNotFound otherwise.
func (h *Host) SetDefaultBranch(ctx context.Context, id, branch string) error {
	if _, err := h.ResolveBranch(ctx, id, branch); err != nil {
		out, ferr := h.run(ctx, h.Path(id), "for-each-ref", "--count=1", "--format=%(refname)", "refs/heads/")
		if ferr != nil {
			return ferr
		}
		if strings.TrimSpace(out) != "" {
			return err
		}
	}
	_, err := h.run(ctx, h.Path(id), "symbolic-ref", "HEAD", "refs/heads/"+branch)
	return err
}

// ResolveRef returns the commit a branch, tag, full ref or commit id names,
// or rdev.ErrRefNotFound.
func (h *Host) ResolveRef(ctx context.Context, id, ref string) (string, error) {
	if ref == "" || strings.HasPrefix(ref, "-") || strings.ContainsAny(ref, "\x00\n ") || len(ref) > 256 {
		return "", rdev.ErrRefNotFound
	}
	candidates := []string{"refs/heads/" + ref, "refs/tags/" + ref}
	if shaRe.MatchString(ref) || strings.HasPrefix(ref, "refs/") {
		candidates = []string{ref}
	}
	for _, c := range candidates {
		out, err := h.run(ctx, h.Path(id), "rev-parse", "--verify", "--quiet", "--end-of-options", c+"^{commit}")
		if sha := strings.TrimSpace(out); err == nil && shaRe.MatchString(sha) {
			return sha, nil
		}
	}
	return "", rdev.ErrRefNotFound
}

// CreateBranch creates refs/heads/<branch> at commit sha; it fails with
// rdev.ErrBranchExists when the branch exists.
func (h *Host) CreateBranch(ctx context.Context, id, branch, sha string) error {
	_, err := h.run(ctx, h.Path(id), "update-ref", "--no-deref", "refs/heads/"+branch, sha, strings.Repeat("0", len(sha)))
	if err != nil {
		if _, rerr := h.ResolveBranch(ctx, id, branch); rerr == nil {
			return rdev.ErrBranchExists
		}
		return err
	}
	return nil
}

// ValidateImportSource accepts an empty source, an absolute path, or an
// http(s), git, ssh or file URL (git's own URL forms "user@host:path"
// included). Errors are *rdev.InvalidError for field import_from.
func ValidateImportSource(src string) error {
	if src == "" {
		return nil
	}
	bad := func(why string) error { return rdev.Invalid("import_from", "%s", why) }
	switch {
	case len(src) > 2048:
		return bad("must be at most 2048 bytes")
	case strings.ContainsFunc(src, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return bad("must not contain control characters")
	case strings.HasPrefix(src, "-"):
		return bad(`must not start with "-"`)
	case strings.HasPrefix(src, "/"):
		return nil
	}
	if scheme, _, ok := strings.Cut(src, "://"); ok {
		switch scheme {
		case "http", "https", "git", "ssh", "file":
			return nil
		}
		return bad("only http, https, git, ssh and file URLs or absolute paths can be imported")
	}
	if at := strings.Index(src, "@"); at > 0 && strings.Contains(src[at:], ":") {
		return nil // scp-like ssh: user@host:path
	}
	return bad("must be a git URL (https://…, ssh://…, git://…, file://…) or an absolute path on the server")
}

// IsInternal reports whether src names a path inside rdev's data directory,
// which must not be imported (it holds every project's repository).
func (h *Host) IsInternal(src string) bool {
	p, ok := strings.CutPrefix(src, "file://")
	if !ok && !strings.HasPrefix(src, "/") {
		return false
	}
	if !ok {
		p = src
	}
	data := filepath.Dir(h.root)
	abs, err := filepath.Abs(p)
	if err != nil {
		return true
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if real, err := filepath.EvalSymlinks(data); err == nil {
		data = real
	}
	rel, err := filepath.Rel(data, abs)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
