// Package local runs projects on this machine. A project's "pod" is a
// directory under <data>/pods/<project> — its code (code/base, the default
// branch, read-only to the pod's processes), the copies of it that
// writable components work in (components/<name>/work), its sessions'
// workspaces (sessions/<id>) and their temporary directories (tmp/) — plus, with a
// sandbox, one long-lived bubblewrap sandbox holding the pod's network
// namespace and its agent (package sandbox), through which every component
// and command starts in a nested sandbox of its own. docs/security.md says
// what each process can and cannot see.
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
	"rdev.dev/rdev/internal/sandbox"
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
	// Sandbox is "bwrap" (every process in bubblewrap), "none", or
	// "unavailable" (no project code starts; SandboxWhy says why); see
	// ResolveSandbox.
	Sandbox    string
	SandboxWhy error
	// User is who sandboxed processes run as when rdev runs as root (nil:
	// rdev's own user, which is then not root).
	User *sandbox.Credential
	// DataDir is rdev's data directory, never visible to sandboxed
	// processes.
	DataDir string
	// Executable is the rdev binary: the pod's agent, the reaper of
	// unsandboxed commands, and the credential helper, made visible inside
	// the sandbox wherever it lives (go run builds it under /tmp).
	Executable string
	// WarmWorkspaces is how many ready checkouts of the default branch each
	// pod keeps for new sessions (0: every workspace is a fresh clone).
	WarmWorkspaces int
	// Egress serves a sandbox's egress socket until ln closes: rdev's git
	// host for the project and the egress proxy (taskID names a review's
	// sandbox, "" a project's pod). Nil: sandboxes have no way out but
	// loopback.
	Egress func(ln net.Listener, projectID, taskID string)
	// GitPort is the loopback port at which sandboxes reach rdev's git
	// host (the port of rdev's public URL when that URL is a loopback
	// one); 0 when they reach it through the egress proxy.
	GitPort int
	// ReviewDir holds reviews' directories (<Dir>/.reviews when "").
	ReviewDir string
	// ReviewCheckout fills the empty directory dir with the project's code
	// at commit, for a review; nil clones from RepoPath (sharing its
	// objects). A worker on another machine fetches from rdev's git host.
	ReviewCheckout func(ctx context.Context, projectID, commit, dir string) error
	// Limits makes the resource group of a sandbox under its project's
	// limits and returns how `rdev sandbox-enter` finds it
	// (limits.Group.Args); Unlimit removes the group and whatever is left
	// in it. Nil: no limits.
	Limits  func(name string, l rdev.Limits) ([]string, error)
	Unlimit func(name string)
}

// ProxyPort is where the egress proxy answers inside every sandbox
// (HTTP_PROXY=http://127.0.0.1:3128).
const ProxyPort = 3128

// Cluster is the local backend.
type Cluster struct {
	cfg       Config
	deploying sync.Mutex
	mu        sync.Mutex
	pods      map[string]*pod
}

var _ cluster.Cluster = (*Cluster)(nil)

// podMeta is stored as <pod>/pod.json.
type podMeta struct {
	Name       string           `json:"name"`
	Labels     cluster.Labels   `json:"labels"`
	CreatedAt  time.Time        `json:"created_at"`
	Components []rdev.Component `json:"components"`
	Branch     string           `json:"branch"`
	Limits     rdev.Limits      `json:"limits"`
}

type pod struct {
	meta  podMeta
	dir   string
	procs []*supervisor
	pool  *pool
	// sb is the pod's sandbox (nil without one) and egress the socket of
	// its way out.
	sb     *sandbox.Pod
	egress net.Listener
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
	if cfg.Sandbox != SandboxBwrap {
		// Without a sandbox every process runs as rdev's own user.
		cfg.User = nil
	}
	if cfg.Sandbox == SandboxBwrap && cfg.Executable == "" {
		return nil, errors.New("local cluster: a sandbox needs the rdev executable (its agent)")
	}
	if cfg.Executable != "" {
		cfg.Executable = mustAbs(cfg.Executable)
	}
	return &Cluster{cfg: cfg, pods: map[string]*pod{}}, nil
}

