package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/sandbox"
)

var _ cluster.Reviewer = (*Cluster)(nil)

// RunReview runs a review command in a sandbox of its own: a pod made for
// the one review (its own network namespace, egress through rdev's proxy
// under the project's policy), the commit checked out by rdev beforehand
// into a directory nothing else sees, the command with no credential. The
// exit status is the agent's observation of the process, outside the
// command's PID namespace. Without a sandbox (--sandbox none) the command
// runs under the reaper.
func (c *Cluster) RunReview(ctx context.Context, spec cluster.ReviewSpec, stdout, stderr io.Writer) (cluster.ReviewExit, error) {
	var none cluster.ReviewExit
	if err := c.unavailable(); err != nil {
		return none, err
	}
	root := c.cfg.ReviewDir
	if root == "" {
		root = filepath.Join(c.cfg.Dir, ".reviews")
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return none, err
	}
	dir, err := os.MkdirTemp(root, "review-"+spec.TaskID+"-")
	if err != nil {
		return none, err
	}
	defer os.RemoveAll(dir)
	work, tmp := filepath.Join(dir, "work"), filepath.Join(dir, "tmp")
	// The trusted step: a checkout made by rdev in a fresh directory.
	checkout := c.cfg.ReviewCheckout
	if checkout == nil {
		checkout = func(ctx context.Context, projectID, commit, dir string) error {
			if err := git(ctx, "", "clone", "--quiet", "--shared", "--no-checkout", "--", c.cfg.RepoPath(projectID), dir); err != nil {
				return err
			}
			return git(ctx, dir, "-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit)
		}
	}
	if err := checkout(ctx, spec.ProjectID, spec.Commit, work); err != nil {
		return none, fmt.Errorf("check out %.12s: %w", spec.Commit, err)
	}
	if err := c.cfg.User.Own(work); err != nil {
		return none, err
	}
	if err := c.cfg.User.MkdirOwned(tmp); err != nil {
		return none, err
	}
	env := sandbox.NewEnv(work).Set("RDEV_TASK", spec.TaskID).Set("RDEV_PROJECT", spec.ProjectID).
		Set("RDEV_BRANCH", spec.Branch).Set("RDEV_COMMIT", spec.Commit).Set("RDEV_WORKSPACE", work)
	argv := []string{"/bin/sh", "-c", spec.Command}
	if c.cfg.Sandbox != SandboxBwrap {
		p, err := c.reap(argv, env.List(), work, false)
		if err != nil {
			return none, err
		}
		return follow(ctx, p, stdout, stderr)
	}
	var binds []sandbox.Bind
	if c.cfg.RepoPath != nil && c.cfg.ReviewCheckout == nil {
		binds = append(binds, sandbox.Bind{Src: c.cfg.RepoPath(spec.ProjectID)})
	}
	podCfg := sandbox.PodConfig{
		Dir:        dir,
		Binds:      append([]sandbox.Bind{{Src: work, RW: true}, {Src: tmp, RW: true}}, binds...),
		Executable: c.cfg.Executable,
		Cred:       c.cfg.User,
		Hide:       sandbox.Hidden(c.cfg.DataDir),
		Log:        c.cfg.Log.With("project", spec.ProjectID, "task", spec.TaskID),
	}
	if c.cfg.Egress != nil {
		if err := c.cfg.User.MkdirOwned(sandbox.RunDir(dir)); err != nil {
			return none, err
		}
		sock := filepath.Join(sandbox.RunDir(dir), "egress.sock")
		ln, err := sandbox.ListenUnix(sock)
		if err != nil {
			return none, err
		}
		defer ln.Close()
		os.Chmod(sock, 0o666)
		go c.cfg.Egress(ln, spec.ProjectID, spec.TaskID)
		podCfg.Relays = []sandbox.Relay{{Listen: "127.0.0.1:" + strconv.Itoa(ProxyPort), Socket: sock}}
		if c.cfg.GitPort != 0 && c.cfg.GitPort != ProxyPort {
			podCfg.Relays = append(podCfg.Relays, sandbox.Relay{Listen: "127.0.0.1:" + strconv.Itoa(c.cfg.GitPort), Socket: sock})
		}
		env.Proxy("http://127.0.0.1:" + strconv.Itoa(ProxyPort))
	}
	if c.cfg.Limits != nil {
		name := "review-" + spec.TaskID
		group, err := c.cfg.Limits(name, spec.Limits)
		if err != nil {
			return none, fmt.Errorf("resource limits: %w", err)
		}
		if c.cfg.Unlimit != nil {
			defer c.cfg.Unlimit(name)
		}
		podCfg.Wrap = append(append([]string{c.cfg.Executable, "sandbox-enter"}, group...), "--")
	}
	pod, err := sandbox.StartPod(ctx, podCfg)
	if err != nil {
		return none, err
	}
	defer pod.Stop()
	nested := sandbox.Spec{
		Binds:         append([]sandbox.Bind{{Src: work, RW: true}}, binds...),
		Tmp:           tmp,
		Hide:          podCfg.Hide,
		ShareNet:      true,
		DieWithParent: true,
		Chdir:         work,
		Hostname:      "review",
		DropTo:        c.cfg.User,
	}
	nested.Env = env.List()
	p, err := pod.Client().Exec(ctx, nested.Args(argv), sandbox.NewEnv("/").List(), "", false)
	if err != nil {
		return none, err
	}
	return follow(ctx, agentProc{p}, stdout, stderr)
}

// follow copies a review's output until it exits, killing it when ctx
// ends first.
func follow(ctx context.Context, p cluster.Proc, stdout, stderr io.Writer) (cluster.ReviewExit, error) {
	stop := context.AfterFunc(ctx, func() { p.Signal(syscall.SIGKILL) })
	defer stop()
	done := make(chan struct{})
	go func() { io.Copy(stderr, p.Stderr()); close(done) }()
	io.Copy(stdout, p.Stdout())
	<-done
	code, sig, err := p.Wait()
	if ctx.Err() != nil {
		return cluster.ReviewExit{}, ctx.Err()
	}
	if err != nil {
		return cluster.ReviewExit{}, err
	}
	return cluster.ReviewExit{Code: code, Signal: sig}, nil
}
