// Package kube is the Kubernetes backend of the cluster interface, on
// client-go. It holds a kubernetes.Interface (never a *Clientset), so the
// same code runs against a real API server and in unit tests.
//
// This file is its resource half — listing what rdev manages, deleting one
// object, deleting by label selector across every kind — which the
// project delete and the resource GC use.
package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rdev.dev/rdev/internal/cluster"
)

// Resources are the kinds rdev creates, one namespace holding them all.
type Resources struct {
	Client    kubernetes.Interface
	Namespace string
	// PageSize bounds each list call (500 when 0).
	PageSize int64
}

// kind is how to list, delete one of, and delete by selector a kind.
type kind struct {
	name string
	// list returns one page: the objects as resources, and the continue
	// token of the next page ("" on the last).
	list func(ctx context.Context, opts metav1.ListOptions) ([]cluster.Resource, string, error)
	del  func(ctx context.Context, name string) error
	// delAll deletes by selector; nil for kinds the API server cannot
	// delete as a collection (Services), which are listed and deleted one
	// by one.
	delAll func(ctx context.Context, selector string) error
}

func resource(k string, m metav1.ObjectMeta) cluster.Resource {
	return cluster.Resource{Kind: k, Name: m.Name, Labels: cluster.Labels(m.Labels), CreatedAt: m.CreationTimestamp.UTC()}
}

// lister adapts a typed List call of one kind to kind.list.
func lister[L any, T any](name string, list func(context.Context, metav1.ListOptions) (L, error),
	items func(L) ([]T, string), meta func(*T) metav1.ObjectMeta) func(context.Context, metav1.ListOptions) ([]cluster.Resource, string, error) {
	return func(ctx context.Context, o metav1.ListOptions) ([]cluster.Resource, string, error) {
		l, err := list(ctx, o)
		if err != nil {
			return nil, "", err
		}
		objs, next := items(l)
		out := make([]cluster.Resource, len(objs))
		for i := range objs {
			out[i] = resource(name, meta(&objs[i]))
		}
		return out, next, nil
	}
}

// Kinds of objects rdev manages, in the order deletion takes them: what
// routes traffic first, then what runs, and last the NetworkPolicy that
// confines what runs.
func (r *Resources) kinds() []kind {
	ns, c := r.Namespace, r.Client
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg}
	sel := func(s string) metav1.ListOptions { return metav1.ListOptions{LabelSelector: s} }
	ing, svc, dep, pod, sec := c.NetworkingV1().Ingresses(ns), c.CoreV1().Services(ns), c.AppsV1().Deployments(ns), c.CoreV1().Pods(ns), c.CoreV1().Secrets(ns)
	np := c.NetworkingV1().NetworkPolicies(ns)
	return []kind{
		{name: "Ingress",
			list: lister("Ingress", ing.List, func(l *networkingv1.IngressList) ([]networkingv1.Ingress, string) { return l.Items, l.Continue },
				func(o *networkingv1.Ingress) metav1.ObjectMeta { return o.ObjectMeta }),
			del:    func(ctx context.Context, n string) error { return ing.Delete(ctx, n, opts) },
			delAll: func(ctx context.Context, s string) error { return ing.DeleteCollection(ctx, opts, sel(s)) }},
		{name: "Service", // no delete-collection for Services: one by one
			list: lister("Service", svc.List, func(l *corev1.ServiceList) ([]corev1.Service, string) { return l.Items, l.Continue },
				func(o *corev1.Service) metav1.ObjectMeta { return o.ObjectMeta }),
			del: func(ctx context.Context, n string) error { return svc.Delete(ctx, n, opts) }},
		{name: "Deployment",
			list: lister("Deployment", dep.List, func(l *appsv1.DeploymentList) ([]appsv1.Deployment, string) { return l.Items, l.Continue },
				func(o *appsv1.Deployment) metav1.ObjectMeta { return o.ObjectMeta }),
			del:    func(ctx context.Context, n string) error { return dep.Delete(ctx, n, opts) },
			delAll: func(ctx context.Context, s string) error { return dep.DeleteCollection(ctx, opts, sel(s)) }},
		{name: "Pod",
			list: lister("Pod", pod.List, func(l *corev1.PodList) ([]corev1.Pod, string) { return l.Items, l.Continue },
				func(o *corev1.Pod) metav1.ObjectMeta { return o.ObjectMeta }),
			del:    func(ctx context.Context, n string) error { return pod.Delete(ctx, n, opts) },
			delAll: func(ctx context.Context, s string) error { return pod.DeleteCollection(ctx, opts, sel(s)) }},
		{name: "Secret",
			list: lister("Secret", sec.List, func(l *corev1.SecretList) ([]corev1.Secret, string) { return l.Items, l.Continue },
				func(o *corev1.Secret) metav1.ObjectMeta { return o.ObjectMeta }),
			del:    func(ctx context.Context, n string) error { return sec.Delete(ctx, n, opts) },
			delAll: func(ctx context.Context, s string) error { return sec.DeleteCollection(ctx, opts, sel(s)) }},
		{name: "NetworkPolicy",
			list: lister("NetworkPolicy", np.List, func(l *netpolList) ([]networkingv1.NetworkPolicy, string) { return l.Items, l.Continue },
				func(o *networkingv1.NetworkPolicy) metav1.ObjectMeta { return o.ObjectMeta }),
			del:    func(ctx context.Context, n string) error { return np.Delete(ctx, n, opts) },
			delAll: func(ctx context.Context, s string) error { return np.DeleteCollection(ctx, opts, sel(s)) }},
	}
}