func (c *Cluster) podDir(id string) string { return filepath.Join(c.cfg.Dir, id) }

// PodName is the name of a project's local pod.
func PodName(projectID string) string { return projectID + "-local" }

// Recover restarts the pods deployed before a restart: their sandboxes
// and components.
func (c *Cluster) Recover(ctx context.Context) error {
	entries, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range entries {
		dir := filepath.Join(c.cfg.Dir, e.Name())
		meta, err := readMeta(dir)
		if err != nil {
			continue
		}
		if !c.codeInPlace(e.Name(), meta.Components) {
			// A pod of an older layout: its code is made anew.
			copies, err := c.refreshCode(ctx, e.Name(), writable(meta.Components))
			if err == nil {
				err = c.placeCopies(e.Name(), copies)
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
		}
		c.mu.Lock()
		p := &pod{meta: *meta, dir: dir}
		c.pods[e.Name()] = p
		err = c.startLocked(ctx, p)
		c.mu.Unlock()
		if err != nil {
			errs = append(errs, fmt.Errorf("pod %s: %w", e.Name(), err))
		}
	}
	return errors.Join(errs...)
}

// codeInPlace reports whether the pod has its code and every writable
// component its copy.
func (c *Cluster) codeInPlace(projectID string, comps []rdev.Component) bool {
	if _, err := os.Stat(c.basePath(projectID)); err != nil {
		return false
	}
	for _, name := range writable(comps) {
		if _, err := os.Stat(filepath.Join(c.componentsDir(projectID), name, "work")); err != nil {
			return false
		}
	}
	return true
}

func readMeta(dir string) (*podMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, "pod.json"))
	if err != nil {
		return nil, err
	}
	var m podMeta
	return &m, json.Unmarshal(b, &m)
}

// basePath is the pod's checkout of the default branch.
func (c *Cluster) basePath(projectID string) string {
	return filepath.Join(c.podDir(projectID), "code", "base")
}

// refreshCode makes the pod's code a fresh checkout of the default branch
// (empty when the repository has no commit yet), and returns a fresh copy
// of that same code for each writable component named, ready for
// placeCopies. It never runs git in a directory the pod's processes could
// have written: the new checkout is made beside the old one, then swapped
// in.
func (c *Cluster) refreshCode(ctx context.Context, projectID string, writable []string) (map[string]string, error) {
	code := filepath.Join(c.podDir(projectID), "code")
	if err := os.MkdirAll(code, 0o755); err != nil {
		return nil, err
	}
	next := filepath.Join(code, ".next-"+rdev.NewID(""))
	if err := git(ctx, "", "clone", "--quiet", "--shared", "--", c.cfg.RepoPath(projectID), next); err != nil {
		os.RemoveAll(next)
		return nil, fmt.Errorf("check out %s: %w", projectID, err)
	}
	// next is rdev's alone until it is swapped in.
	commit, _ := revParse(ctx, next, "HEAD") // "" when there is no commit
	copies, err := c.copyCode(ctx, projectID, commit, writable)
	if err != nil {
		os.RemoveAll(next)
		return nil, err
	}
	base := c.basePath(projectID)
	old := filepath.Join(code, ".old-"+rdev.NewID(""))
	if err := os.Rename(base, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		os.RemoveAll(next)
		removeCopies(copies)
		return nil, err
	}
	if err := os.Rename(next, base); err != nil {
		removeCopies(copies)
		return nil, err
	}
	os.RemoveAll(old)
	return copies, nil
}

// componentsDir holds the writable components' copies of the code, each
// at <name>/work.
func (c *Cluster) componentsDir(projectID string) string {
	return filepath.Join(c.podDir(projectID), "components")
}

