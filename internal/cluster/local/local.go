// Package local runs projects on this machine: a project's "pod" is a
// directory under <data>/pods/<project> holding a checkout of its default
// branch and the session workspaces, plus one supervised process per
// component (restarted with backoff when it exits).
package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// Config is what a local cluster needs.
type Config struct {
	// Dir holds the pods: <Dir>/<project>/.
	Dir string
	// RepoPath returns the bare repository of a project.
	RepoPath func(projectID string) string
	// CredentialHelper is the git credential helper command of session
	// workspaces, e.g. "!/usr/local/bin/rdev git-credential".
	CredentialHelper string
	Log              *slog.Logger
	Now              func() time.Time
	// Sandbox is "bwrap" (run every process in bubblewrap) or "none"; see
	// ResolveSandbox.
	Sandbox string
	// DataDir is rdev's data directory, hidden from sandboxed processes.
	DataDir string
	// Executable is the rdev binary (the credential helper), made visible
	// inside the sandbox wherever it lives (go run builds it under /tmp).
	Executable string
	// WarmWorkspaces is how many ready checkouts of the default branch each
	// pod keeps for new sessions (0: every workspace is a fresh clone).
	WarmWorkspaces int
}

// Cluster is the local backend.
type Cluster struct {
	cfg  Config
	mu   sync.Mutex
	pods map[string]*pod
}

var _ cluster.Cluster = (*Cluster)(nil)

// podMeta is stored as <pod>/pod.json.
type podMeta struct {
	Name       string           `json:"name"`
	Labels     cluster.Labels   `json:"labels"`
	CreatedAt  time.Time        `json:"created_at"`
	Components []rdev.Component `json:"components"`
	Branch     string           `json:"branch"`
}

type pod struct {
	meta  podMeta
	dir   string
	procs []*supervisor
	pool  *pool
}

// New returns a local cluster over cfg.Dir.
func New(cfg Config) (*Cluster, error) {
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	cfg.Dir = mustAbs(cfg.Dir)
	if cfg.DataDir != "" {
		cfg.DataDir = mustAbs(cfg.DataDir)
	}
	if cfg.Sandbox == "" {
		cfg.Sandbox = SandboxNone
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Cluster{cfg: cfg, pods: map[string]*pod{}}, nil
}

func (c *Cluster) podDir(id string) string { return filepath.Join(c.cfg.Dir, id) }

// PodName is the name of a project's local pod.
func PodName(projectID string) string { return projectID + "-local" }

// Recover restarts the processes of every pod deployed before a restart.
func (c *Cluster) Recover(ctx context.Context) error {
	entries, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		meta, err := readMeta(filepath.Join(c.cfg.Dir, e.Name()))
		if err != nil {
			continue
		}
		c.mu.Lock()
		p := &pod{meta: *meta, dir: c.podDir(e.Name())}
		c.pods[e.Name()] = p
		c.startLocked(p)
		c.mu.Unlock()
	}
	return nil
}

func readMeta(dir string) (*podMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, "pod.json"))
	if err != nil {
		return nil, err
	}
	var m podMeta
	return &m, json.Unmarshal(b, &m)
}

// Deploy checks out the default branch into the pod and (re)starts every
// component.
func (c *Cluster) Deploy(ctx context.Context, p *rdev.Project) error {
	dir := c.podDir(p.ID)
	base := filepath.Join(dir, "base")
	if err := os.MkdirAll(filepath.Join(dir, "sessions"), 0o700); err != nil {
		return err
	}
	// The pod's own tree: the default branch (empty when the repository
	// has no commit yet).
	if _, err := os.Stat(filepath.Join(base, ".git")); errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(base)
		if err := git(ctx, dir, "clone", "--quiet", "--shared", "--", c.cfg.RepoPath(p.ID), base); err != nil {
			return fmt.Errorf("check out %s: %w", p.ID, err)
		}
	} else if err := git(ctx, base, "pull", "--quiet", "--ff-only"); err != nil {
		c.cfg.Log.Warn("update pod checkout", "project", p.ID, "err", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	created := c.cfg.Now().UTC()
	if old, ok := c.pods[p.ID]; ok {
		created = old.meta.CreatedAt
		c.stopLocked(old)
	} else if m, err := readMeta(dir); err == nil {
		created = m.CreatedAt
	}
	meta := podMeta{Name: PodName(p.ID), Labels: cluster.ProjectLabels(p.ID), CreatedAt: created, Components: p.Components, Branch: p.DefaultBranch}
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "pod.json"), b, 0o600); err != nil {
		return err
	}
	pd := &pod{meta: meta, dir: dir}
	c.pods[p.ID] = pd
	c.startLocked(pd)
	return nil
}

