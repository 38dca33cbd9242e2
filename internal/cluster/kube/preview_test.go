package kube_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/rdev"
)

// A project with three components and two sessions' ingress previews,
// deleted as the project delete does (DeleteSelected on its labels): first
// by a user RBAC forbids to delete Ingresses — the error names them and
// every other kind goes — then by one who may, leaving zero objects with
// the project's label, listed through the API server. Another project is
// untouched throughout.
func TestProjectDeleteWithPreviewsOnTheAPIServer(t *testing.T) {
	cp, kc, url := kubeWithRepo(t, "shop", "tok")
	ctx := context.Background()
	root := t.TempDir()
	newCluster := func(cfg *rest.Config) *kube.Cluster {
		client, err := kubernetes.NewForConfig(cfg)
		must(t, err)
		c, err := kube.New(kube.Config{Client: client, REST: cfg, Namespace: ns, WorkspaceRoot: root,
			Images: kube.Images{Component: "c", Workspace: "w"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
			Previews: kube.Previews{Mode: kube.PreviewIngress, Domain: "preview.example.com", IngressClass: "nginx",
				ForwardAuthURL: "http://rdev.rdev.svc:7420/api/v1/preview-auth",
				Annotations:    map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}}})
		must(t, err)
		return c
	}
	c := newCluster(cp.Config)
	web, api := 3000, 8080
	shop := &rdev.Project{ID: "shop", Name: "shop", DefaultBranch: "main", Components: []rdev.Component{
		{Name: "web", Command: "sleep 600", Port: &web}, {Name: "api", Command: "sleep 600", Port: &api}, {Name: "worker", Command: "sleep 600"}}}
	other := &rdev.Project{ID: "other", Name: "other", DefaultBranch: "main", Components: []rdev.Component{{Name: "app", Command: "sleep 600", Port: &web}}}
	for _, p := range []*rdev.Project{shop, other} {
		p.Normalize()
		must(t, c.Deploy(ctx, p))
	}
	for i, sid := range []string{"s1aaaaaaaaaaaaaaa", "s2aaaaaaaaaaaaaaa"} {
		_, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "shop", SessionID: sid, Branch: "feature", CloneURL: url, Token: "tok", PreviewPort: 5000 + i})
		must(t, err)
	}
	ing, err := kc.NetworkingV1().Ingresses(ns).Get(ctx, "rdev-preview-s1aaaaaaaaaaaaaaa", metav1.GetOptions{})
	must(t, err)
	rule := ing.Spec.Rules[0]
	if rule.Host != "s1aaaaaaaaaaaaaaa.preview.example.com" || *ing.Spec.IngressClassName != "nginx" ||
		ing.Annotations[kube.NginxAuthURL] != "http://rdev.rdev.svc:7420/api/v1/preview-auth" || ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" ||
		ing.Labels[cluster.LabelSession] != "s1aaaaaaaaaaaaaaa" || ing.Labels[cluster.LabelProject] != "shop" ||
		rule.HTTP.Paths[0].Backend.Service.Name != "rdev-preview-s1aaaaaaaaaaaaaaa" || rule.HTTP.Paths[0].Backend.Service.Port.Number != 5000 {
		t.Fatalf("preview ingress: %+v", ing)
	}
	svc, err := kc.CoreV1().Services(ns).Get(ctx, "rdev-preview-s2aaaaaaaaaaaaaaa", metav1.GetOptions{})
	must(t, err)
	if svc.Spec.Selector[cluster.LabelComponent] != kube.DevComponent || svc.Spec.Ports[0].TargetPort.IntValue() != 5001 {
		t.Fatalf("preview service: %+v", svc.Spec)
	}
	waitUntil(t, func() bool { return count(t, kc, "shop")["Pod"] == 4 })
	if got, want := count(t, kc, "shop"), map[string]int{"Deployment": 3, "Service": 4, "Pod": 4, "Ingress": 2, "Secret": 0, "NetworkPolicy": 1}; !equal(got, want) {
		t.Fatalf("before: %v, want %v", got, want)
	}
	otherBefore := count(t, kc, "other")

	// Denied Ingresses: the error names them, the rest goes.
	denyIngressDeletes(t, kc)
	err = newCluster(cp.ConfigFor(cp.LimitedToken)).DeleteSelected(ctx, cluster.ProjectLabels("shop"))
	if err == nil || !strings.Contains(err.Error(), "delete Ingress") || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("denied delete: %v", err)
	}
	waitUntil(t, func() bool {
		return equal(count(t, kc, "shop"), map[string]int{"Deployment": 0, "Service": 0, "Pod": 0, "Ingress": 2, "Secret": 0, "NetworkPolicy": 0})
	})

	must(t, c.DeleteSelected(ctx, cluster.ProjectLabels("shop")))
	waitUntil(t, func() bool {
		return equal(count(t, kc, "shop"), map[string]int{"Deployment": 0, "Service": 0, "Pod": 0, "Ingress": 0, "Secret": 0, "NetworkPolicy": 0})
	})
	// Every kind rdev makes, pods in their grace period included.
	rs, err := c.List(ctx)
	must(t, err)
	for _, r := range rs {
		if r.Labels[cluster.LabelProject] == "shop" {
			t.Fatalf("left: %+v", r)
		}
	}
	if got := count(t, kc, "other"); !equal(got, otherBefore) {
		t.Fatalf("other project: %v, was %v", got, otherBefore)
	}
}

// A session's preview objects go with its workspace.
func TestPreviewObjectsEndWithTheSession(t *testing.T) {
	cp, kc, url := kubeWithRepo(t, "app", "tok")
	ctx := context.Background()
	if _, err := kube.New(kube.Config{Client: kc, REST: cp.Config, Namespace: ns, Images: kube.Images{Component: "c", Workspace: "w"},
		Previews: kube.Previews{Mode: kube.PreviewIngress, Domain: "p.example.com"}}); err == nil || !strings.Contains(err.Error(), "forward-auth") {
		t.Fatalf("ingress previews without forward auth: %v", err)
	}
	c, err := kube.New(kube.Config{Client: kc, REST: cp.Config, Namespace: ns, WorkspaceRoot: t.TempDir(), Images: kube.Images{Component: "c", Workspace: "w"},
		Previews: kube.Previews{Mode: kube.PreviewIngress, Domain: "p.example.com", ForwardAuthURL: "http://rdev/api/v1/preview-auth"}})
	must(t, err)
	p := &rdev.Project{ID: "app", Name: "app", DefaultBranch: "main"}
	p.Normalize()
	must(t, c.Deploy(ctx, p))
	_, err = c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "app", SessionID: "s1", Branch: "feature", CloneURL: url, Token: "tok"})
	must(t, err)
	if got := count(t, kc, "app"); got["Ingress"] != 1 || got["Service"] != 1 {
		t.Fatalf("with a session: %v", got)
	}
	must(t, c.RemoveWorkspace(ctx, "app", "s1"))
	if got := count(t, kc, "app"); got["Ingress"] != 0 || got["Service"] != 0 || got["Pod"] != 1 {
		t.Fatalf("after the session: %v", got)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