// copyCode makes, for each component named, a checkout of commit owned by
// the sandbox's user, beside the copies in use (placeCopies swaps them in).
func (c *Cluster) copyCode(ctx context.Context, projectID, commit string, names []string) (map[string]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	dir := c.componentsDir(projectID)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	copies := map[string]string{}
	for _, name := range names {
		dst := filepath.Join(dir, ".next-"+rdev.NewID(""))
		copies[name] = dst
		err := git(ctx, "", "clone", "--quiet", "--shared", "--no-checkout", "--", c.cfg.RepoPath(projectID), dst)
		if err == nil && commit != "" {
			err = git(ctx, dst, "reset", "--quiet", "--hard", commit)
		}
		if err == nil {
			err = c.cfg.User.Own(dst)
		}
		if err != nil {
			removeCopies(copies)
			return nil, fmt.Errorf("copy the code for component %s: %w", name, err)
		}
	}
	return copies, nil
}

// placeCopies puts fresh copies of the code (from copyCode) in place of
// the components' old ones, and removes every other copy: of components
// gone or no longer writable, and leftovers of an interrupted deploy. The
// components are stopped.
func (c *Cluster) placeCopies(projectID string, copies map[string]string) error {
	dir := c.componentsDir(projectID)
	keep := map[string]bool{}
	for _, p := range copies {
		keep[p] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); !keep[p] {
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	for name, src := range copies {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			return err
		}
		if err := os.Rename(src, filepath.Join(dir, name, "work")); err != nil {
			return err
		}
	}
	return nil
}

func removeCopies(copies map[string]string) {
	for _, p := range copies {
		os.RemoveAll(p)
	}
}

// writable names the components that work in a copy of their own.
func writable(comps []rdev.Component) []string {
	var names []string
	for _, comp := range comps {
		if comp.Writable {
			names = append(names, comp.Name)
		}
	}
	return names
}

// Deploy checks the default branch out afresh into the pod, starts the
// pod's sandbox if it is not running, and (re)starts every component.
// Sessions and their commands go on.
func (c *Cluster) Deploy(ctx context.Context, p *rdev.Project) error {
	if err := c.unavailable(); err != nil {
		return err
	}
	dir := c.podDir(p.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, d := range []string{"sessions", "tmp"} {
		if err := c.cfg.User.MkdirOwned(filepath.Join(dir, d)); err != nil {
			return err
		}
	}
	os.RemoveAll(filepath.Join(dir, "base")) // the code's place before code/base
	// One deploy at a time: each swaps the code and the copies in place.
	c.deploying.Lock()
	defer c.deploying.Unlock()
	copies, err := c.refreshCode(ctx, p.ID, writable(p.Components))
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	created := c.cfg.Now().UTC()
	pd, ok := c.pods[p.ID]
	if ok {
		created = pd.meta.CreatedAt
		c.stopComponentsLocked(pd)
	} else if m, err := readMeta(dir); err == nil {
		created = m.CreatedAt
	}
	if err := c.placeCopies(p.ID, copies); err != nil {
		removeCopies(copies)
		return err
	}
	meta := podMeta{Name: PodName(p.ID), Labels: cluster.ProjectLabels(p.ID), CreatedAt: created, Components: p.Components,
		Branch: p.DefaultBranch, Limits: p.Limits}
	b, _ := json.MarshalIndent(meta, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "pod.json"), b, 0o600); err != nil {
		return err
	}
	if !ok {
		pd = &pod{dir: dir}
		c.pods[p.ID] = pd
	}
	pd.meta = meta
	return c.startLocked(ctx, pd)
}

// startLocked starts what of the pod is not running: its sandbox, its
// workspace pool, its components.
func (c *Cluster) startLocked(ctx context.Context, p *pod) error {
	project := p.meta.Labels[cluster.LabelProject]
	if c.cfg.Sandbox == SandboxBwrap {
		if !p.sandboxRunning() {
			if err := c.startSandbox(ctx, project, p); err != nil {
				return err
			}
		} else if _, err := c.startEgress(project, p); err != nil {
			// A deploy applies the project's egress policy as it is now.
			return err
		}
	}
	if p.pool == nil {
		p.pool = newPool(c, project, p.dir, c.cfg.WarmWorkspaces)
		go p.pool.fill()
	}
	for _, comp := range p.meta.Components {
		s := newSupervisor(comp, c.componentStarter(project, comp, p.sb), c.cfg.Log.With("project", project, "component", comp.Name), c.cfg.Now)
		p.procs = append(p.procs, s)
		s.start()
	}
	return nil
}