func (c *Cluster) startLocked(p *pod) {
	project := p.meta.Labels[cluster.LabelProject]
	if p.pool == nil {
		p.pool = newPool(c, project, p.dir, c.cfg.WarmWorkspaces)
		go p.pool.fill()
	}
	base := filepath.Join(p.dir, "base")
	for _, comp := range p.meta.Components {
		argv := c.wrap([]string{"/bin/sh", "-c", comp.Command}, project, base, base)
		s := newSupervisor(comp, argv, base, c.cfg.Log.With("project", project, "component", comp.Name), c.cfg.Now)
		p.procs = append(p.procs, s)
		s.start()
	}
}

func (c *Cluster) stopLocked(p *pod) {
	if p.pool != nil {
		p.pool.stop()
	}
	var wg sync.WaitGroup
	for _, s := range p.procs {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
	}
	wg.Wait()
	p.procs = nil
}

// Undeploy stops the project's processes and removes its pod directory.
func (c *Cluster) Undeploy(ctx context.Context, projectID string) error {
	c.mu.Lock()
	if p, ok := c.pods[projectID]; ok {
		c.stopLocked(p)
		delete(c.pods, projectID)
	}
	c.mu.Unlock()
	return os.RemoveAll(c.podDir(projectID))
}

// Status reports the pod and its processes.
func (c *Cluster) Status(ctx context.Context, projectID string) (*cluster.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := &cluster.Status{ProjectID: projectID, Processes: []cluster.Process{}}
	p, ok := c.pods[projectID]
	if !ok {
		return st, nil
	}
	st.Running, st.Pod = true, p.meta.Name
	for _, s := range p.procs {
		st.Processes = append(st.Processes, s.status())
	}
	return st, nil
}

// RunningPod returns the pod's name, or rdev.ErrPodNotRunning.
func (c *Cluster) RunningPod(ctx context.Context, projectID string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pods[projectID]; ok {
		return p.meta.Name, nil
	}
	return "", rdev.ErrPodNotRunning
}

