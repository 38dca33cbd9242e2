package kube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// LabelTask labels a review pod, and its Secret, with the task it runs.
const LabelTask = "rdev.dev/task"

// The containers of a review pod.
const (
	// ReviewCheckout is the trusted step: it fetches the commit with a
	// read-only token of the project.
	ReviewCheckout = "checkout"
	// ReviewContainer runs the review command, with no credential.
	ReviewContainer = "review"
)

// checkoutScript fetches exactly one commit of rdev's git host into a new
// directory and checks it out, detached. The token comes from the
// environment (a Secret reference) through a credential helper that holds
// none itself; the URL is not saved, so the checkout keeps no trace of
// either. $1 URL, $2 commit, $3 directory.
const checkoutScript = `set -eu
rm -rf "$3"
mkdir "$3"
cd "$3"
git init -q
git -c credential.helper='!f() { test "$1" = get && printf "username=rdev\npassword=%s\n" "$RDEV_GIT_TOKEN"; }; f' fetch -q --no-tags "$1" "$2"
git -c advice.detachedHead=false checkout -q --detach "$2"
`

var commitRe = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// RunReview runs a review command in a pod of its own, labelled with the
// project and the task: an init container (the workspace image) fetches
// spec.Commit from rdev's git host into an emptyDir with a token that may
// only read the project, given through a Secret made for this run; then
// the review container runs /bin/sh -c <command> in that checkout with no
// credential — no token, no service account token, no Secret — under the
// project's NetworkPolicy (made here when the project was never deployed).
// The pod runs as project pods do (see Pods.secure), with spec.Limits and
// ctx's deadline as activeDeadlineSeconds.
//
// The review container's log is streamed to stdout; the pod log API merges
// the container's stdout and stderr, so stderr gets nothing of the command
// (only rdev's note when the log stream broke before its end). The
// exit code is the container's, as its status reports it: a signal only
// when the status says one ended it (a signal number, or OOMKilled for
// SIGKILL) — 128+n is otherwise reported as an exit code, as a runtime
// cannot tell it from exit(128+n). The token is revoked, and its Secret
// deleted, once the checkout step ends; the pod and the Secret are deleted
// when RunReview returns, in every case, and RunReview waits (a few
// seconds at most) for the pod to be gone.
//
// Errors: an invalid spec (rdev.InvalidError), a failed checkout (a bad
// commit: not a verdict), a pod that failed before the command ended
// (deadline, eviction), ctx's error when it ends first, and API errors.
func (c *Cluster) RunReview(ctx context.Context, spec cluster.ReviewSpec, stdout, stderr io.Writer) (cluster.ReviewExit, error) {
	if err := validateReview(spec); err != nil {
		return cluster.ReviewExit{}, err
	}
	if c.reviewToken == nil || c.cloneURL == nil {
		return cluster.ReviewExit{}, errors.New("kube: reviews need the review token and clone URL settings")
	}
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	labels := cluster.ProjectLabels(spec.ProjectID).With(LabelTask, spec.TaskID)
	// What an earlier attempt of this task left (a server that stopped
	// mid-review) goes first.
	if err := c.Resources.DeleteSelected(ctx, labels); err != nil {
		c.log.Warn("review: delete what an earlier attempt left", "task", spec.TaskID, "err", err)
	}
	if err := c.applyNetworkPolicy(ctx, spec.ProjectID); err != nil {
		return cluster.ReviewExit{}, err
	}
	token, revoke, err := c.reviewToken(ctx, spec.ProjectID)
	if err != nil {
		return cluster.ReviewExit{}, fmt.Errorf("review token: %w", err)
	}
	var revokeOnce sync.Once
	done := func() {
		if revoke != nil {
			revokeOnce.Do(revoke)
		}
	}
	defer done()

	ns, prefix, yes := c.Namespace, objectName(spec.ProjectID, "review-"+spec.TaskID)+"-", true
	secret, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{GenerateName: prefix, Namespace: ns, Labels: labels},
		Type:       corev1.SecretTypeOpaque, Immutable: &yes, Data: map[string][]byte{"token": []byte(token)}}, metav1.CreateOptions{})
	if err != nil {
		return cluster.ReviewExit{}, fmt.Errorf("review secret: %w", err)
	}
	pod, err := c.Client.CoreV1().Pods(ns).Create(ctx, c.reviewPod(ctx, spec, prefix, secret.Name, labels), metav1.CreateOptions{})
	if err != nil {
		c.endReview("", secret.Name)
		return cluster.ReviewExit{}, fmt.Errorf("review pod: %w", err)
	}
	defer c.endReview(pod.Name, secret.Name)
	streamCtx, stopStream := context.WithCancel(ctx)
	r := &reviewRun{c: c, spec: spec, pod: pod.Name, stdout: stdout, stderr: stderr, streamCtx: streamCtx, checkedOut: func() {
		done()
		c.deleteSecret(context.WithoutCancel(ctx), secret.Name)
	}}
	// Nothing is written to stdout once RunReview has returned.
	defer func() {
		stopStream()
		r.wait()
	}()
	return r.follow(ctx, pod)
}