func (p *pod) sandboxRunning() bool {
	if p.sb == nil {
		return false
	}
	select {
	case <-p.sb.Done():
		return false
	default:
		return true
	}
}

// startSandbox starts the pod's sandbox: its agent, and the relays of its
// loopback to rdev's egress socket (the proxy, and rdev's git host).
func (c *Cluster) startSandbox(ctx context.Context, project string, p *pod) error {
	if err := os.MkdirAll(c.componentsDir(project), 0o755); err != nil {
		return err
	}
	relays, err := c.startEgress(project, p)
	if err != nil {
		return err
	}
	cfg := sandbox.PodConfig{
		Dir: p.dir,
		Binds: []sandbox.Bind{
			{Src: filepath.Join(p.dir, "sessions"), RW: true},
			{Src: filepath.Join(p.dir, "tmp"), RW: true},
			{Src: c.componentsDir(project), RW: true},
			{Src: filepath.Join(p.dir, "code")},
			{Src: c.cfg.RepoPath(project)},
		},
		Executable: c.cfg.Executable,
		Cred:       c.cfg.User,
		Relays:     relays,
		Hide:       sandbox.Hidden(c.cfg.DataDir),
		Log:        c.cfg.Log.With("project", project),
	}
	if c.cfg.Limits != nil {
		group, err := c.cfg.Limits("pod-"+project, p.meta.Limits)
		if err != nil {
			return fmt.Errorf("resource limits: %w", err)
		}
		cfg.Wrap = append(append([]string{c.cfg.Executable, "sandbox-enter"}, group...), "--")
	}
	sb, err := sandbox.StartPod(ctx, cfg)
	if err != nil {
		if p.egress != nil {
			p.egress.Close()
			p.egress = nil
		}
		return err
	}
	p.sb = sb
	return nil
}

// startEgress (re)opens the pod's egress socket — served with the
// project's policy as it is now — and returns the relays of the pod's
// loopback to it: the proxy, and rdev's git host.
func (c *Cluster) startEgress(project string, p *pod) ([]sandbox.Relay, error) {
	if p.egress != nil {
		p.egress.Close()
		p.egress = nil
	}
	run := sandbox.RunDir(p.dir)
	if err := c.cfg.User.MkdirOwned(run); err != nil {
		return nil, err
	}
	if c.cfg.Egress == nil {
		return nil, nil
	}
	sock := filepath.Join(run, "egress.sock")
	os.Remove(sock)
	ln, err := sandbox.ListenUnix(sock)
	if err != nil {
		return nil, fmt.Errorf("egress socket: %w", err)
	}
	// The sandbox's user connects to it.
	os.Chmod(sock, 0o666)
	p.egress = ln
	go c.cfg.Egress(ln, project, "")
	relays := []sandbox.Relay{{Listen: "127.0.0.1:" + strconv.Itoa(ProxyPort), Socket: sock}}
	if c.cfg.GitPort != 0 && c.cfg.GitPort != ProxyPort {
		relays = append(relays, sandbox.Relay{Listen: "127.0.0.1:" + strconv.Itoa(c.cfg.GitPort), Socket: sock})
	}
	return relays, nil
}

// stopComponentsLocked stops the pod's components.
func (c *Cluster) stopComponentsLocked(p *pod) {
	var wg sync.WaitGroup
	for _, s := range p.procs {
		wg.Add(1)
		go func() { defer wg.Done(); s.stop() }()
	}
	wg.Wait()
	p.procs = nil
}

