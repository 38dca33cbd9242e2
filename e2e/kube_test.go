package e2e

import (
	"context"
	"net/http"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/cluster/kube"
)

// TestIngressPreviewsEndToEnd: with --preview-mode ingress, a session gets
// an Ingress for <session>.<preview-domain> whose controller asks rdev's
// forward-auth endpoint (as ingress-nginx does); check-in deletes it and
// the endpoint refuses from then on.
func TestIngressPreviewsEndToEnd(t *testing.T) {
	kubeconfig, kc := kubeClusterClient(t, "rdev")
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data, "--sandbox", "none", "--cluster", "kube", "--kubeconfig", kubeconfig,
		"--namespace", "rdev", "--workspace-image", "rdev-test/workspace", "--workspace-root", t.TempDir(),
		"--preview-mode", "ingress", "--preview-domain", "preview.test", "--ingress-class", "nginx",
		"--ingress-annotation", "cert-manager.io/cluster-issuer=letsencrypt")
	admin, c, sess := deployedSession(t, s, data, "agent/ingress")
	ctx := context.Background()
	ing, err := kc.NetworkingV1().Ingresses("rdev").Get(ctx, "rdev-preview-"+sess.ID, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	host := sess.ID + ".preview.test"
	if ing.Spec.Rules[0].Host != host || *ing.Spec.IngressClassName != "nginx" ||
		ing.Annotations[kube.NginxAuthURL] != s.URL+"/api/v1/preview-auth" || ing.Annotations["cert-manager.io/cluster-issuer"] != "letsencrypt" {
		t.Fatalf("preview ingress: %+v", ing)
	}
	// What ingress-nginx asks for each request to the preview.
	auth := func(token string) int {
		req, _ := http.NewRequest("GET", ing.Annotations[kube.NginxAuthURL], nil)
		req.Header.Set("X-Original-URL", "https://"+host+"/index.html")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := auth(admin); got != 200 {
		t.Fatalf("forward auth with the admin key: %d", got)
	}
	if got := auth(""); got != 401 {
		t.Fatalf("forward auth without credentials: %d", got)
	}
	if _, err := c.CheckinSession(ctx, "web", sess.ID, client.CheckinRequest{SkipReview: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := kc.NetworkingV1().Ingresses("rdev").Get(ctx, "rdev-preview-"+sess.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the preview ingress after check-in: %v", err)
	}
	if _, err := kc.CoreV1().Services("rdev").Get(ctx, "rdev-preview-"+sess.ID, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the preview service after check-in: %v", err)
	}
	if got := auth(admin); got != 404 {
		t.Fatalf("forward auth after check-in: %d", got)
	}
	s.stop()
}