type netpolList = networkingv1.NetworkPolicyList

func (r *Resources) kind(name string) (kind, bool) {
	for _, k := range r.kinds() {
		if k.name == name {
			return k, true
		}
	}
	return kind{}, false
}

// managedSelector selects everything rdev manages.
var managedSelector = cluster.LabelManagedBy + "=rdev"

// listKind lists one kind matching selector, page by page.
func (r *Resources) listKind(ctx context.Context, k kind, selector string) ([]cluster.Resource, error) {
	size := r.PageSize
	if size <= 0 {
		size = 500
	}
	var out []cluster.Resource
	opts := metav1.ListOptions{LabelSelector: selector, Limit: size}
	for {
		page, next, err := k.list(ctx, opts)
		if err != nil {
			return out, fmt.Errorf("list %s: %w", k.name, err)
		}
		out = append(out, page...)
		if next == "" {
			return out, nil
		}
		opts.Continue = next
	}
}

// List returns every object labelled managed-by=rdev: one paged list per
// kind. A kind that cannot be listed is reported, joined, after the others.
func (r *Resources) List(ctx context.Context) ([]cluster.Resource, error) {
	var out []cluster.Resource
	var errs []error
	for _, k := range r.kinds() {
		rs, err := r.listKind(ctx, k, managedSelector)
		out = append(out, rs...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return out, errors.Join(errs...)
}

// Delete removes one object; one already gone is not an error.
func (r *Resources) Delete(ctx context.Context, res cluster.Resource) error {
	k, ok := r.kind(res.Kind)
	if !ok {
		return fmt.Errorf("%s %s: not a kind rdev manages", res.Kind, res.Name)
	}
	if err := k.del(ctx, res.Name); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete %s %s: %w", res.Kind, res.Name, err)
	}
	return nil
}

// DeleteSelected deletes every object of every kind matching selector —
// as a collection where the API server allows it, else one by one —
// going on past failures and returning them joined, each naming its kind.
func (r *Resources) DeleteSelected(ctx context.Context, selector cluster.Labels) error {
	sel := managedSelector
	for _, k := range slices.Sorted(maps.Keys(selector)) {
		if k != cluster.LabelManagedBy {
			sel += "," + k + "=" + selector[k]
		}
	}
	var errs []error
	for _, k := range r.kinds() {
		if k.delAll != nil {
			if err := k.delAll(ctx, sel); err != nil {
				errs = append(errs, fmt.Errorf("delete %s (%s): %w", k.name, sel, err))
			}
			continue
		}
		rs, err := r.listKind(ctx, k, sel)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, res := range rs {
			if err := r.Delete(ctx, res); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
