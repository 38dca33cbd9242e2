package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// Config is what the Kubernetes backend needs.
type Config struct {
	Client kubernetes.Interface
	// REST is the client configuration exec streams are opened with.
	REST *rest.Config
	// Namespace holds every object rdev makes.
	Namespace string
	Images    Images
	// WorkspaceRoot is the directory of the dev pod where sessions'
	// workspaces are made, <root>/<session> (default /workspace).
	WorkspaceRoot string
	// ReadyTimeout bounds how long Deploy waits for the dev pod to be
	// Ready (default 3 minutes).
	ReadyTimeout time.Duration
	PageSize     int64
	Previews     Previews
	// Pods is how project pods run: their user and default limits.
	Pods Pods
	// Network is what each project's NetworkPolicy admits.
	Network Network
	// CloneURL is a project's URL on rdev's git host as pods reach it
	// (<public-url>/git/<project>.git); review pods fetch from it.
	CloneURL func(projectID string) string
	// ReviewToken returns a token that may only read the project's
	// repository, for one review's checkout step, and a function revoking
	// it (called once the checkout is done, or the review ends).
	ReviewToken func(ctx context.Context, projectID string) (token string, revoke func(), err error)
	Log         *slog.Logger
}

// TuneClient sets what rdev's client needs of its configuration: protobuf
// on the wire (built-in kinds only, which is all rdev uses; JSON stays
// accepted), and qps requests per second in bursts of twice as many —
// client-go's default of 5 per second would make a GC pass over thousands
// of orphans take a quarter of an hour.
func TuneClient(cfg *rest.Config, qps float64) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cfg.QPS, cfg.Burst = float32(qps), int(2*qps)
	return cfg
}

// Cluster is the Kubernetes backend: a project's components run as
// Deployments, its sessions in its dev pod, reached by exec.
type Cluster struct {
	Deployer
	rest         *rest.Config
	root         string
	readyTimeout time.Duration
	previews     Previews
	cloneURL     func(projectID string) string
	reviewToken  func(ctx context.Context, projectID string) (string, func(), error)
	log          *slog.Logger

	mu    sync.Mutex
	ports map[string]int       // session → preview port, as PrepareWorkspace set it
	ips   map[string]cachedPod // project → its dev pod's address
}

type cachedPod struct {
	name, ip string
	at       time.Time
}

// podCacheTTL is how long a dev pod's address is reused for previews and
// commands before the API server is asked again.
const podCacheTTL = 5 * time.Second

var (
	_ cluster.Cluster  = (*Cluster)(nil)
	_ cluster.Reviewer = (*Cluster)(nil)
)

// New returns the backend over cfg.
func New(cfg Config) (*Cluster, error) {
	if cfg.Client == nil || cfg.REST == nil {
		return nil, errors.New("kube: a client and its REST configuration are required")
	}
	if cfg.Namespace == "" {
		return nil, errors.New("kube: a namespace is required")
	}
	if cfg.Images.Workspace == "" || cfg.Images.Component == "" {
		return nil, errors.New("kube: the workspace and component images are required")
	}
	for _, err := range []error{cfg.Previews.validate(), cfg.Pods.validate(), cfg.Network.validate()} {
		if err != nil {
			return nil, err
		}
	}
	if cfg.WorkspaceRoot == "" {
		cfg.WorkspaceRoot = "/workspace"
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 3 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Cluster{
		Deployer: Deployer{Resources: Resources{Client: cfg.Client, Namespace: cfg.Namespace, PageSize: cfg.PageSize},
			Images: cfg.Images, WorkspaceRoot: cfg.WorkspaceRoot, Pods: cfg.Pods, Network: cfg.Network},
		rest: cfg.REST, root: strings.TrimRight(cfg.WorkspaceRoot, "/"), readyTimeout: cfg.ReadyTimeout, previews: cfg.Previews,
		cloneURL: cfg.CloneURL, reviewToken: cfg.ReviewToken, log: cfg.Log,
		ports: map[string]int{}, ips: map[string]cachedPod{},
	}, nil
}

// Deploy creates or updates the project's objects and waits until its dev
// pod is Ready, so that a session can be started as soon as it returns.
func (c *Cluster) Deploy(ctx context.Context, p *rdev.Project) error {
	if err := c.Deployer.Deploy(ctx, p); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.readyTimeout)
	defer cancel()
	wait := 20 * time.Millisecond
	notReady := func() error {
		return fmt.Errorf("dev pod %s not ready within %s: %s", objectName(p.ID, DevComponent), c.readyTimeout, c.devPodState(context.WithoutCancel(ctx), p.ID))
	}
	for {
		_, err := c.RunningPod(ctx, p.ID)
		switch {
		case err == nil:
			return nil
		case ctx.Err() != nil:
			return notReady()
		case !errors.Is(err, rdev.ErrPodNotRunning):
			return err
		}
		select {
		case <-ctx.Done():
			return notReady()
		case <-time.After(wait):
		}
		wait = min(wait*2, 500*time.Millisecond)
	}
}