func validateReview(spec cluster.ReviewSpec) error {
	if errs := validation.IsDNS1123Label(spec.TaskID); len(errs) > 0 {
		return rdev.Invalid("task_id", "must be a DNS label (it names the review's objects): %s", strings.Join(errs, "; "))
	}
	if err := rdev.ValidateProjectID(spec.ProjectID); err != nil {
		return err
	}
	if !commitRe.MatchString(spec.Commit) {
		return rdev.Invalid("commit", "must be a full commit id")
	}
	if strings.TrimSpace(spec.Command) == "" {
		return rdev.Invalid("command", "a review command is required")
	}
	return nil
}

// reviewPod is the pod of one review: the checkout step, with the token
// from the Secret, then the command, without.
func (c *Cluster) reviewPod(ctx context.Context, spec cluster.ReviewSpec, prefix, secret string, labels cluster.Labels) *corev1.Pod {
	root := c.root
	dir := root + "/" + spec.TaskID
	mounts := []corev1.VolumeMount{{Name: workspaceVolume, MountPath: root}}
	git := []corev1.EnvVar{{Name: "GIT_CONFIG_NOSYSTEM", Value: "1"}, {Name: "GIT_CONFIG_GLOBAL", Value: "/dev/null"},
		{Name: "GIT_TERMINAL_PROMPT", Value: "0"},
		{Name: "RDEV_GIT_TOKEN", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "token"}}}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix, Namespace: c.Namespace, Labels: labels},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{{Name: ReviewCheckout, Image: c.Images.Workspace,
				Command:    []string{"/bin/sh", "-c", checkoutScript, "rdev-checkout", c.cloneURL(spec.ProjectID), spec.Commit, dir},
				WorkingDir: root, Env: git, VolumeMounts: mounts}},
			Containers: []corev1.Container{{Name: ReviewContainer, Image: c.Images.Workspace,
				Command: []string{"/bin/sh", "-c", spec.Command}, WorkingDir: dir, VolumeMounts: mounts,
				Env: []corev1.EnvVar{{Name: "HOME", Value: dir}, {Name: "RDEV_TASK", Value: spec.TaskID}, {Name: "RDEV_PROJECT", Value: spec.ProjectID},
					{Name: "RDEV_BRANCH", Value: spec.Branch}, {Name: "RDEV_COMMIT", Value: spec.Commit}}}},
			Volumes: []corev1.Volume{{Name: workspaceVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
		}}
	if dl, ok := ctx.Deadline(); ok {
		secs := max(int64(math.Ceil(time.Until(dl).Seconds())), 1)
		pod.Spec.ActiveDeadlineSeconds = &secs
	}
	// The command's way out; the checkout step needs none (it reaches
	// rdev's git host directly).
	pod.Spec.Containers[0].Env = append(pod.Spec.Containers[0].Env, c.Pods.proxyEnv(spec.ProjectID, spec.TaskID)...)
	c.Pods.secure(&pod.Spec, spec.Limits)
	// The checkout step writes only into the volume.
	readOnly := true
	pod.Spec.InitContainers[0].SecurityContext.ReadOnlyRootFilesystem = &readOnly
	return pod
}

