package cli

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/sandbox"
	"rdev.dev/rdev/internal/worker"
)

func newWorker(g *globals) *cobra.Command {
	var (
		kinds       []string
		capacity    int
		name        string
		timeout     time.Duration
		sandboxMode string
		sandboxUser string
		dir         string
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run an external worker that executes review tasks over the API",
		Long: `Run a worker on this machine: it registers with the server, claims review
tasks, checks each branch out from rdev's git host into a fresh workspace, runs
the project's review command (in bubblewrap when usable) and reports the
verdict; the server merges passing reviews that asked for auto_merge. Its API
key needs workers:execute and no project allow-list. SIGINT or SIGTERM stops it:
tasks in hand go back to the queue.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, k := range kinds {
				if k != rdev.TaskKindReview {
					return fmt.Errorf("--kinds: this worker runs review tasks; write your own worker with the Go SDK for %q (docs/workers.md)", k)
				}
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			user, err := sandbox.ResolveUser(sandboxUser, os.Geteuid())
			if err != nil {
				return err
			}
			mode, why, err := local.ResolveSandbox(sandboxMode, user)
			if err != nil {
				return err
			}
			if mode == local.SandboxUnavailable {
				return fmt.Errorf("this worker cannot run review commands: %w", why)
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find the rdev binary: %w", err)
			}
			if dir == "" {
				dir = os.TempDir()
			}
			wdir, err := os.MkdirTemp(dir, "rdev-worker-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(wdir)
			log, _ := newLogger(g.env.Stderr, "info", "text")
			runner, err := local.New(local.Config{Dir: wdir, Sandbox: mode, User: user, Executable: self, Log: log,
				ReviewCheckout: func(ctx context.Context, project, commit, dir string) error {
					src := c.BaseURL() + "/git/" + url.PathEscape(project) + ".git"
					return worker.GitCheckout(ctx, src, commit, dir, false, c.GitAuthEnv()...)
				}})
			if err != nil {
				return err
			}
			if mode == local.SandboxNone {
				fmt.Fprintln(g.env.Stderr, "warning: --sandbox none: review commands run unconfined, as this worker's user, with its network")
			}
			if name == "" {
				host, _ := os.Hostname()
				name = "rdev-worker@" + host
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			w, err := c.RegisterWorker(ctx, client.WorkerRequest{Name: name, Kinds: slices.Compact(kinds), Capacity: capacity})
			if err != nil {
				return err
			}
			defer c.DeregisterWorker(context.WithoutCancel(ctx), w.ID)
			review := &worker.Review{Runner: runner, Timeout: timeout,
				Project: func(ctx context.Context, id string) (*rdev.Project, error) { return c.GetProject(ctx, id) }}
			fmt.Fprintf(g.env.Stderr, "worker %s (%s) running %d review(s) at a time against %s, sandbox %s\n", w.ID, name, capacity, c.BaseURL(), mode)
			r := &worker.Runner{API: c, WorkerID: w.ID, Capacity: capacity, Log: log,
				Handlers: map[string]worker.Handler{rdev.TaskKindReview: review.Handle}}
			r.Run(ctx)
			fmt.Fprintln(g.env.Stderr, "worker stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&kinds, "kinds", []string{rdev.TaskKindReview}, "task kinds to take (this worker runs review)")
	f.IntVar(&capacity, "capacity", 1, "tasks run at a time")
	f.StringVar(&name, "name", "", "the worker's name in the pool (default rdev-worker@<host>)")
	f.DurationVar(&timeout, "review-timeout", worker.DefaultReviewTimeout, "how long a review command may run")
	f.StringVar(&sandboxMode, "sandbox", "auto", "run review commands in bubblewrap: auto (refuse to start without it), bwrap or none (unconfined: trust every project)")
	f.StringVar(&sandboxUser, "sandbox-user", "", "user:group review commands run as when the worker runs as root (default "+sandbox.DefaultUser+")")
	f.StringVar(&dir, "dir", "", "where review workspaces are made (default: the system's temporary directory)")
	return cmd
}
