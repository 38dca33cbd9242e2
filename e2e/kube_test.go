package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
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
	// What ingress-nginx asks for each request to the preview: a signed
	// link's token is let through, an API key never (the app would get it).
	link, err := c.CreatePreviewLink(ctx, "web", sess.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	linkURL, err := url.Parse(link.URL)
	if err != nil {
		t.Fatal(err)
	}
	auth := func(token string) int {
		req, _ := http.NewRequest("GET", ing.Annotations[kube.NginxAuthURL], nil)
		req.Header.Set("X-Original-URL", "https://"+host+"/index.html")
		if token == "link" {
			req.Header.Set("X-Original-URL", "https://"+host+"/index.html?"+linkURL.RawQuery)
		} else if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := auth("link"); got != 200 {
		t.Fatalf("forward auth with a signed link: %d", got)
	}
	if got := auth(admin); got != 401 {
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
	if got := auth("link"); got != 404 {
		t.Fatalf("forward auth after check-in: %d", got)
	}
	s.stop()
}

// TestKubeEgressThroughRdev: on Kubernetes a project's pods leave only
// through rdev's egress proxy, on rdev's own port, with credentials of
// their own in HTTP_PROXY. A request without them or with forged ones
// gets 407; theirs get the project's policy (here a loopback target,
// refused before any dial, and audited); the API on the same port goes on
// answering.
func TestKubeEgressThroughRdev(t *testing.T) {
	kubeconfig, kc := kubeClusterClient(t, "rdev")
	data := t.TempDir()
	s := start(t, nil, "--addr", "127.0.0.1:0", "--data", data, "--sandbox", "none", "--cluster", "kube", "--kubeconfig", kubeconfig,
		"--namespace", "rdev", "--workspace-image", "rdev-test/workspace", "--workspace-root", t.TempDir())
	_, c, _ := deployedSession(t, s, data, "agent/egress")
	ctx := context.Background()
	dev, err := kc.CoreV1().Pods("rdev").Get(ctx, "rdev-web-dev", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var proxyEnv string
	for _, e := range dev.Spec.Containers[0].Env {
		if e.Name == "HTTP_PROXY" {
			proxyEnv = e.Value
		}
	}
	proxyURL, err := url.Parse(proxyEnv)
	if err != nil || proxyURL.User == nil || proxyURL.User.Username() != "web" || "http://"+proxyURL.Host != s.URL {
		t.Fatalf("the dev pod's HTTP_PROXY %q (rdev at %s): %v", proxyEnv, s.URL, err)
	}

	var hits atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer target.Close()
	through := func(u *url.URL) (int, string) {
		t.Helper()
		hc := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(u)}}
		resp, err := hc.Get(target.URL + "/secret")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	forged := *proxyURL
	forged.User = url.UserPassword("web", strings.Repeat("0", 64))
	other := *proxyURL
	password, _ := proxyURL.User.Password()
	other.User = url.UserPassword("other", password)
	bare := *proxyURL
	bare.User = nil
	for name, u := range map[string]*url.URL{"forged": &forged, "another project's name": &other, "none": &bare} {
		if code, body := through(u); code != http.StatusProxyAuthRequired || !strings.Contains(body, "HTTP_PROXY") {
			t.Errorf("credentials %s: %d %q", name, code, body)
		}
	}
	if code, body := through(proxyURL); code != http.StatusForbidden || !strings.Contains(body, "rdev egress") {
		t.Errorf("the pod's own credentials to a loopback target: %d %q", code, body)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the loopback target was reached %d times through the proxy", n)
	}
	entries, _, err := c.ListAudit(ctx, client.AuditFilter{KeyID: "pod:web"})
	if err != nil || len(entries) != 1 || entries[0].Method != "EGRESS" || !strings.Contains(entries[0].Route, target.Listener.Addr().String()) {
		t.Fatalf("audit of the refusal: %+v %v", entries, err)
	}
	if _, err := c.GetProject(ctx, "web"); err != nil {
		t.Fatalf("the API beside the proxy: %v", err)
	}
	s.stop()
}
