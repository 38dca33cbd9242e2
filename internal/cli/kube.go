package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/rdev"
)

// KubeConfig is the configuration of `rdev serve --cluster kube`.
type KubeConfig struct {
	Kubeconfig     string
	Namespace      string
	WorkspaceImage string
	ComponentImage string
	WorkspaceRoot  string
	ReadyTimeout   time.Duration
	QPS            float64 // requests per second to the API server (bursts of twice as many)
	// Previews.
	PreviewMode        string
	IngressClass       string
	ForwardAuthURL     string
	IngressAnnotations map[string]string
}

// inClusterNamespace is where a pod's service account says it runs.
const inClusterNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

// kubeClientConfig is the in-cluster configuration when rdev runs in a pod
// and no kubeconfig was named, else the kubeconfig's current context; and
// the namespace: the flag, else the pod's, else the context's.
func kubeClientConfig(c KubeConfig) (*rest.Config, string, error) {
	if c.Kubeconfig == "" {
		if cfg, err := rest.InClusterConfig(); err == nil {
			ns := c.Namespace
			if ns == "" {
				b, err := os.ReadFile(inClusterNamespace)
				if err != nil {
					return nil, "", fmt.Errorf("in-cluster namespace: %w (set --namespace)", err)
				}
				ns = strings.TrimSpace(string(b))
			}
			return cfg, ns, nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = c.Kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		return nil, "", errors.New("no Kubernetes configuration: rdev is not running in a cluster and found no kubeconfig ($KUBECONFIG, ~/.kube/config); pass --kubeconfig")
	}
	if err != nil {
		return nil, "", fmt.Errorf("kubernetes client configuration: %w", err)
	}
	ns := c.Namespace
	if ns == "" {
		if ns, _, err = cc.Namespace(); err != nil {
			return nil, "", err
		}
	}
	return cfg, ns, nil
}

// openKube connects to the cluster and checks that rdev may work in its
// namespace before the server starts.
func openKube(ctx context.Context, c KubeConfig, previewDomain, publicURL string, defaults rdev.Limits,
	reviewToken func(ctx context.Context, projectID string) (string, func(), error), egressProxy func(projectID, taskID string) string,
	log *slog.Logger) (*kube.Cluster, error) {
	if c.WorkspaceImage == "" {
		return nil, errors.New("--cluster kube needs --workspace-image (an image with sh and git, where sessions run)")
	}
	if c.ComponentImage == "" {
		c.ComponentImage = c.WorkspaceImage
	}
	if !strings.HasPrefix(c.WorkspaceRoot, "/") {
		return nil, fmt.Errorf("--workspace-root must be an absolute path, not %q", c.WorkspaceRoot)
	}
	if c.PreviewMode != kube.PreviewProxy && c.PreviewMode != kube.PreviewIngress {
		return nil, fmt.Errorf("--preview-mode must be proxy or ingress, not %q", c.PreviewMode)
	}
	if c.QPS <= 0 {
		return nil, errors.New("--kube-qps must be positive")
	}
	if c.ReadyTimeout <= 0 {
		return nil, errors.New("--pod-ready-timeout must be positive")
	}
	if c.PreviewMode == kube.PreviewIngress && c.ForwardAuthURL == "" {
		c.ForwardAuthURL = strings.TrimRight(publicURL, "/") + "/api/v1/preview-auth"
	}
	previews := kube.Previews{Mode: c.PreviewMode, Domain: previewDomain, IngressClass: c.IngressClass,
		ForwardAuthURL: c.ForwardAuthURL, Annotations: c.IngressAnnotations}
	cfg, ns, err := kubeClientConfig(c)
	if err != nil {
		return nil, err
	}
	cfg = kube.TuneClient(cfg, c.QPS)
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := kc.CoreV1().Pods(ns).List(cctx, metav1.ListOptions{Limit: 1}); err != nil {
		return nil, fmt.Errorf("kubernetes at %s, namespace %s: %w", cfg.Host, ns, err)
	}
	log.Info("kubernetes cluster", "server", cfg.Host, "namespace", ns, "workspace_image", c.WorkspaceImage, "preview_mode", c.PreviewMode)
	return kube.New(kube.Config{Client: kc, REST: cfg, Namespace: ns, WorkspaceRoot: c.WorkspaceRoot, ReadyTimeout: c.ReadyTimeout,
		Images: kube.Images{Workspace: c.WorkspaceImage, Component: c.ComponentImage}, Previews: previews, Log: log,
		Pods:        kube.Pods{User: kube.DefaultUser, Limits: defaults, EgressProxy: egressProxy},
		CloneURL:    func(id string) string { return strings.TrimRight(publicURL, "/") + "/git/" + id + ".git" },
		ReviewToken: reviewToken})
}
