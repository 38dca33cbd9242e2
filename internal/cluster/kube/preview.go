package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"rdev.dev/rdev/internal/cluster"
)

// Preview modes.
const (
	// PreviewProxy: rdev serves <session>.<preview-domain> itself (one
	// wildcard Ingress, or a port-forward, sends it there), checks access
	// and proxies to the dev pod's IP and the session's preview port.
	PreviewProxy = "proxy"
	// PreviewIngress: per session a Service and an Ingress for host
	// <session>.<preview-domain>, whose controller asks rdev's forward-auth
	// endpoint before it lets a request through; traffic bypasses rdev.
	PreviewIngress = "ingress"
)

// Previews configures how sessions' previews are exposed.
type Previews struct {
	Mode   string // PreviewProxy (default) or PreviewIngress
	Domain string // the preview domain: hosts are <session>.<Domain>
	// IngressClass is the class of the Ingresses made (the cluster's
	// default class when empty).
	IngressClass string
	// ForwardAuthURL is rdev's forward-auth endpoint as the ingress
	// controller reaches it (…/api/v1/preview-auth); required in ingress
	// mode, where it goes into the ingress-nginx auth-url annotation.
	ForwardAuthURL string
	// Annotations are added to every preview Ingress (another controller's
	// forward-auth settings, TLS issuers, …), overriding the default ones.
	Annotations map[string]string
}

// NginxAuthURL is ingress-nginx's forward-auth annotation.
const NginxAuthURL = "nginx.ingress.kubernetes.io/auth-url"

func (p Previews) validate() error {
	switch p.Mode {
	case "", PreviewProxy:
		return nil
	case PreviewIngress:
		if p.Domain == "" {
			return errors.New("kube: ingress previews need a preview domain")
		}
		// A session id is a DNS label: <session>.<domain> is a host an
		// Ingress takes when the domain is a DNS name.
		if errs := validation.IsDNS1123Subdomain("s." + p.Domain); len(errs) > 0 {
			return fmt.Errorf("kube: preview domain %q is not a DNS name for Ingress hosts: %s", p.Domain, strings.Join(errs, "; "))
		}
		if p.ForwardAuthURL == "" {
			return errors.New("kube: ingress previews need the forward-auth URL (or every preview would be public)")
		}
		if u, err := url.Parse(p.ForwardAuthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("kube: forward-auth URL %q is not an absolute http(s) URL", p.ForwardAuthURL)
		}
		if p.IngressClass != "" {
			if errs := validation.IsDNS1123Subdomain(p.IngressClass); len(errs) > 0 {
				return fmt.Errorf("kube: ingress class %q: %s", p.IngressClass, strings.Join(errs, "; "))
			}
		}
		for k := range p.Annotations {
			if errs := validation.IsQualifiedName(k); len(errs) > 0 {
				return fmt.Errorf("kube: ingress annotation %q: %s", k, strings.Join(errs, "; "))
			}
		}
		return nil
	}
	return fmt.Errorf("kube: preview mode must be %s or %s, not %q", PreviewProxy, PreviewIngress, p.Mode)
}

func previewName(sessionID string) string { return "rdev-preview-" + sessionID }

// exposePreview makes the session's Service (to the dev pod's preview
// port) and Ingress (host <session>.<domain>), labelled with the project
// and the session.
func (c *Cluster) exposePreview(ctx context.Context, spec cluster.WorkspaceSpec, port int) error {
	p := c.previews
	labels := map[string]string(cluster.ProjectLabels(spec.ProjectID).With(cluster.LabelSession, spec.SessionID))
	name, ns := previewName(spec.SessionID), c.Namespace
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.ServiceSpec{Selector: map[string]string(cluster.ProjectLabels(spec.ProjectID).With(cluster.LabelComponent, DevComponent)),
			Ports: []corev1.ServicePort{{Name: "preview", Port: int32(port), TargetPort: intstr.FromInt32(int32(port))}}}}
	if err := upsert(ctx, svc, c.Client.CoreV1().Services(ns).Create, c.Client.CoreV1().Services(ns).Get,
		func(ctx context.Context, cur *corev1.Service) error {
			cur.Labels, cur.Spec.Selector, cur.Spec.Ports = svc.Labels, svc.Spec.Selector, svc.Spec.Ports
			_, err := c.Client.CoreV1().Services(ns).Update(ctx, cur, metav1.UpdateOptions{})
			return err
		}); err != nil {
		return fmt.Errorf("preview service %s: %w", name, err)
	}
	annotations := map[string]string{NginxAuthURL: p.ForwardAuthURL}
	maps.Copy(annotations, p.Annotations)
	prefix := networkingv1.PathTypePrefix
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels, Annotations: annotations},
		Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: spec.SessionID + "." + p.Domain,
			IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{Paths: []networkingv1.HTTPIngressPath{{
				Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{
					Name: name, Port: networkingv1.ServiceBackendPort{Number: int32(port)}}}}}}}}}}}
	if p.IngressClass != "" {
		ing.Spec.IngressClassName = &p.IngressClass
	}
	ings := c.Client.NetworkingV1().Ingresses(ns)
	if err := upsert(ctx, ing, ings.Create, ings.Get, func(ctx context.Context, cur *networkingv1.Ingress) error {
		cur.Labels, cur.Annotations, cur.Spec = ing.Labels, ing.Annotations, ing.Spec
		_, err := ings.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("preview ingress %s: %w", name, err)
	}
	return nil
}

// unexposePreview deletes whatever carries the session's label.
func (c *Cluster) unexposePreview(ctx context.Context, sessionID string) error {
	return c.Resources.DeleteSelected(ctx, cluster.Labels{cluster.LabelManagedBy: cluster.ManagedBy, cluster.LabelSession: sessionID})
}