// devPodState says why a dev pod is not ready, for errors.
func (c *Cluster) devPodState(ctx context.Context, projectID string) string {
	pod, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, objectName(projectID, DevComponent), metav1.GetOptions{})
	if err != nil {
		return err.Error()
	}
	s := "phase " + string(pod.Status.Phase)
	for _, cs := range pod.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf(", %s waiting: %s %s", cs.Name, w.Reason, w.Message)
		}
	}
	for _, cond := range pod.Status.Conditions {
		if cond.Status != corev1.ConditionTrue && cond.Message != "" {
			s += fmt.Sprintf(", %s: %s", cond.Type, cond.Message)
		}
	}
	return s
}

// Undeploy deletes every object of the project and forgets its pod.
func (c *Cluster) Undeploy(ctx context.Context, projectID string) error {
	c.forget(projectID)
	return c.Deployer.Undeploy(ctx, projectID)
}

// DeleteSelected deletes every object matching selector.
func (c *Cluster) DeleteSelected(ctx context.Context, selector cluster.Labels) error {
	if id := selector[cluster.LabelProject]; id != "" {
		c.forget(id)
	}
	return c.Resources.DeleteSelected(ctx, selector)
}

func (c *Cluster) forget(projectID string) {
	c.mu.Lock()
	delete(c.ips, projectID)
	c.mu.Unlock()
}

// Status reports the dev pod and, per component, the state of its pod's
// container: Kubernetes' restart count and last exit code; no PIDs, which
// live in the nodes' kernels.
func (c *Cluster) Status(ctx context.Context, projectID string) (*cluster.Status, error) {
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{LabelSelector: cluster.LabelProject + "=" + projectID})
	if err != nil {
		return nil, err
	}
	st := &cluster.Status{ProjectID: projectID, Processes: []cluster.Process{}}
	best := map[string]cluster.Process{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		comp := pod.Labels[cluster.LabelComponent]
		if pod.DeletionTimestamp != nil || comp == "" {
			continue
		}
		if comp == DevComponent {
			if podReady(pod) {
				st.Running, st.Pod = true, pod.Name
			}
			continue
		}
		pr := processOf(comp, pod)
		// A Deployment rolling over has two pods; report the running one.
		if cur, ok := best[comp]; !ok || (cur.State != cluster.StateRunning && pr.State == cluster.StateRunning) {
			best[comp] = pr
		}
	}
	for _, n := range slices.Sorted(maps.Keys(best)) {
		st.Processes = append(st.Processes, best[n])
	}
	return st, nil
}

func processOf(comp string, pod *corev1.Pod) cluster.Process {
	pr := cluster.Process{Component: comp, State: cluster.StateStopped, Since: pod.CreationTimestamp.UTC()}
	for _, ct := range pod.Spec.Containers {
		if ct.Name == comp && len(ct.Ports) > 0 {
			port := int(ct.Ports[0].ContainerPort)
			pr.Port = &port
		}
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != comp {
			continue
		}
		pr.Restarts = int(cs.RestartCount)
		switch {
		case cs.State.Running != nil:
			pr.State, pr.Since = cluster.StateRunning, cs.State.Running.StartedAt.UTC()
		case cs.State.Waiting != nil:
			pr.State, pr.LastError = cluster.StateRestarting, strings.TrimSpace(cs.State.Waiting.Reason+" "+cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			pr.State = cluster.StateRestarting
			if pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
				pr.State = cluster.StateStopped
			}
			code := int(cs.State.Terminated.ExitCode)
			at := cs.State.Terminated.FinishedAt.UTC()
			pr.LastExit, pr.ExitedAt = &code, &at
		}
		if t := cs.LastTerminationState.Terminated; t != nil && pr.LastExit == nil {
			code := int(t.ExitCode)
			at := t.FinishedAt.UTC()
			pr.LastExit, pr.ExitedAt = &code, &at
		}
	}
	return pr
}

