package kubetest_test

import (
	"context"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
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
