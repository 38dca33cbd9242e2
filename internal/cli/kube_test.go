package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Outside a cluster the kubeconfig's current context gives the server and,
// unless --namespace does, the namespace.
func TestKubeClientConfigFromKubeconfig(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // not in a pod, whatever runs the test
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://k8s.example.com:6443"}
users:
- name: u
  user: {token: t0k}
contexts:
- name: ctx
  context: {cluster: c, user: u, namespace: team-a}
current-context: ctx
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, ns, err := kubeClientConfig(KubeConfig{Kubeconfig: path})
	if err != nil || cfg.Host != "https://k8s.example.com:6443" || cfg.BearerToken != "t0k" || ns != "team-a" {
		t.Fatalf("from the context: %v %q %v", cfg, ns, err)
	}
	if _, ns, err := kubeClientConfig(KubeConfig{Kubeconfig: path, Namespace: "rdev"}); err != nil || ns != "rdev" {
		t.Fatalf("with --namespace: %q %v", ns, err)
	}
	t.Setenv("KUBECONFIG", path)
	if cfg, ns, err := kubeClientConfig(KubeConfig{}); err != nil || cfg.Host != "https://k8s.example.com:6443" || ns != "team-a" {
		t.Fatalf("from $KUBECONFIG: %v %q %v", cfg, ns, err)
	}
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "absent"))
	t.Setenv("HOME", t.TempDir())
	if _, _, err := kubeClientConfig(KubeConfig{}); err == nil || !strings.Contains(err.Error(), "pass --kubeconfig") {
		t.Fatalf("with no configuration: %v", err)
	}
}
