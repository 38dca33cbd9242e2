package kube_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/cluster/kube/kubetest"
	"rdev.dev/rdev/internal/rdev"
)

func TestDeployOnTheAPIServer(t *testing.T) {
	cp := kubetest.Start(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	must(t, err)
	ctx := context.Background()
	namespace(t, kc)
	d := &kube.Deployer{Resources: kube.Resources{Client: kc, Namespace: ns}, Images: kube.Images{Component: "debian:12", Workspace: "rdev-workspace:1"}}
	port, api := 3000, 8080
	p := &rdev.Project{ID: "shop", Name: "Shop", DefaultBranch: "main", Components: []rdev.Component{
		{Name: "web", Command: "npm start", Port: &port, Env: map[string]string{"B": "2", "A": "1"}, Image: "node:22"},
		{Name: "api", Command: "./api", Port: &api},
		{Name: "worker", Command: "./worker"},
	}}
	must(t, d.Deploy(ctx, p))
	must(t, d.Deploy(ctx, p)) // again: updates in place

	got := count(t, kc, "shop")
	if want := map[string]int{"Deployment": 3, "Service": 2, "Pod": 1, "Ingress": 0, "Secret": 0}; !equal(got, want) {
		t.Fatalf("objects %v, want %v", got, want)
	}
	web, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-shop-web", metav1.GetOptions{})
	must(t, err)
	c := web.Spec.Template.Spec.Containers[0]
	if web.Labels[cluster.LabelManagedBy] != "rdev" || web.Labels[cluster.LabelProject] != "shop" || web.Labels[cluster.LabelComponent] != "web" ||
		c.Image != "node:22" || c.Command[2] != "npm start" || len(c.Env) != 2 || c.Env[0].Name != "A" || c.Ports[0].ContainerPort != 3000 {
		t.Fatalf("web deployment: labels %v container %+v", web.Labels, c)
	}
	worker, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-shop-worker", metav1.GetOptions{})
	must(t, err)
	if worker.Spec.Template.Spec.Containers[0].Image != "debian:12" {
		t.Fatalf("default image not used: %+v", worker.Spec.Template.Spec.Containers[0])
	}
	// No node runs the dev pod here: the project is not running.
	if _, err := d.RunningPod(ctx, "shop"); !errors.Is(err, rdev.ErrPodNotRunning) {
		t.Fatalf("RunningPod: %v", err)
	}

	// The cluster's Deploy waits for the dev pod and says why it gave up.
	c2, err := kube.New(kube.Config{Client: kc, REST: cp.Config, Namespace: ns, ReadyTimeout: time.Second,
		Images: kube.Images{Component: "debian:12", Workspace: "rdev-workspace:1"}})
	must(t, err)
	if err := c2.Deploy(ctx, p); err == nil || !strings.Contains(err.Error(), "dev pod rdev-shop-dev not ready within 1s: phase Pending") {
		t.Fatalf("deploy with no node: %v", err)
	}

	// A component dropped: its Deployment and Service go, the rest stay.
	p.Components = p.Components[1:]
	must(t, d.Deploy(ctx, p))
	if got := count(t, kc, "shop"); !equal(got, map[string]int{"Deployment": 2, "Service": 1, "Pod": 1, "Ingress": 0, "Secret": 0}) {
		t.Fatalf("after dropping web: %v", got)
	}

	must(t, d.Undeploy(ctx, "shop"))
	if got := count(t, kc, "shop"); !equal(got, map[string]int{"Deployment": 0, "Service": 0, "Pod": 0, "Ingress": 0, "Secret": 0}) {
		t.Fatalf("after undeploy: %v", got)
	}
}
