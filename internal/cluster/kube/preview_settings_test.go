package kube_test

import (
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"rdev.dev/rdev/internal/cluster/kube"
)

// Preview settings an Ingress could not take are refused when the backend
// is made, not when the first session starts.
func TestPreviewSettingsRefused(t *testing.T) {
	good := kube.Previews{Mode: kube.PreviewIngress, Domain: "preview.example.com", ForwardAuthURL: "http://rdev.rdev.svc:7420/api/v1/preview-auth",
		IngressClass: "nginx", Annotations: map[string]string{"cert-manager.io/cluster-issuer": "letsencrypt"}}
	for name, c := range map[string]struct {
		edit func(*kube.Previews)
		want string
	}{
		"Good":           {func(*kube.Previews) {}, ""},
		"Proxy":          {func(p *kube.Previews) { *p = kube.Previews{} }, ""},
		"UnknownMode":    {func(p *kube.Previews) { p.Mode = "magic" }, `preview mode must be proxy or ingress, not "magic"`},
		"NoDomain":       {func(p *kube.Previews) { p.Domain = "" }, "need a preview domain"},
		"DomainWithPort": {func(p *kube.Previews) { p.Domain = "preview.localhost:8080" }, `preview domain "preview.localhost:8080" is not a DNS name`},
		"NoForwardAuth":  {func(p *kube.Previews) { p.ForwardAuthURL = "" }, "need the forward-auth URL"},
		"RelativeAuth":   {func(p *kube.Previews) { p.ForwardAuthURL = "/api/v1/preview-auth" }, "not an absolute http(s) URL"},
		"BadClass":       {func(p *kube.Previews) { p.IngressClass = "Nginx_Class" }, `ingress class "Nginx_Class"`},
		"BadAnnotation":  {func(p *kube.Previews) { p.Annotations = map[string]string{"bad key!": "x"} }, `ingress annotation "bad key!"`},
	} {
		p := good
		c.edit(&p)
		_, err := kube.New(kube.Config{Client: fake.NewClientset(), REST: &rest.Config{}, Namespace: "rdev",
			Images: kube.Images{Component: "c", Workspace: "w"}, Previews: p})
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}