// stopLocked stops everything of the pod: components, pool, sandbox.
func (c *Cluster) stopLocked(p *pod) {
	if p.pool != nil {
		p.pool.stop()
	}
	c.stopComponentsLocked(p)
	if p.sb != nil {
		p.sb.Stop()
		p.sb = nil
	}
	if p.egress != nil {
		p.egress.Close()
		p.egress = nil
	}
	if c.cfg.Unlimit != nil {
		c.cfg.Unlimit("pod-" + p.meta.Labels[cluster.LabelProject])
	}
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
	if c.cfg.Sandbox == SandboxNone {
		st.Sandbox = SandboxNone
	}
	p, ok := c.pods[projectID]
	if !ok || (c.cfg.Sandbox == SandboxBwrap && !p.sandboxRunning()) {
		return st, nil
	}
	st.Running, st.Pod = true, p.meta.Name
	for _, s := range p.procs {
		st.Processes = append(st.Processes, s.status())
	}
	return st, nil
}

// RunningPod returns the pod's name, or rdev.ErrPodNotRunning (also when
// its sandbox has died: a deploy starts it again).
func (c *Cluster) RunningPod(ctx context.Context, projectID string) (string, error) {
	if err := c.unavailable(); err != nil {
		return "", err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pods[projectID]; ok && (c.cfg.Sandbox != SandboxBwrap || p.sandboxRunning()) {
		return p.meta.Name, nil
	}
	return "", rdev.ErrPodNotRunning
}

func (c *Cluster) runningSandbox(projectID string) (*sandbox.Pod, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.pods[projectID]; ok && p.sandboxRunning() {
		return p.sb, nil
	}
	return nil, rdev.ErrPodNotRunning
}

// statePath holds what rdev keeps of a session outside its workspace
// (where its processes could change it): the preview port.
func (c *Cluster) statePath(projectID, sessionID string) string {
	return filepath.Join(c.podDir(projectID), "state", sessionID+".port")
}

// PrepareWorkspace checks the session's branch out into the pod, sharing
// the repository's objects, with origin on rdev's git host. The workspace
// and the session's temporary directory belong to the sandbox's user.
func (c *Cluster) PrepareWorkspace(ctx context.Context, spec cluster.WorkspaceSpec) (*cluster.Workspace, error) {
	if _, err := c.RunningPod(ctx, spec.ProjectID); err != nil {
		return nil, err
	}
	dir := c.WorkspacePath(spec.ProjectID, spec.SessionID)
	os.RemoveAll(dir)
	c.mu.Lock()
	pl := c.pods[spec.ProjectID].pool
	c.mu.Unlock()
	fail := func(err error) (*cluster.Workspace, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	// rdev writes the workspace before any process of the session exists,
	// and never runs git in it afterwards.
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
			return fail(fmt.Errorf("check out %s: %w", spec.Branch, err))
		}
	} else if err := git(ctx, "", "clone", "--quiet", "--shared", "--branch", spec.Branch, "--", c.cfg.RepoPath(spec.ProjectID), dir); err != nil {
		return fail(fmt.Errorf("check out %s: %w", spec.Branch, err))
	}
	tokenFile := filepath.Join(dir, ".git", "rdev-token")
	if err := os.WriteFile(tokenFile, []byte(spec.Token+"\n"), 0o600); err != nil {
		return fail(err)
	}
	helper := c.cfg.CredentialHelper
	if spec.Token != "" {
		helper += " --token-file '" + strings.ReplaceAll(tokenFile, "'", `'\''`) + "'"
	}
	// The whole configuration in one write (each git config call costs a
	// process): origin on rdev's git host, the branch tracking it, the
	// credential helper. The token stays in its own file.
	if err := os.WriteFile(filepath.Join(dir, ".git", "config"), []byte(cluster.WorkspaceConfig(spec, helper)), 0o600); err != nil {
		return fail(err)
	}
	if err := c.cfg.User.Own(dir); err != nil {
		return fail(err)
	}
	if err := c.cfg.User.MkdirOwned(c.tmpPath(spec.ProjectID, spec.SessionID)); err != nil {
		return fail(err)
	}
	// The preview port: inside the pod's own network the session's port
	// itself; without a sandbox, a free port of this machine.
	port := spec.PreviewPort
	if port == 0 {
		port = rdev.DefaultPreviewPort
	}
	if c.cfg.Sandbox != SandboxBwrap {
		var err error
		if port, err = freePort(); err != nil {
			return fail(err)
		}
	}
	state := c.statePath(spec.ProjectID, spec.SessionID)
	if err := os.MkdirAll(filepath.Dir(state), 0o700); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(state, []byte(strconv.Itoa(port)), 0o600); err != nil {
		return fail(err)
	}
	return &cluster.Workspace{Path: dir}, nil
}

