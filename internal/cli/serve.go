package cli

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/local"
	"rdev.dev/rdev/internal/egress"
	"rdev.dev/rdev/internal/githost"
	"rdev.dev/rdev/internal/httpapi"
	"rdev.dev/rdev/internal/limits"
	"rdev.dev/rdev/internal/loop"
	"rdev.dev/rdev/internal/rdev"
	"rdev.dev/rdev/internal/sandbox"
	"rdev.dev/rdev/internal/service"
	"rdev.dev/rdev/internal/store/postgres"
	"rdev.dev/rdev/internal/store/sqlite"
	"rdev.dev/rdev/internal/worker"
)

const defaultAddr = "127.0.0.1:7420"

// ServeConfig is the configuration of `rdev serve`.
type ServeConfig struct {
	Addr            string
	Data            string
	Database        string
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	PublicURL       string
	PreviewDomain   string
	CleanupInterval time.Duration
	OutputLimit     int64
	IdleTimeout     time.Duration
	Sandbox         string
	SandboxUser     string
	LimitMemory     string
	LimitPIDs       int
	LimitCPU        float64
	WarmWorkspaces  int
	Cluster         string // local or kube
	GCConcurrency   int
	Kube            KubeConfig
	ReviewWorkers   int
	ReviewTimeout   time.Duration
	TaskLease       time.Duration
	ReaperInterval  time.Duration
	WorkerTimeout   time.Duration
	GCInterval      time.Duration
	GCWindow        time.Duration
	GCDryRun        bool
	ImportRoots     []string
	PreviewPathForm bool
}

