package kube

import (
	"context"
	"fmt"
	"maps"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"

	"rdev.dev/rdev/internal/cluster"
)

// Network is what a project's NetworkPolicy admits besides DNS and the
// project's own pods.
type Network struct {
	// RdevPods selects rdev's own pods, in the namespace of the project's
	// objects (default app.kubernetes.io/name=rdev).
	RdevPods map[string]string
	// RdevPorts are the ports of rdev's pods project pods may connect to:
	// its API and git host, its egress proxy (default 7420).
	RdevPorts []int32
	// IngressNamespaces selects the namespaces whose pods may connect to
	// project pods besides rdev's: the ingress controller's, for previews
	// (default kubernetes.io/metadata.name=ingress-nginx).
	IngressNamespaces map[string]string
}

// Defaults of Network.
var (
	DefaultRdevPods          = map[string]string{"app.kubernetes.io/name": "rdev"}
	DefaultRdevPorts         = []int32{7420}
	DefaultIngressNamespaces = map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}
)

func (n Network) withDefaults() Network {
	if len(n.RdevPods) == 0 {
		n.RdevPods = DefaultRdevPods
	}
	if len(n.RdevPorts) == 0 {
		n.RdevPorts = DefaultRdevPorts
	}
	if len(n.IngressNamespaces) == 0 {
		n.IngressNamespaces = DefaultIngressNamespaces
	}
	return n
}

func (n Network) validate() error {
	for what, sel := range map[string]map[string]string{"rdev pod selector": n.RdevPods, "ingress namespace selector": n.IngressNamespaces} {
		for k, v := range sel {
			if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
				return fmt.Errorf("kube: %s %s=%s: %s", what, k, v, strings.Join(errs, "; "))
			}
		}
	}
	for _, p := range n.RdevPorts {
		if p < 1 || p > 65535 {
			return fmt.Errorf("kube: rdev port %d: must be between 1 and 65535", p)
		}
	}
	return nil
}

// networkPolicy is the project's NetworkPolicy. It selects every pod of
// the project and lets them connect only to DNS (kube-system's kube-dns
// pods, port 53), to rdev's pods on rdev's ports, and to the project's own
// pods; connections to them come only from rdev's pods, the ingress
// controller's namespaces and the project's own pods. A review pod is no
// peer of the project's other pods (peers carry no task label): the code
// under review reaches rdev and DNS, not the project's running components.
func (d *Deployer) networkPolicy(projectID string) *networkingv1.NetworkPolicy {
	n := d.Network.withDefaults()
	peers := &metav1.LabelSelector{MatchLabels: map[string]string{cluster.LabelProject: projectID},
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: LabelTask, Operator: metav1.LabelSelectorOpDoesNotExist}}}
	rdevPods := &metav1.LabelSelector{MatchLabels: maps.Clone(n.RdevPods)}
	udp, tcp, dns := corev1.ProtocolUDP, corev1.ProtocolTCP, intstr.FromInt32(53)
	var rdevPorts []networkingv1.NetworkPolicyPort
	for _, p := range n.RdevPorts {
		port := intstr.FromInt32(p)
		rdevPorts = append(rdevPorts, networkingv1.NetworkPolicyPort{Protocol: &tcp, Port: &port})
	}
	return &networkingv1.NetworkPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: objectName(projectID, "network"), Namespace: d.Namespace, Labels: cluster.ProjectLabels(projectID)},
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{cluster.LabelProject: projectID}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{From: []networkingv1.NetworkPolicyPeer{
				{PodSelector: rdevPods},
				{NamespaceSelector: &metav1.LabelSelector{MatchLabels: maps.Clone(n.IngressNamespaces)}},
				{PodSelector: peers},
			}}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: []networkingv1.NetworkPolicyPeer{{
					NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "kube-system"}},
					PodSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": "kube-dns"}}}},
					Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: rdevPods}}, Ports: rdevPorts},
				{To: []networkingv1.NetworkPolicyPeer{{PodSelector: peers}}},
			},
		},
	}
}

// applyNetworkPolicy creates or updates the project's NetworkPolicy.
func (d *Deployer) applyNetworkPolicy(ctx context.Context, projectID string) error {
	np := d.networkPolicy(projectID)
	nps := d.Client.NetworkingV1().NetworkPolicies(d.Namespace)
	if err := upsert(ctx, np, nps.Create, nps.Get, func(ctx context.Context, cur *networkingv1.NetworkPolicy) error {
		cur.Labels, cur.Spec = np.Labels, np.Spec
		_, err := nps.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	}); err != nil {
		return fmt.Errorf("network policy %s: %w", np.Name, err)
	}
	return nil
}
