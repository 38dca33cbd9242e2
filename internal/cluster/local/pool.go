package local

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// pool keeps ready checkouts of a project's default branch, so that a new
// session's workspace is a rename plus a checkout of what differs from
// its branch, not a write of the whole tree. It refills in the background.
type pool struct {
	c       *Cluster
	project string
	dir     string // <pod>/pool
	size    int

	mu      sync.Mutex
	fills   sync.WaitGroup
	filling bool
	cancel  context.CancelFunc
	ctx     context.Context
	changed chan struct{} // closed and replaced after each fill step
}

func newPool(c *Cluster, project, podDir string, size int) *pool {
	ctx, cancel := context.WithCancel(context.Background())
	return &pool{c: c, project: project, dir: filepath.Join(podDir, "pool"), size: size, ctx: ctx, cancel: cancel,
		changed: make(chan struct{})}
}

// ready lists the checkouts ready to take.
func (p *pool) ready() []string {
	entries, _ := os.ReadDir(p.dir)
	var out []string
	for _, e := range entries {
		if e.IsDir() && len(e.Name()) > 6 && e.Name()[:6] == "ready-" {
			out = append(out, filepath.Join(p.dir, e.Name()))
		}
	}
	return out
}

// take moves a ready checkout to dst; false when none is ready.
func (p *pool) take(dst string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, src := range p.ready() {
		if os.Rename(src, dst) == nil {
			go p.fill()
			return true
		}
	}
	go p.fill()
	return false
}

// fill makes checkouts until size are ready; one filler at a time.
func (p *pool) fill() {
	p.mu.Lock()
	if p.filling || p.size <= 0 || p.ctx.Err() != nil {
		p.mu.Unlock()
		return
	}
	p.filling = true
	p.fills.Add(1)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.filling = false
		p.mu.Unlock()
		p.fills.Done()
	}()
	os.MkdirAll(p.dir, 0o700)
	for len(p.ready()) < p.size && p.ctx.Err() == nil {
		tmp := filepath.Join(p.dir, "filling-"+rdev.NewID(""))
		err := git(p.ctx, "", "clone", "--quiet", "--shared", "--", p.c.cfg.RepoPath(p.project), tmp)
		if err == nil {
			err = p.handOver(tmp)
		}
		if err == nil {
			err = os.Rename(tmp, filepath.Join(p.dir, "ready-"+rdev.NewID("")))
		}
		if err != nil {
			os.RemoveAll(tmp)
			if p.ctx.Err() == nil {
				p.c.cfg.Log.Warn("fill workspace pool", "project", p.project, "err", err)
				select {
				case <-p.ctx.Done():
				case <-time.After(5 * time.Second):
				}
			}
		}
		p.mu.Lock()
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

// handOver gives a new checkout to the sandbox's user ahead of time, all
// but its top directory and .git: those stay rdev's, so that git (which
// works only in repositories of its own user) can switch the checkout to
// a session's branch at take time; the workspace's final hand-over then
// changes only them and what git rewrote.
func (p *pool) handOver(dir string) error {
	if p.c.cfg.User == nil {
		return nil
	}
	if err := p.c.cfg.User.Own(dir); err != nil {
		return err
	}
	for _, d := range []string{dir, filepath.Join(dir, ".git")} {
		if err := os.Lchown(d, os.Getuid(), os.Getgid()); err != nil {
			return err
		}
	}
	return nil
}

// stop ends filling and waits until the filler has cleaned up after
// itself.
func (p *pool) stop() {
	p.cancel()
	p.mu.Lock() // a fill that starts after this sees the cancelled context
	p.mu.Unlock()
	p.fills.Wait()
}

// WaitWarm waits until the project's pool holds at least n ready checkouts
// (tests and benchmarks measure the warm path with it).
func (c *Cluster) WaitWarm(ctx context.Context, projectID string, n int) error {
	for {
		c.mu.Lock()
		pd, ok := c.pods[projectID]
		c.mu.Unlock()
		if !ok || pd.pool == nil {
			return rdev.ErrPodNotRunning
		}
		pd.pool.mu.Lock()
		ch := pd.pool.changed
		pd.pool.mu.Unlock()
		if len(pd.pool.ready()) >= n {
			return nil
		}
		go pd.pool.fill()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}