// PrepareWorkspace checks the session's branch out into the pod, sharing
// the repository's objects, with origin on rdev's git host.
func (c *Cluster) PrepareWorkspace(ctx context.Context, spec cluster.WorkspaceSpec) (*cluster.Workspace, error) {
	if _, err := c.RunningPod(ctx, spec.ProjectID); err != nil {
		return nil, err
	}
	dir := filepath.Join(c.podDir(spec.ProjectID), "sessions", spec.SessionID)
	os.RemoveAll(dir)
	c.mu.Lock()
	pl := c.pods[spec.ProjectID].pool
	c.mu.Unlock()
	if pl != nil && pl.take(dir) {
		// A warm checkout of the default branch: switch it to the
		// session's branch, writing only what differs.
		sha := spec.Commit
		var err error
		if sha == "" {
			sha, err = revParse(ctx, c.cfg.RepoPath(spec.ProjectID), "refs/heads/"+spec.Branch)
		}
		// A two-tree read-tree updates the index and the files that differ
		// between the two commits, without checking every file of the tree
		// the way checkout does; then HEAD moves to the branch.
		if err == nil {
			err = git(ctx, dir, "read-tree", "-m", "-u", "HEAD", sha)
		}
		for _, ref := range []string{"refs/heads/" + spec.Branch, "refs/remotes/origin/" + spec.Branch} {
			if err == nil {
				err = writeRef(dir, ref, sha)
			}
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, ".git", "HEAD"), []byte("ref: refs/heads/"+spec.Branch+"\n"), 0o644)
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("check out %s: %w", spec.Branch, err)
		}
	} else if err := git(ctx, "", "clone", "--quiet", "--shared", "--branch", spec.Branch, "--", c.cfg.RepoPath(spec.ProjectID), dir); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("check out %s: %w", spec.Branch, err)
	}
	tokenFile := filepath.Join(dir, ".git", "rdev-token")
	if err := os.WriteFile(tokenFile, []byte(spec.Token+"\n"), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	helper := c.cfg.CredentialHelper
	if spec.Token != "" {
		helper += " --token-file '" + strings.ReplaceAll(tokenFile, "'", `'\''`) + "'"
	}
	// The whole configuration in one write (each git config call costs a
	// process): origin on rdev's git host, the branch tracking it, the
	// credential helper. The token stays in its own file.
	if err := os.WriteFile(filepath.Join(dir, ".git", "config"), []byte(cluster.WorkspaceConfig(spec, helper)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	b, _ := json.Marshal(cluster.ProjectLabels(spec.ProjectID).With(cluster.LabelSession, spec.SessionID))
	os.WriteFile(filepath.Join(dir, ".git", "rdev-labels.json"), b, 0o600)
	// The session's preview port maps to a free port of this machine.
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ".git", "rdev-port"), []byte(strconv.Itoa(port)), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return &cluster.Workspace{Path: dir}, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// PreviewAddr returns 127.0.0.1 and the host port mapped to the session's
// preview port.
func (c *Cluster) PreviewAddr(ctx context.Context, projectID, sessionID string) (string, error) {
	b, err := os.ReadFile(filepath.Join(c.podDir(projectID), "sessions", sessionID, ".git", "rdev-port"))
	if err != nil {
		return "", rdev.ErrSessionNotFound
	}
	return "127.0.0.1:" + strings.TrimSpace(string(b)), nil
}

// RemoveWorkspace removes a session's workspace.
func (c *Cluster) RemoveWorkspace(ctx context.Context, projectID, sessionID string) error {
	return os.RemoveAll(filepath.Join(c.podDir(projectID), "sessions", sessionID))
}

// List returns the pods, their component processes and the session
// workspaces, with their labels.
func (c *Cluster) List(ctx context.Context) ([]cluster.Resource, error) {
	entries, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return nil, err
	}
	var out []cluster.Resource
	for _, e := range entries {
		dir := filepath.Join(c.cfg.Dir, e.Name())
		meta, err := readMeta(dir)
		if err != nil {
			continue
		}
		out = append(out, cluster.Resource{Kind: "pod", Name: meta.Name, Labels: meta.Labels, CreatedAt: meta.CreatedAt})
		for _, comp := range meta.Components {
			out = append(out, cluster.Resource{Kind: "process", Name: meta.Name + "/" + comp.Name,
				Labels: meta.Labels.With(cluster.LabelComponent, comp.Name), CreatedAt: meta.CreatedAt})
		}
		ws, _ := os.ReadDir(filepath.Join(dir, "sessions"))
		for _, w := range ws {
			info, err := w.Info()
			if err != nil {
				continue
			}
			out = append(out, cluster.Resource{Kind: "workspace", Name: meta.Name + "/" + w.Name(),
				Labels: meta.Labels.With(cluster.LabelSession, w.Name()), CreatedAt: info.ModTime().UTC()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// DeleteSelected removes every resource matching selector, joining failures.
func (c *Cluster) DeleteSelected(ctx context.Context, selector cluster.Labels) error {
	rs, err := c.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range rs {
		if r.Labels.Matches(selector) {
			if err := c.Delete(ctx, r); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Delete removes one resource: a pod with its processes and workspaces, or
// one workspace. A process goes with its pod (stopping one component alone
// is a redeploy without it), so deleting one is a no-op.
func (c *Cluster) Delete(ctx context.Context, r cluster.Resource) error {
	project := r.Labels[cluster.LabelProject]
	switch r.Kind {
	case "pod":
		if err := c.Undeploy(ctx, project); err != nil {
			return fmt.Errorf("pod %s: %w", r.Name, err)
		}
	case "workspace":
		if err := c.RemoveWorkspace(ctx, project, r.Labels[cluster.LabelSession]); err != nil {
			return fmt.Errorf("workspace %s: %w", r.Name, err)
		}
	case "process":
	default:
		return fmt.Errorf("%s %s: not a kind of the local cluster", r.Kind, r.Name)
	}
	return nil
}

// Close stops every process (the server is shutting down; Recover starts
// them again).
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pods {
		c.stopLocked(p)
	}
}

func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// revParse resolves a ref of a repository to a commit id.
func revParse(ctx context.Context, repo, ref string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("no branch %s", strings.TrimPrefix(ref, "refs/heads/"))
	}
	return strings.TrimSpace(string(out)), nil
}

// writeRef writes a loose ref of a repository's .git directory.
func writeRef(dir, ref, sha string) error {
	p := filepath.Join(dir, ".git", filepath.FromSlash(ref))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(sha+"\n"), 0o644)
}