// tmpPath is a session's /tmp.
func (c *Cluster) tmpPath(projectID, sessionID string) string {
	return filepath.Join(c.podDir(projectID), "tmp", sessionID)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (c *Cluster) previewPort(projectID, sessionID string) (int, error) {
	b, err := os.ReadFile(c.statePath(projectID, sessionID))
	if err != nil {
		return 0, rdev.ErrSessionNotFound
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// PreviewAddr returns the session's preview address as its commands see
// it: 127.0.0.1 and the port they are given as $PORT (inside the pod's
// network with a sandbox, this machine's without).
func (c *Cluster) PreviewAddr(ctx context.Context, projectID, sessionID string) (string, error) {
	port, err := c.previewPort(projectID, sessionID)
	if err != nil {
		return "", err
	}
	return "127.0.0.1:" + strconv.Itoa(port), nil
}

// DialPreview connects to the session's preview port: through the pod's
// agent with a sandbox (the pod's network is its own), directly without.
func (c *Cluster) DialPreview(ctx context.Context, projectID, sessionID string) (net.Conn, error) {
	port, err := c.previewPort(projectID, sessionID)
	if err != nil {
		return nil, err
	}
	if c.cfg.Sandbox != SandboxBwrap {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
	}
	sb, err := c.runningSandbox(projectID)
	if err != nil {
		return nil, err
	}
	return sb.Client().Dial(ctx, port)
}

// RemoveWorkspace removes a session's workspace, temporary directory and
// state.
func (c *Cluster) RemoveWorkspace(ctx context.Context, projectID, sessionID string) error {
	os.Remove(c.statePath(projectID, sessionID))
	os.RemoveAll(c.tmpPath(projectID, sessionID))
	return os.RemoveAll(c.WorkspacePath(projectID, sessionID))
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

// Close stops every pod (the server is shutting down; Recover starts them
// again).
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pods {
		c.stopLocked(p)
	}
}

// git runs rdev's own git: never a hook, never configuration rdev did not
// write (no system or global file; the repository's own config is rdev's).
func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = gitEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// revParse resolves a ref of a repository to a commit id.
func revParse(ctx context.Context, repo, ref string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", "rev-parse", "--verify", "--quiet", ref+"^{commit}")
	cmd.Dir = repo
	cmd.Env = gitEnv()
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("no branch %s", strings.TrimPrefix(ref, "refs/heads/"))
	}
	return strings.TrimSpace(string(out)), nil
}

// gitEnv is the environment of rdev's own git commands: PATH and nothing of
// the server's or the user's configuration.
func gitEnv() []string {
	return []string{"PATH=" + sandbox.Path, "HOME=/nonexistent", "LANG=C.UTF-8", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0", "GIT_AUTHOR_NAME=rdev", "GIT_AUTHOR_EMAIL=rdev@localhost", "GIT_COMMITTER_NAME=rdev", "GIT_COMMITTER_EMAIL=rdev@localhost"}
}

// writeRef writes a loose ref of a repository's .git directory.
func writeRef(dir, ref, sha string) error {
	p := filepath.Join(dir, ".git", filepath.FromSlash(ref))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, []byte(sha+"\n"), 0o644)
}
