package kubetest_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rdev.dev/rdev/internal/cluster/kube/kubetest"
)

// The control plane is real: label-selector deletion (which client-go's
// fake clientset silently ignores) removes exactly the selected objects.
func TestControlPlaneDeletesBySelector(t *testing.T) {
	cp := kubetest.Start(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubetest.Namespace(t, kc, "rdev")
	for i, project := range []string{"gone", "gone", "kept"} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: "rdev",
			Labels: map[string]string{"app.kubernetes.io/managed-by": "rdev", "rdev.dev/project": project}}}
		if _, err := kc.CoreV1().ConfigMaps("rdev").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := kc.CoreV1().ConfigMaps("rdev").DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: "rdev.dev/project=gone"}); err != nil {
		t.Fatal(err)
	}
	left, err := kc.CoreV1().ConfigMaps("rdev").List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=rdev"})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Items) != 1 || left.Items[0].Labels["rdev.dev/project"] != "kept" {
		t.Fatalf("left: %+v", left.Items)
	}
}

// The test node runs pods as a kubelet would, and reports them the same
// way: init containers in order before the containers, emptyDir volumes,
// secret references, exit codes and phases, logs through pods/log, the
// deadline.
func TestNodeRunsPods(t *testing.T) {
	cp := kubetest.Start(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	kubetest.Namespace(t, kc, "node")
	cp.StartNode(t, "test-node")
	pods := kc.CoreV1().Pods("node")
	sh := func(name, script string) corev1.Container {
		return corev1.Container{Name: name, Image: "busybox", Command: []string{"/bin/sh", "-c", script}}
	}
	run := func(t *testing.T, pod *corev1.Pod, until func(*corev1.Pod) bool) *corev1.Pod {
		t.Helper()
		pod.Namespace = "node"
		if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var got *corev1.Pod
		waitFor(t, func() bool {
			got, err = pods.Get(ctx, pod.Name, metav1.GetOptions{})
			return err == nil && until(got)
		})
		return got
	}
	ended := func(p *corev1.Pod) bool {
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
	}
	logs := func(t *testing.T, pod, container string, follow bool) (string, error) {
		t.Helper()
		rc, err := pods.GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: follow}).Stream(ctx)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	del := func(t *testing.T, name string) {
		t.Helper()
		if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { _, err := pods.Get(ctx, name, metav1.GetOptions{}); return apierrors.IsNotFound(err) })
	}

	t.Run("InitContainersVolumesSecretsExitCodes", func(t *testing.T) {
		_, err := kc.CoreV1().Secrets("node").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "word"},
			Data: map[string][]byte{"word": []byte("hush")}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vol := filepath.Join(t.TempDir(), "vol")
		mount := []corev1.VolumeMount{{Name: "v", MountPath: vol}}
		first, second, main := sh("first", `echo one > order; echo init-out`), sh("second", `echo "two $WORD" >> order`), sh("main", `cat order; echo to-stderr >&2; exit 3`)
		for _, c := range []*corev1.Container{&first, &second, &main} {
			c.WorkingDir, c.VolumeMounts = vol, mount
		}
		second.Env = []corev1.EnvVar{{Name: "WORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "word"}, Key: "word"}}}}
		pod := run(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ordered"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{first, second}, Containers: []corev1.Container{main},
			Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}, ended)
		if pod.Status.Phase != corev1.PodFailed || len(pod.Status.InitContainerStatuses) != 2 || len(pod.Status.ContainerStatuses) != 1 {
			t.Fatalf("status %+v", pod.Status)
		}
		for _, cs := range pod.Status.InitContainerStatuses {
			if term := cs.State.Terminated; term == nil || term.ExitCode != 0 || term.Reason != "Completed" || term.ContainerID == "" {
				t.Errorf("init container %s: %+v", cs.Name, cs.State)
			}
		}
		if term := pod.Status.ContainerStatuses[0].State.Terminated; term == nil || term.ExitCode != 3 || term.Reason != "Error" {
			t.Errorf("main: %+v", pod.Status.ContainerStatuses[0].State)
		}
		if out, err := logs(t, "ordered", "main", true); err != nil || out != "one\ntwo hush\nto-stderr\n" {
			t.Errorf("main's log: %q %v", out, err)
		}
		if out, err := logs(t, "ordered", "first", false); err != nil || out != "init-out\n" {
			t.Errorf("first's log: %q %v", out, err)
		}
		if _, err := os.Stat(filepath.Join(vol, "order")); err != nil {
			t.Errorf("the volume while the pod is there: %v", err)
		}
		del(t, "ordered")
		if _, err := os.Stat(vol); !os.IsNotExist(err) {
			t.Errorf("the volume after the pod: %v", err)
		}
	})

	t.Run("FailedInitFailsThePod", func(t *testing.T) {
		pod := run(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "badinit"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			InitContainers: []corev1.Container{sh("init", "echo no way; exit 5")}, Containers: []corev1.Container{sh("main", "echo never")}}}, ended)
		init, main := pod.Status.InitContainerStatuses[0], pod.Status.ContainerStatuses[0]
		if pod.Status.Phase != corev1.PodFailed || init.State.Terminated == nil || init.State.Terminated.ExitCode != 5 ||
			main.State.Waiting == nil || main.State.Waiting.Reason != "PodInitializing" {
			t.Fatalf("status %+v", pod.Status)
		}
		if _, err := logs(t, "badinit", "main", false); err == nil || !strings.Contains(err.Error(), "is waiting to start: PodInitializing") {
			t.Errorf("log of a container that never ran: %v", err)
		}
		if out, err := logs(t, "badinit", "init", false); err != nil || out != "no way\n" {
			t.Errorf("init's log: %q %v", out, err)
		}
		del(t, "badinit")
	})

	t.Run("FollowedLogEndsWithTheContainer", func(t *testing.T) {
		run(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "follow"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{sh("main", "echo a; sleep 0.5; echo b")}}},
			func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodRunning })
		if out, err := logs(t, "follow", "main", true); err != nil || out != "a\nb\n" {
			t.Fatalf("followed log: %q %v", out, err)
		}
		pod, err := pods.Get(ctx, "follow", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { pod, _ = pods.Get(ctx, "follow", metav1.GetOptions{}); return ended(pod) })
		if pod.Status.Phase != corev1.PodSucceeded {
			t.Fatalf("phase %s", pod.Status.Phase)
		}
		del(t, "follow")
	})

	t.Run("MissingSecretWaits", func(t *testing.T) {
		main := sh("main", `echo "$KEY"; exec sleep 60`)
		main.Env = []corev1.EnvVar{{Name: "KEY", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Key: "key"}}}}
		run(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "waits"}, Spec: corev1.PodSpec{Containers: []corev1.Container{main}}},
			func(p *corev1.Pod) bool {
				w := p.Status.ContainerStatuses
				return len(w) == 1 && w[0].State.Waiting != nil && w[0].State.Waiting.Reason == "CreateContainerConfigError"
			})
		_, err := kc.CoreV1().Secrets("node").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "later"},
			Data: map[string][]byte{"key": []byte("arrived")}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { out, _ := logs(t, "waits", "main", false); return out == "arrived\n" })
		del(t, "waits")
	})

	t.Run("DeadlineExceeded", func(t *testing.T) {
		one := int64(1)
		pod := run(t, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "late"}, Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
			ActiveDeadlineSeconds: &one, Containers: []corev1.Container{sh("main", "exec sleep 315")}}}, ended)
		term := pod.Status.ContainerStatuses[0].State.Terminated
		// SIGTERM first, as the kubelet stops a pod.
		if pod.Status.Phase != corev1.PodFailed || pod.Status.Reason != "DeadlineExceeded" || term == nil || term.ExitCode != 128+15 {
			t.Fatalf("status %+v", pod.Status)
		}
		if out, _ := exec.Command("pgrep", "-f", "^sleep 315$").Output(); len(out) != 0 {
			t.Fatalf("still running: %s", out)
		}
		del(t, "late")
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 30 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