func newServe(env Env) *cobra.Command {
	var c ServeConfig
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the rdev server",
		Long: `Run the rdev server. With no flags it keeps its state in an SQLite file in
the data directory and listens on ` + defaultAddr + `. Every flag has an RDEV_*
environment twin (--addr: RDEV_ADDR, …); a flag given on the command line wins.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), env.Getenv); err != nil {
				return err
			}
			if c.Data == "" {
				d, err := defaultDataDir(env.Getenv)
				if err != nil {
					return err
				}
				c.Data = d
			}
			return Serve(cmd.Context(), c, env)
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.Addr, "addr", defaultAddr, "address to listen on")
	f.StringVar(&c.Data, "data", "", "data directory (default $XDG_DATA_HOME/rdev)")
	f.StringVar(&c.Database, "database", "", "database: empty for SQLite in the data directory, sqlite:PATH, or a postgres:// URL")
	f.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&c.LogFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&c.PublicURL, "public-url", "", "base of the clone URLs rdev hands out (default http://<addr>)")
	f.StringVar(&c.PreviewDomain, "preview-domain", "preview.localhost", "domain of session preview hosts (<session>.<domain>)")
	f.BoolVar(&c.PreviewPathForm, "preview-path-form", false, "also serve previews at <public-url>/preview/<session>/: a preview's script then shares rdev's origin (see docs/api.md)")
	f.Int64Var(&c.OutputLimit, "command-output-limit", 64<<20, "bytes of output kept per command; past it the oldest output is dropped")
	f.StringVar(&c.Sandbox, "sandbox", "auto", "confine project code in bubblewrap: auto (refuse to start project code when bubblewrap is not usable), bwrap (refuse to start rdev without it) or none (unconfined: trust every agent)")
	f.StringVar(&c.LimitMemory, "limit-memory", "2GiB", "memory of each sandbox (a project's pod, a review) unless the project sets limits.memory")
	f.IntVar(&c.LimitPIDs, "limit-pids", 1024, "processes and threads of each sandbox unless the project sets limits.pids")
	f.Float64Var(&c.LimitCPU, "limit-cpu", 2, "CPUs of each sandbox unless the project sets limits.cpu (cgroups only)")
	f.StringVar(&c.SandboxUser, "sandbox-user", "", "user[:group] project code runs as when rdev runs as root (default "+sandbox.DefaultUser+", nobody:nogroup)")
	f.IntVar(&c.WarmWorkspaces, "warm-workspaces", 2, "ready checkouts of the default branch each running project keeps for new sessions")
	f.DurationVar(&c.IdleTimeout, "session-idle-timeout", 2*time.Hour, "end sessions idle this long (no API call, command output or preview traffic); 0 disables")
	f.DurationVar(&c.CleanupInterval, "cleanup-interval", 30*time.Second, "how often expired checkouts and sessions are cleaned up")
	f.IntVar(&c.ReviewWorkers, "review-workers", 2, "reviews the server runs at a time with its built-in worker; 0 leaves reviews to external workers (rdev worker)")
	f.DurationVar(&c.ReviewTimeout, "review-timeout", worker.DefaultReviewTimeout, "how long a project's review command may run")
	f.DurationVar(&c.TaskLease, "task-lease", service.DefaultTaskLease, "how long a claimed task stays a worker's without a heartbeat")
	f.DurationVar(&c.WorkerTimeout, "worker-timeout", service.DefaultWorkerTimeout, "how long a worker counts as online after its last heartbeat")
	f.DurationVar(&c.ReaperInterval, "reaper-interval", 5*time.Second, "how often tasks whose lease lapsed are re-queued")
	f.DurationVar(&c.GCInterval, "gc-interval", 10*time.Minute, "how often resources left behind in the cluster are collected")
	f.DurationVar(&c.GCWindow, "gc-window", loop.DefaultGCWindow, "how old a resource of a project without a record must be before the GC deletes it")
	f.BoolVar(&c.GCDryRun, "gc-dry-run", false, "log what the resource GC would delete, and delete nothing")
	f.StringVar(&c.Cluster, "cluster", "local", "where projects run: local (this machine) or kube (a Kubernetes cluster)")
	f.StringVar(&c.Kube.Kubeconfig, "kubeconfig", "", "kubeconfig file for --cluster kube (default: in-cluster configuration, else $KUBECONFIG or ~/.kube/config)")
	f.StringVar(&c.Kube.Namespace, "namespace", "", "namespace of every object rdev makes with --cluster kube (default: the pod's own namespace in a cluster, else the kubeconfig context's)")
	f.StringVar(&c.Kube.WorkspaceImage, "workspace-image", "", "image of projects' dev pods, where sessions run; needs sh and git (--cluster kube)")
	f.StringVar(&c.Kube.ComponentImage, "component-image", "", "image of components that name none (--cluster kube; default: the workspace image)")
	f.StringVar(&c.Kube.WorkspaceRoot, "workspace-root", "/workspace", "directory of the dev pod holding sessions' workspaces (--cluster kube)")
	f.DurationVar(&c.Kube.ReadyTimeout, "pod-ready-timeout", 3*time.Minute, "how long a deploy waits for the project's dev pod to be Ready (--cluster kube)")
	f.Float64Var(&c.Kube.QPS, "kube-qps", 100, "requests per second rdev makes to the Kubernetes API server, in bursts of twice as many (--cluster kube)")
	f.StringVar(&c.Kube.PreviewMode, "preview-mode", "proxy", "how previews are served with --cluster kube: proxy (through rdev) or ingress (an Ingress per session, with forward auth to rdev)")
	f.StringVar(&c.Kube.IngressClass, "ingress-class", "", "class of preview Ingresses (--preview-mode ingress; default: the cluster's default class)")
	f.StringVar(&c.Kube.ForwardAuthURL, "forward-auth-url", "", "rdev's forward-auth endpoint as the ingress controller reaches it (--preview-mode ingress; default <public-url>/api/v1/preview-auth)")
	f.StringToStringVar(&c.Kube.IngressAnnotations, "ingress-annotation", nil, "extra annotations of preview Ingresses, KEY=VALUE (repeatable; --preview-mode ingress)")
	f.StringSliceVar(&c.ImportRoots, "import-root", nil, "directory under which any key that may create projects may import a path on the server (repeatable, or comma-separated; otherwise only unrestricted admin keys import paths)")
	f.IntVar(&c.GCConcurrency, "gc-concurrency", loop.DefaultGCConcurrency, "how many deletions a resource GC pass runs at once")
	f.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight requests may run after SIGINT/SIGTERM")
	return cmd
}

// applyEnv sets each flag not given on the command line from its RDEV_*
// twin: --shutdown-timeout reads RDEV_SHUTDOWN_TIMEOUT.
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		name := "RDEV_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
		}
	})
	return errors.Join(errs...)
}

func defaultDataDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "rdev"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "share", "rdev"), nil
	}
	return "", errors.New("cannot find a data directory: pass --data or set XDG_DATA_HOME or HOME")
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// OpenStore opens the database that dsn names: "" for SQLite in dataDir,
// "sqlite:PATH", or a postgres:// URL.
func OpenStore(ctx context.Context, dsn, dataDir string) (rdev.Store, string, error) {
	switch {
	case dsn == "":
		path := filepath.Join(dataDir, "rdev.db")
		s, err := sqlite.Open(ctx, path)
		return s, "sqlite " + path, err
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		s, err := postgres.Open(ctx, dsn)
		return s, "postgres", err
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, "", err
		}
		s, err := sqlite.Open(ctx, path)
		return s, "sqlite " + path, err
	}
	return nil, "", fmt.Errorf("--database must be empty, sqlite:PATH or a postgres:// URL")
}

// Serve runs the server until ctx is done, then shuts down gracefully: it
// stops accepting, lets in-flight requests finish within ShutdownTimeout, and
// closes the store.
func Serve(ctx context.Context, c ServeConfig, env Env) error {
	log, err := newLogger(env.Stderr, c.LogLevel, c.LogFormat)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.Data, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	openCtx, cancel := context.WithTimeout(ctx, time.Minute)
	store, desc, err := OpenStore(openCtx, c.Database, c.Data)
	cancel()
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer store.Close()
	log.Info("store ready", "store", desc)

	git, err := githost.New(c.Data, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	publicURL := c.PublicURL
	if publicURL == "" {
		publicURL = "http://" + ln.Addr().String()
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the rdev binary: %w", err)
	}
	user, err := sandbox.ResolveUser(c.SandboxUser, os.Geteuid())
	if err != nil {
		return err
	}
	mode, why := local.SandboxNone, error(nil)
	if c.Cluster != "kube" { // on Kubernetes, pods and review pods confine project code
		if mode, why, err = local.ResolveSandbox(c.Sandbox, user); err != nil {
			return err
		}
	}
	switch {
	case c.Cluster == "kube":
	case mode == local.SandboxNone:
		log.Warn("--sandbox none: project code (components, session commands, reviews) runs unconfined, as rdev's user, with rdev's network; use it only if you trust every agent")
	case mode == local.SandboxUnavailable:
		log.Warn("no sandbox is usable: rdev serves its API but refuses to deploy projects, start sessions or run reviews", "why", why)
	default:
		uid := os.Geteuid()
		if user != nil {
			uid = int(user.UID)
		}
		log.Info("sandbox", "mode", mode, "uid", uid)
	}
	gitPort := loopbackPort(publicURL)
	// The egress proxy and the limits are wired once the service and the
	// API exist; the cluster's hooks reach them through these.
	var (
		svc   *service.Service
		proxy *egress.Proxy
		api   http.Handler
	)
	cgroups, err := limits.NewManager("/sys/fs/cgroup", cgroupParent(env.Getenv))
	if err != nil {
		return fmt.Errorf("resource limits: %w", err)
	}
	log.Info("resource limits", "mode", cgroups.Mode(), "why", cgroups.Reason())
	defaults := rdev.Limits{Memory: c.LimitMemory, PIDs: c.LimitPIDs, CPU: c.LimitCPU}
	if _, err := rdev.ParseMemory(c.LimitMemory); err != nil {
		return fmt.Errorf("--limit-memory: %w", err)
	}
	localCfg := local.Config{Dir: filepath.Join(c.Data, "pods"), RepoPath: git.Path,
		CredentialHelper: "!" + self + " git-credential", Log: log, Now: time.Now, Sandbox: mode, SandboxWhy: why, User: user,
		DataDir: c.Data, Executable: self, WarmWorkspaces: c.WarmWorkspaces, ReviewDir: filepath.Join(c.Data, "reviews"), GitPort: gitPort,
		Egress: func(ln net.Listener, projectID, taskID string) {
			policy := rdev.Egress{Mode: rdev.EgressNone}
			if p, err := svc.Project(context.Background(), projectID); err == nil {
				policy = p.Egress
			}
			proxy.Serve(ln, egress.Sandbox{ProjectID: projectID, TaskID: taskID, Policy: policy, Git: api})
		},
		Limits: func(name string, l rdev.Limits) ([]string, error) {
			g, err := cgroups.Create(name, limitSpec(l, defaults))
			if err != nil {
				return nil, err
			}
			return g.Args(), nil
		},
		Unlimit: func(name string) {
			if g, err := cgroups.Open(name); err == nil {
				g.Remove()
			}
		}}
	if c.Cluster != "kube" && c.Kube.PreviewMode != "proxy" {
		return errors.New("--preview-mode ingress needs --cluster kube")
	}
	var pods cluster.Cluster
	var lc *local.Cluster
	var gateway *egress.Gateway      // the egress proxy of Kubernetes pods, on rdev's port
	var kubeReviews cluster.Reviewer // reviews as pods of their own
	switch c.Cluster {
	case "local":
		log.Info("local cluster", "sandbox", mode)
		if lc, err = local.New(localCfg); err != nil {
			return err
		}
		defer lc.Close()
		pods = lc
	case "kube":
		// Pods reach rdev's egress proxy on rdev's own port, naming
		// themselves with credentials only rdev can make.
		base, err := url.Parse(publicURL)
		if err != nil {
			return err
		}
		gateway = &egress.Gateway{Policy: func(ctx context.Context, projectID string) (rdev.Egress, error) {
			p, err := svc.Project(ctx, projectID)
			if err != nil {
				return rdev.Egress{}, err
			}
			return p.Egress, nil
		}}
		kc, err := openKube(ctx, c.Kube, c.PreviewDomain, publicURL, defaults, func(ctx context.Context, projectID string) (string, func(), error) {
			return svc.ReviewToken(ctx, projectID, c.ReviewTimeout+10*time.Minute)
		}, func(projectID, taskID string) string { return gateway.URL(base, projectID, taskID) }, log)
		if err != nil {
			return err
		}
		pods, kubeReviews = kc, kc
	default:
		return fmt.Errorf("--cluster must be local or kube, not %q", c.Cluster)
	}
	secret, err := previewSecret(c.Data)
	if err != nil {
		return err
	}
	if gateway != nil {
		gateway.Key = deriveKey(secret, "egress proxy credentials")
	}
	if c.PreviewDomain == "" && !c.PreviewPathForm {
		return errors.New("--preview-domain is empty: previews live at <session>.<domain>; name a domain (the default, preview.localhost, works on this machine), or pass --preview-path-form")
	}
	for i, root := range c.ImportRoots {
		if !filepath.IsAbs(root) {
			return fmt.Errorf("--import-root %q: must be an absolute path", root)
		}
		c.ImportRoots[i] = filepath.Clean(root)
	}
	svc = service.New(service.Config{Unconfined: c.Cluster != "kube" && mode == local.SandboxNone, Store: store, Git: git, Cluster: pods, Now: time.Now, Log: log,
		ImportProxy: &egress.Proxy{Log: log}, ImportRoots: c.ImportRoots,
		PublicURL: publicURL, PreviewDomain: c.PreviewDomain, OutputLimit: c.OutputLimit, PreviewSecret: secret, TaskLease: c.TaskLease, WorkerTimeout: c.WorkerTimeout})
	if err := svc.Recover(ctx); err != nil {
		return fmt.Errorf("recover commands: %w", err)
	}

	if n, err := svc.RemoveEndedWorkspaces(ctx); err != nil {
		log.Warn("remove workspaces of ended sessions", "removed", n, "err", err)
	}
	if err := initAdmin(ctx, svc, c.Data, env, log); err != nil {
		return err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	api = httpapi.New(httpapi.Config{Service: svc, Log: log, Registry: reg, LogRequests: true, PreviewDomain: c.PreviewDomain,
		PreviewPathForm: c.PreviewPathForm})
	proxy = &egress.Proxy{Self: hostPort(publicURL), Metrics: egress.NewMetrics(reg), Log: log,
		OnRefuse: func(ctx context.Context, s egress.Sandbox, r egress.Refusal) {
			who := "pod:" + s.ProjectID
			if s.TaskID != "" {
				who = "task:" + s.TaskID
			}
			target := r.Target
			if len(target) > 256 { // the sandbox chose it: bounded in the log and the audit table
				target = target[:256] + "…"
			}
			log.Debug("egress refused", "project", s.ProjectID, "task", s.TaskID, "target", target, "reason", r.Reason)
			e := &rdev.AuditEntry{At: time.Now().UTC(), KeyID: who, Method: "EGRESS", Route: "refused " + target + ": " + r.Reason,
				Target: "project/" + s.ProjectID, ProjectID: s.ProjectID, Status: http.StatusForbidden}
			if err := svc.Audit(context.WithoutCancel(ctx), e); err != nil {
				log.Warn("audit an egress refusal", "err", err)
			}
		}}

	if lc != nil && mode != local.SandboxUnavailable {
		if err := lc.Recover(ctx); err != nil {
			log.Warn("restart pods", "err", err)
		}
	}
	handler := api
	if gateway != nil {
		gateway.Proxy, gateway.Git = proxy, api
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if egress.IsProxyRequest(r) {
				gateway.ServeHTTP(w, r)
				return
			}
			api.ServeHTTP(w, r)
		})
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	loops, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	if c.CleanupInterval <= 0 {
		return errors.New("--cleanup-interval must be positive")
	}
	go (&loop.CheckoutCleanup{Store: store, Now: time.Now, Log: log}).Run(loops, c.CleanupInterval)
	go (&loop.SessionCleanup{Sessions: svc, Now: time.Now, Idle: c.IdleTimeout, Log: log}).Run(loops, c.CleanupInterval)
	if c.ReaperInterval <= 0 || c.TaskLease <= 0 || c.WorkerTimeout <= 0 || c.ReviewTimeout <= 0 {
		return errors.New("--reaper-interval, --task-lease, --worker-timeout and --review-timeout must be positive")
	}
	go (&loop.TaskReaper{Tasks: svc, Now: time.Now, Log: log}).Run(loops, c.ReaperInterval)
	if c.GCInterval <= 0 || c.GCWindow <= 0 || c.GCConcurrency <= 0 {
		return errors.New("--gc-interval, --gc-window and --gc-concurrency must be positive")
	}
	go (&loop.ResourceGC{Cluster: pods, Projects: store, Now: time.Now, Window: c.GCWindow, DryRun: c.GCDryRun, Concurrency: c.GCConcurrency, Log: log,
		Metrics: loop.NewGCMetrics(reg)}).Run(loops, c.GCInterval)
	if c.ReviewWorkers < 0 || c.ReviewWorkers > 1024 {
		return errors.New("--review-workers must be between 0 and 1024")
	}
	if c.ReviewWorkers > 0 {
		var reviewer cluster.Reviewer = lc
		if kubeReviews != nil {
			reviewer = kubeReviews
		}
		stop, err := startReviewWorkers(loops, svc, reviewer, c, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	fmt.Fprintf(env.Stderr, "rdev listening on http://%s\n", ln.Addr())

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", c.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("in-flight requests cut off", "err", err)
		srv.Close()
	}
	log.Info("stopped")
	return nil
}

// startReviewWorkers registers the built-in review worker and runs it;
// stop waits for its reviews to stop and removes it from the pool.
// Reviews run on this server's machine (in bubblewrap when usable) with
// either cluster.
func startReviewWorkers(ctx context.Context, svc *service.Service, reviewer cluster.Reviewer, c ServeConfig, log *slog.Logger) (func(), error) {
	dir := filepath.Join(c.Data, "reviews")
	os.RemoveAll(dir) // workspaces of reviews cut short by a crash
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	w, err := svc.RegisterWorker(ctx, nil, service.WorkerRequest{Name: "built-in@" + host, Kinds: []string{rdev.TaskKindReview}, Capacity: c.ReviewWorkers}, true)
	if err != nil {
		return nil, fmt.Errorf("register the built-in review worker: %w", err)
	}
	review := &worker.Review{Runner: reviewer, Timeout: c.ReviewTimeout,
		Project: func(ctx context.Context, id string) (*rdev.Project, error) { return svc.Project(ctx, id) }}
	r := &worker.Runner{API: service.LocalWorkers{S: svc}, WorkerID: w.ID, Capacity: c.ReviewWorkers, Log: log,
		Handlers: map[string]worker.Handler{rdev.TaskKindReview: review.Handle}}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(rctx); close(done) }()
	log.Info("built-in review worker", "worker", w.ID, "capacity", c.ReviewWorkers)
	return func() {
		cancel()
		<-done
		svc.DeregisterWorker(context.WithoutCancel(ctx), nil, w.ID)
	}, nil
}

// limitSpec is a project's limits over the server's defaults, in bytes,
// processes and CPUs.
func limitSpec(l, defaults rdev.Limits) limits.Spec {
	if l.Memory == "" {
		l.Memory = defaults.Memory
	}
	if l.PIDs == 0 {
		l.PIDs = defaults.PIDs
	}
	if l.CPU == 0 {
		l.CPU = defaults.CPU
	}
	return limits.Spec{MemoryBytes: l.MemoryBytes(), PIDs: l.PIDs, CPU: l.CPU}
}

// cgroupParent is the cgroup rdev's sandboxes go under: "rdev" as root, or
// the subtree delegated to rdev's user ($RDEV_CGROUP_PARENT, see
// docs/security.md).
func cgroupParent(getenv func(string) string) string {
	if p := getenv("RDEV_CGROUP_PARENT"); p != "" {
		return p
	}
	return "rdev"
}

// hostPort is the host:port of a URL, its scheme's port when it names none.
func hostPort(public string) string {
	u, err := url.Parse(public)
	if err != nil {
		return ""
	}
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// loopbackPort is the port of a loopback public URL (where sandboxes find
// rdev's git host relayed on their own loopback), else 0.
func loopbackPort(public string) int {
	u, err := url.Parse(public)
	if err != nil {
		return 0
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); (ip == nil || !ip.IsLoopback()) && host != "localhost" {
		return 0
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		if u.Scheme == "https" {
			return 443
		}
		return 80
	}
	return port
}

// initAdmin seeds RDEV_ADMIN_TOKEN, or on first start creates an admin key
// and writes it to <data>/admin.key.
func initAdmin(ctx context.Context, svc *service.Service, data string, env Env, log *slog.Logger) error {
	if tok := env.Getenv("RDEV_ADMIN_TOKEN"); tok != "" {
		k, err := svc.SeedAdminToken(ctx, tok)
		if err != nil {
			return err
		}
		log.Info("admin key seeded from RDEV_ADMIN_TOKEN", "key_id", k.ID)
		return nil
	}
	path := filepath.Join(data, "admin.key")
	created, err := svc.EnsureAdminKey(ctx, path)
	if err != nil {
		return fmt.Errorf("create admin key: %w", err)
	}
	if created {
		log.Info("first start: admin key created", "path", path)
		fmt.Fprintf(env.Stderr, "First start: an admin API key was written to %s (mode 0600).\n", path)
	}
	return nil
}

// deriveKey returns a key of its own for one use of secret.
func deriveKey(secret []byte, use string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("rdev " + use))
	return m.Sum(nil)
}

// previewSecret reads <data>/preview.secret, creating it (32 random bytes,
// mode 0600) on first start. Replicas sharing the data directory share it.
func previewSecret(data string) ([]byte, error) {
	path := filepath.Join(data, "preview.secret")
	b, err := os.ReadFile(path)
	if err == nil && len(b) >= 32 {
		return b, nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	b = make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write preview secret: %w", err)
	}
	return b, nil
}