// devPod returns the project's Ready dev pod and its IP, from a cache of a
// few seconds.
func (c *Cluster) devPod(ctx context.Context, projectID string) (cachedPod, error) {
	c.mu.Lock()
	cp, ok := c.ips[projectID]
	c.mu.Unlock()
	if ok && time.Since(cp.at) < podCacheTTL {
		return cp, nil
	}
	name, err := c.RunningPod(ctx, projectID)
	if err != nil {
		return cachedPod{}, err
	}
	pod, err := c.Client.CoreV1().Pods(c.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return cachedPod{}, rdev.ErrPodNotRunning
	}
	if err != nil {
		return cachedPod{}, err
	}
	cp = cachedPod{name: name, ip: pod.Status.PodIP, at: time.Now()}
	c.mu.Lock()
	c.ips[projectID] = cp
	c.mu.Unlock()
	return cp, nil
}

// workspace is a session's directory in the dev pod.
func (c *Cluster) workspace(sessionID string) string { return c.root + "/" + sessionID }

// prepareScript makes a workspace in the dev pod: a fresh repository whose
// origin is rdev's git host, fetched through a credential helper that reads
// the checkout token from .git/rdev-token — the token comes on stdin and is
// never in argv or .git/config. $1 workspace, $2 branch, $3 preview port;
// stdin: the token line, then the whole .git/config.
const prepareScript = `set -eu
ws=$1 branch=$2
rm -rf "$ws"
mkdir -p "$ws"
cd "$ws"
git init -q
umask 077
IFS= read -r token
printf '%s\n' "$token" > .git/rdev-token
cat > .git/config
printf '%s\n' "$3" > .git/rdev-port
git fetch -q origin "+refs/heads/$branch:refs/remotes/origin/$branch" 2>&1 || { rm -rf "$ws"; exit 1; }
git checkout -q --no-track -B "$branch" "refs/remotes/origin/$branch"
`

// PrepareWorkspace clones the session's branch into <root>/<session> of
// the project's dev pod, by exec.
func (c *Cluster) PrepareWorkspace(ctx context.Context, spec cluster.WorkspaceSpec) (*cluster.Workspace, error) {
	pod, err := c.devPod(ctx, spec.ProjectID)
	if err != nil {
		return nil, err
	}
	ws := c.workspace(spec.SessionID)
	port := spec.PreviewPort
	if port == 0 {
		port = rdev.DefaultPreviewPort
	}
	tokenFile := strings.ReplaceAll(ws+"/.git/rdev-token", "'", `'\''`)
	helper := `!f() { test "$1" = get && printf 'username=rdev\npassword=%s\n' "$(cat '` + tokenFile + `')"; }; f`
	stdin := spec.Token + "\n" + cluster.WorkspaceConfig(spec, helper)
	out, code, err := c.run(ctx, pod.name, []string{"/bin/sh", "-c", prepareScript, "rdev-prepare", ws, spec.Branch, strconv.Itoa(port)}, stdin)
	if err != nil {
		return nil, fmt.Errorf("check out %s: %w", spec.Branch, err)
	}
	if code != 0 {
		return nil, fmt.Errorf("check out %s: exit %d: %s", spec.Branch, code, strings.TrimSpace(out))
	}
	if c.previews.Mode == PreviewIngress {
		if err := c.exposePreview(ctx, spec, port); err != nil {
			c.RemoveWorkspace(context.WithoutCancel(ctx), spec.ProjectID, spec.SessionID)
			return nil, err
		}
	}
	c.mu.Lock()
	c.ports[spec.SessionID] = port
	c.mu.Unlock()
	return &cluster.Workspace{Path: ws}, nil
}

