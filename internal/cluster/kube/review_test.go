package kube_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/cluster/kube/kubetest"
	"rdev.dev/rdev/internal/rdev"
)

// Reviews run as pods of their own on the test node, driven with exactly
// the Role of deploy/kubernetes/rbac.yaml: the checkout step fetches the
// commit from a git host that wants the review token, the command runs
// without it, its output and exit code come back, and nothing of the
// review is left afterwards — also when the review is cancelled mid-run.
func TestReviewPods(t *testing.T) {
	cp, _ := kubetest.StartCluster(t)
	admin, err := kubernetes.NewForConfig(cp.Config)
	must(t, err)
	kubetest.Namespace(t, admin, ns)
	bindManifestRole(t, admin, ns)
	limited := cp.ConfigFor(cp.LimitedToken)
	lc, err := kubernetes.NewForConfig(limited)
	must(t, err)
	repos := t.TempDir()
	newRepo(t, filepath.Join(repos, "app.git"))
	commit := revParse(t, filepath.Join(repos, "app.git"), "feature")
	const token = "review-s3cret-token"
	host := gitServer(t, repos, token)
	var issued, revoked atomic.Int32
	// Missing: the node makes the review pod's emptyDir there, and removes
	// it with the pod.
	root := filepath.Join(t.TempDir(), "ws")
	c, err := kube.New(kube.Config{Client: lc, REST: limited, Namespace: ns, WorkspaceRoot: root,
		Images:   kube.Images{Component: "rdev-test/component", Workspace: "rdev-test/workspace"},
		Pods:     kube.Pods{EgressProxy: testProxy},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		CloneURL: func(id string) string { return host + "/" + id + ".git" },
		ReviewToken: func(ctx context.Context, id string) (string, func(), error) {
			if id != "app" {
				return "", nil, errors.New("no such project")
			}
			issued.Add(1)
			return token, func() { revoked.Add(1) }, nil
		}})
	must(t, err)
	spec := func(task, command string) cluster.ReviewSpec {
		return cluster.ReviewSpec{TaskID: task, ProjectID: "app", Branch: "feature", Commit: commit, Command: command}
	}
	review := func(ctx context.Context, s cluster.ReviewSpec, stdout *lockedWriter) (cluster.ReviewExit, string, error) {
		var stderr lockedWriter
		exit, err := c.RunReview(ctx, s, stdout, &stderr)
		return exit, stderr.String(), err
	}
	// Nothing of a review is left once RunReview has returned.
	gone := func(t *testing.T, task string) {
		t.Helper()
		sel := metav1.ListOptions{LabelSelector: kube.LabelTask + "=" + task}
		pods, err := admin.CoreV1().Pods(ns).List(context.Background(), sel)
		must(t, err)
		secrets, err := admin.CoreV1().Secrets(ns).List(context.Background(), sel)
		must(t, err)
		if len(pods.Items)+len(secrets.Items) != 0 {
			t.Fatalf("left of %s: %d pods, %d secrets", task, len(pods.Items), len(secrets.Items))
		}
		if n, r := issued.Load(), revoked.Load(); n != r {
			t.Fatalf("%d review tokens issued, %d revoked", n, r)
		}
	}

	t.Run("Passes", func(t *testing.T) {
		var out lockedWriter
		exit, errOut, err := review(context.Background(), spec("tpass", `test "$(git rev-parse HEAD)" = "$RDEV_COMMIT" && cat feature.txt && pwd`), &out)
		must(t, err)
		if exit != (cluster.ReviewExit{}) || out.String() != "feature\n"+root+"/tpass\n" || errOut != "" {
			t.Fatalf("exit %+v, stdout %q, stderr %q", exit, out.String(), errOut)
		}
		gone(t, "tpass")
	})

	t.Run("ExitCodeAndAllTheOutput", func(t *testing.T) {
		var out lockedWriter
		exit, errOut, err := review(context.Background(), spec("texit", "echo out; echo err >&2; seq 1 20000; exit 3"), &out)
		must(t, err)
		want := "out\nerr\n"
		for i := 1; i <= 20000; i++ {
			want += strconv.Itoa(i) + "\n"
		}
		// The pod log merges the streams: stderr stays empty.
		if exit != (cluster.ReviewExit{Code: 3}) || out.String() != want || errOut != "" {
			t.Fatalf("exit %+v, stdout of %d bytes (want %d), stderr %q", exit, len(out.String()), len(want), errOut)
		}
		gone(t, "texit")
	})

	t.Run("NoCredentialInside", func(t *testing.T) {
		var out lockedWriter
		_, _, err := review(context.Background(), spec("tcred", "env; cat .git/config; git config --list --show-origin; true"), &out)
		must(t, err)
		if strings.Contains(out.String(), token) || !strings.Contains(out.String(), "RDEV_COMMIT="+commit) {
			t.Fatalf("the review command saw:\n%s", out.String())
		}
		gone(t, "tcred")
	})

	t.Run("BadCommitIsAnError", func(t *testing.T) {
		s := spec("tbad", "true")
		s.Commit = strings.Repeat("0", 40)
		var out lockedWriter
		if exit, _, err := review(context.Background(), s, &out); err == nil || !strings.Contains(err.Error(), "check out 000000000000: exit") {
			t.Fatalf("a missing commit: %+v %v", exit, err)
		}
		gone(t, "tbad")
		s.Commit = "feature"
		if _, _, err := review(context.Background(), s, &out); !rdev.IsInvalid(err) {
			t.Fatalf("a branch name for a commit: %v", err)
		}
	})

	t.Run("CancelledMidRun", func(t *testing.T) {
		s := spec("tcancel", "echo started; exec sleep 313")
		s.Limits = rdev.Limits{Memory: "256MiB", CPU: 0.5, PIDs: 100}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var out lockedWriter
		type result struct {
			exit cluster.ReviewExit
			err  error
		}
		done := make(chan result, 1)
		go func() {
			exit, _, err := review(ctx, s, &out)
			done <- result{exit, err}
		}()
		waitUntil(t, func() bool { return out.String() == "started\n" })
		pods, err := admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelTask + "=tcancel"})
		must(t, err)
		if len(pods.Items) != 1 {
			t.Fatalf("%d review pods", len(pods.Items))
		}
		checkReviewPod(t, &pods.Items[0], token)
		// The token's Secret went when the checkout was done.
		secrets, err := admin.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelTask + "=tcancel"})
		must(t, err)
		if len(secrets.Items) != 0 || revoked.Load() != issued.Load() {
			t.Fatalf("during the review: %d secrets, %d of %d tokens revoked", len(secrets.Items), revoked.Load(), issued.Load())
		}
		cancel()
		r := <-done
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled review: %+v %v", r.exit, r.err)
		}
		gone(t, "tcancel")
		if out, _ := exec.Command("pgrep", "-f", "^sleep 313$").Output(); len(out) != 0 {
			t.Fatalf("the review command is still running: %s", out)
		}
	})

	t.Run("DeadlineIsAnError", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var out lockedWriter
		if exit, _, err := review(ctx, spec("tslow", "exec sleep 314"), &out); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a review past its deadline: %+v %v", exit, err)
		}
		gone(t, "tslow")
	})

	// The node removes a pod's volume once its processes have ended, which
	// may be just after the pod's object is gone from the API server.
	waitUntil(t, func() bool {
		_, err := os.Stat(root)
		return os.IsNotExist(err)
	})
	if pods, err := admin.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{}); err != nil || len(pods.Items) != 0 {
		t.Fatalf("pods left: %v %v", pods, err)
	}
}