// reviewRun follows one review pod.
type reviewRun struct {
	c              *Cluster
	spec           cluster.ReviewSpec
	pod            string
	stdout, stderr io.Writer
	checkedOut     func()
	checked        bool
	streamCtx      context.Context // the log stream's, cancelled when RunReview returns
	streaming      bool
	logs           chan error // the log stream's end; nil until it starts
	logErr         error
}

// follow watches the pod until the review container has ended and its log
// has been copied, and returns its exit.
func (r *reviewRun) follow(ctx context.Context, pod *corev1.Pod) (cluster.ReviewExit, error) {
	pods := r.c.Client.CoreV1().Pods(r.c.Namespace)
	for {
		if exit, end, err := r.observe(ctx, pod); end {
			return exit, err
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + r.pod, ResourceVersion: pod.ResourceVersion})
		if err != nil {
			return cluster.ReviewExit{}, r.failed(ctx, err)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Deleted {
				w.Stop()
				return cluster.ReviewExit{}, fmt.Errorf("review pod %s was deleted before the review ended", r.pod)
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || (ev.Type != watch.Added && ev.Type != watch.Modified) {
				break // an error event (an expired resource version): get the pod again
			}
			pod = p
			if exit, end, err := r.observe(ctx, pod); end {
				w.Stop()
				return exit, err
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return cluster.ReviewExit{}, r.failed(ctx, ctx.Err())
		}
		// The watch ended (a server timeout): start again from the pod.
		if pod, err = pods.Get(ctx, r.pod, metav1.GetOptions{}); err != nil {
			return cluster.ReviewExit{}, r.failed(ctx, err)
		}
	}
}

// observe reads the pod's state: end is true when the review is over,
// with its exit or the reason it could not run.
func (r *reviewRun) observe(ctx context.Context, pod *corev1.Pod) (exit cluster.ReviewExit, end bool, err error) {
	for _, cs := range pod.Status.InitContainerStatuses {
		if t := cs.State.Terminated; cs.Name == ReviewCheckout && t != nil {
			if t.ExitCode != 0 {
				return exit, true, fmt.Errorf("check out %.12s: exit %d: %s", r.spec.Commit, t.ExitCode, r.tail(ctx, ReviewCheckout))
			}
			if !r.checked {
				r.checked = true
				r.checkedOut()
			}
		}
	}
	// A pod the kubelet ended as a whole: past its deadline (which rdev's
	// own deadline precedes), evicted.
	if pod.Status.Phase == corev1.PodFailed && pod.Status.Reason != "" {
		err := fmt.Errorf("review pod %s failed: %s: %s", r.pod, pod.Status.Reason, pod.Status.Message)
		if pod.Status.Reason == "DeadlineExceeded" {
			err = fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
		}
		return exit, true, err
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ReviewContainer || (cs.State.Running == nil && cs.State.Terminated == nil) {
			continue
		}
		if !r.streaming {
			r.streaming = true
			r.logs = make(chan error, 1)
			go func() { r.logs <- r.stream(r.streamCtx) }()
		}
		t := cs.State.Terminated
		if t == nil {
			return exit, false, nil
		}
		// The exit comes after the whole output.
		if err := r.wait(); err != nil && ctx.Err() == nil {
			fmt.Fprintf(r.stderr, "rdev: the review's output was cut short: %v\n", err)
		}
		if ctx.Err() != nil {
			return exit, true, r.failed(ctx, ctx.Err())
		}
		switch {
		case t.Signal != 0:
			return cluster.ReviewExit{Code: -1, Signal: signalName(int(t.Signal))}, true, nil
		case t.Reason == "OOMKilled":
			return cluster.ReviewExit{Code: -1, Signal: "SIGKILL"}, true, nil
		}
		return cluster.ReviewExit{Code: int(t.ExitCode)}, true, nil
	}
	if pod.Status.Phase == corev1.PodFailed || pod.Status.Phase == corev1.PodSucceeded {
		why := strings.TrimSpace(pod.Status.Reason + " " + pod.Status.Message)
		if why == "" {
			why = "phase " + string(pod.Status.Phase)
		}
		return exit, true, fmt.Errorf("review pod %s ended before the review did: %s", r.pod, why)
	}
	return exit, false, nil
}

// stream copies the review container's log, following it to its end. The
// API server may not reach a container's log the moment its status says
// it started: a few refusals before the first byte are retried.
func (r *reviewRun) stream(ctx context.Context) error {
	var err error
	for try := 0; try < 5; try++ {
		var rc io.ReadCloser
		rc, err = r.c.Client.CoreV1().Pods(r.c.Namespace).GetLogs(r.pod, &corev1.PodLogOptions{Container: ReviewContainer, Follow: true}).Stream(ctx)
		if err == nil {
			_, err = io.Copy(r.stdout, rc)
			rc.Close()
			return err
		}
		if ctx.Err() != nil || !apierrors.IsBadRequest(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return err
}

// wait waits for the log stream, when it started, to end.
func (r *reviewRun) wait() error {
	if r.logs != nil {
		r.logErr = <-r.logs
		r.logs = nil
	}
	return r.logErr
}

// tail is the end of a container's log, for errors.
func (r *reviewRun) tail(ctx context.Context, container string) string {
	rc, err := r.c.Client.CoreV1().Pods(r.c.Namespace).GetLogs(r.pod, &corev1.PodLogOptions{Container: container}).Stream(ctx)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	defer rc.Close()
	b, _ := io.ReadAll(io.LimitReader(rc, 64<<10))
	s := strings.TrimSpace(string(b))
	if len(s) > 2000 {
		s = "…" + s[len(s)-2000:]
	}
	return s
}

// failed is the error of a review that ended with err, saying where the
// pod was (what it waits for) when it is ctx that ended.
func (r *reviewRun) failed(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return fmt.Errorf("review pod %s: %w", r.pod, err)
	}
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pod, gerr := r.c.Client.CoreV1().Pods(r.c.Namespace).Get(gctx, r.pod, metav1.GetOptions{})
	if gerr != nil {
		return fmt.Errorf("review pod %s: %w", r.pod, context.Cause(ctx))
	}
	s := "phase " + string(pod.Status.Phase)
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil {
			s += fmt.Sprintf(", %s waiting: %s", cs.Name, strings.TrimSpace(w.Reason+" "+w.Message))
		}
	}
	return fmt.Errorf("review pod %s (%s): %w", r.pod, s, context.Cause(ctx))
}

// endReview deletes the review's pod and Secret and waits, a few seconds
// at most, for the pod to be gone (its processes ended).
func (c *Cluster) endReview(pod, secret string) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c.deleteSecret(ctx, secret)
	if pod == "" {
		return
	}
	pods := c.Client.CoreV1().Pods(c.Namespace)
	grace := int64(1)
	if err := pods.Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		if !apierrors.IsNotFound(err) {
			c.log.Warn("review: delete pod", "pod", pod, "err", err)
		}
		return
	}
	for wait := 20 * time.Millisecond; ; wait = min(wait*2, 500*time.Millisecond) {
		if _, err := pods.Get(ctx, pod, metav1.GetOptions{}); apierrors.IsNotFound(err) {
			return
		}
		select {
		case <-ctx.Done():
			c.log.Warn("review: the pod is still being deleted", "pod", pod)
			return
		case <-time.After(wait):
		}
	}
}

func (c *Cluster) deleteSecret(ctx context.Context, name string) {
	if err := c.Client.CoreV1().Secrets(c.Namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		c.log.Warn("review: delete secret", "secret", name, "err", err)
	}
}

// signalName names signal n as cluster.Signals does.
func signalName(n int) string {
	for name, s := range cluster.Signals {
		if int(s) == n {
			return name
		}
	}
	return "SIG" + strconv.Itoa(n)
}