// PreviewAddr is the dev pod's IP and the session's preview port.
func (c *Cluster) PreviewAddr(ctx context.Context, projectID, sessionID string) (string, error) {
	pod, err := c.devPod(ctx, projectID)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	port, ok := c.ports[sessionID]
	c.mu.Unlock()
	if !ok {
		// A workspace made before this server started: its port is in it.
		out, code, err := c.run(ctx, pod.name, []string{"cat", c.workspace(sessionID) + "/.git/rdev-port"}, "")
		if err != nil {
			return "", err
		}
		if port, err = strconv.Atoi(strings.TrimSpace(out)); code != 0 || err != nil {
			return "", rdev.ErrSessionNotFound
		}
		c.mu.Lock()
		c.ports[sessionID] = port
		c.mu.Unlock()
	}
	if pod.ip == "" {
		return "", fmt.Errorf("dev pod %s has no IP yet", pod.name)
	}
	return pod.ip + ":" + strconv.Itoa(port), nil
}

// killScript kills every process whose environment holds one of its
// arguments (RDEV_COMMAND=<id>) and says how many it killed.
const killScript = `exec 2>/dev/null # processes that end meanwhile, or are not ours to read
n=0
for p in /proc/[0-9]*; do
  env=$(tr '\0' '\n' < "$p/environ") || continue
  for want in "$@"; do
    if printf '%s\n' "$env" | grep -qx "$want"; then kill -9 "${p#/proc/}" 2>/dev/null && n=$((n+1)); break; fi
  done
done
echo "$n"
`

// KillCommands kills, in every dev pod, the processes of commands a
// previous server left running (their environment names them); it returns
// how many it killed.
func (c *Cluster) KillCommands(ids []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pods, err := c.Client.CoreV1().Pods(c.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: cluster.LabelManagedBy + "=" + cluster.ManagedBy + "," + cluster.LabelComponent + "=" + DevComponent})
	if err != nil {
		c.log.Warn("kill lost commands: list dev pods", "err", err)
		return 0
	}
	argv := []string{"/bin/sh", "-c", killScript, "rdev-kill"}
	for _, id := range ids {
		argv = append(argv, "RDEV_COMMAND="+id)
	}
	killed := 0
	for i := range pods.Items {
		if !podReady(&pods.Items[i]) {
			continue
		}
		out, code, err := c.run(ctx, pods.Items[i].Name, argv, "")
		n, perr := strconv.Atoi(strings.TrimSpace(out))
		if err != nil || code != 0 || perr != nil {
			c.log.Warn("kill lost commands", "pod", pods.Items[i].Name, "exit", code, "err", err, "output", out)
			continue
		}
		killed += n
	}
	return killed
}

// removeScript kills what the session's commands left running (their
// environment names the session), then removes its workspace. $1 session,
// $2 workspace.
const removeScript = `for p in /proc/[0-9]*; do
  if { tr '\0' '\n' < "$p/environ"; } 2>/dev/null | grep -qx "RDEV_SESSION=$1"; then kill -9 "${p#/proc/}" 2>/dev/null; fi
done
rm -rf "$2"
`

// RemoveWorkspace deletes the session's preview objects, kills its
// processes in the dev pod and removes its workspace; no dev pod means no
// workspace is left to remove.
func (c *Cluster) RemoveWorkspace(ctx context.Context, projectID, sessionID string) error {
	c.mu.Lock()
	delete(c.ports, sessionID)
	c.mu.Unlock()
	var errs []error
	if c.previews.Mode == PreviewIngress {
		errs = append(errs, c.unexposePreview(ctx, sessionID))
	}
	pod, err := c.devPod(ctx, projectID)
	switch {
	case errors.Is(err, rdev.ErrPodNotRunning):
	case err != nil:
		errs = append(errs, err)
	default:
		out, code, err := c.run(ctx, pod.name, []string{"/bin/sh", "-c", removeScript, "rdev-remove", sessionID, c.workspace(sessionID)}, "")
		if err == nil && code != 0 {
			err = fmt.Errorf("remove workspace %s: exit %d: %s", sessionID, code, strings.TrimSpace(out))
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