// checkReviewPod checks a running review pod: labels, restart policy,
// deadline, the confinement of every project pod, the token reaching the
// checkout step only by a Secret reference and the command by nothing.
func checkReviewPod(t *testing.T, pod *corev1.Pod, token string) {
	t.Helper()
	s := pod.Spec
	if pod.Labels[cluster.LabelManagedBy] != "rdev" || pod.Labels[cluster.LabelProject] != "app" || pod.Labels[kube.LabelTask] != "tcancel" ||
		pod.Labels[cluster.LabelComponent] != "" {
		t.Errorf("labels %v", pod.Labels)
	}
	if s.RestartPolicy != corev1.RestartPolicyNever || s.ActiveDeadlineSeconds == nil || *s.ActiveDeadlineSeconds < 55 || *s.ActiveDeadlineSeconds > 60 {
		t.Errorf("restart policy %s, deadline %v", s.RestartPolicy, s.ActiveDeadlineSeconds)
	}
	checkConfined(t, "review pod", s, kube.DefaultUser, "256Mi", "500m")
	b, err := json.Marshal(pod)
	must(t, err)
	if strings.Contains(string(b), token) {
		t.Error("the token is in the pod")
	}
	for _, v := range s.Volumes {
		if v.EmptyDir == nil {
			t.Errorf("volume %s is not an emptyDir: %+v", v.Name, v.VolumeSource)
		}
	}
	if len(s.InitContainers) != 1 || len(s.Containers) != 1 {
		t.Fatalf("containers: %d init, %d", len(s.InitContainers), len(s.Containers))
	}
	checkout, cmd := s.InitContainers[0], s.Containers[0]
	if checkout.Name != kube.ReviewCheckout || cmd.Name != kube.ReviewContainer {
		t.Errorf("containers %s, %s", checkout.Name, cmd.Name)
	}
	// The token reaches the checkout step by a Secret reference only.
	refs := 0
	for _, e := range checkout.Env {
		if f := e.ValueFrom; f != nil {
			if f.SecretKeyRef == nil || e.Name != "RDEV_GIT_TOKEN" {
				t.Errorf("checkout env %s from %+v", e.Name, f)
			}
			refs++
		}
	}
	if refs != 1 || len(checkout.EnvFrom) != 0 {
		t.Errorf("checkout env %+v, from %+v", checkout.Env, checkout.EnvFrom)
	}
	// The command's way out is the egress proxy, as the review's; the
	// checkout step reaches rdev's git host directly.
	checkProxied(t, "review command", cmd, testProxy("app", "tcancel"))
	for _, e := range checkout.Env {
		if strings.Contains(strings.ToLower(e.Name), "proxy") {
			t.Errorf("checkout env %s=%s", e.Name, e.Value)
		}
	}
	if ro := checkout.SecurityContext.ReadOnlyRootFilesystem; ro == nil || !*ro {
		t.Error("the checkout step's root filesystem is writable")
	}
	// The command gets nothing that could carry one.
	for _, e := range cmd.Env {
		if e.ValueFrom != nil {
			t.Errorf("review env %s from %+v", e.Name, e.ValueFrom)
		}
	}
	if len(cmd.EnvFrom) != 0 || len(cmd.VolumeMounts) != 1 || cmd.VolumeMounts[0].Name != s.Volumes[0].Name || cmd.Command[2] != "echo started; exec sleep 313" {
		t.Errorf("review container %+v", cmd)
	}
}

// lockedWriter is a buffer written by one goroutine and read by another.
type lockedWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func revParse(t *testing.T, repo, rev string) string {
	out, err := exec.Command("git", "-C", repo, "rev-parse", rev).Output()
	must(t, err)
	return strings.TrimSpace(string(out))
}
