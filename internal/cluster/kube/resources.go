// Package kube is the Kubernetes backend of the cluster interface, on
// client-go. It holds a kubernetes.Interface (never a *Clientset), so the
// same code runs against a real API server and in unit tests.
//
// This file is its resource half — listing what rdev manages, deleting one
// object, deleting by label selector across every kind — which the
// project delete and the resource GC use. Deploy, pod binding, exec and
// previews are the next slices of the issue.
package kube

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

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

// Kinds of objects rdev manages, in the order deletion takes them: what
// routes traffic first, then what runs.
func (r *Resources) kinds() []kind {
	ns, c := r.Namespace, r.Client
	bg := metav1.DeletePropagationBackground
	delOpts := metav1.DeleteOptions{PropagationPolicy: &bg}
	return []kind{
		{name: "Ingress",
			list: func(ctx context.Context, o metav1.ListOptions) ([]cluster.Resource, string, error) {
				l, err := c.NetworkingV1().Ingresses(ns).List(ctx, o)
				if err != nil {
					return nil, "", err
				}
				out := make([]cluster.Resource, len(l.Items))
				for i := range l.Items {
					out[i] = resource("Ingress", l.Items[i].ObjectMeta)
				}
				return out, l.Continue, nil
			},
			del: func(ctx context.Context, n string) error {
				return c.NetworkingV1().Ingresses(ns).Delete(ctx, n, delOpts)
			},
			delAll: func(ctx context.Context, sel string) error {
				return c.NetworkingV1().Ingresses(ns).DeleteCollection(ctx, delOpts, metav1.ListOptions{LabelSelector: sel})
			}},
		{name: "Service",
			list: func(ctx context.Context, o metav1.ListOptions) ([]cluster.Resource, string, error) {
				l, err := c.CoreV1().Services(ns).List(ctx, o)
				if err != nil {
					return nil, "", err
				}
				out := make([]cluster.Resource, len(l.Items))
				for i := range l.Items {
					out[i] = resource("Service", l.Items[i].ObjectMeta)
				}
				return out, l.Continue, nil
			},
			del: func(ctx context.Context, n string) error { return c.CoreV1().Services(ns).Delete(ctx, n, delOpts) }},
		{name: "Deployment",
			list: func(ctx context.Context, o metav1.ListOptions) ([]cluster.Resource, string, error) {
				l, err := c.AppsV1().Deployments(ns).List(ctx, o)
				if err != nil {
					return nil, "", err
				}
				out := make([]cluster.Resource, len(l.Items))
				for i := range l.Items {
					out[i] = resource("Deployment", l.Items[i].ObjectMeta)
				}
				return out, l.Continue, nil
			},
			del: func(ctx context.Context, n string) error { return c.AppsV1().Deployments(ns).Delete(ctx, n, delOpts) },
			delAll: func(ctx context.Context, sel string) error {
				return c.AppsV1().Deployments(ns).DeleteCollection(ctx, delOpts, metav1.ListOptions{LabelSelector: sel})
			}},
		{name: "Pod",
			list: func(ctx context.Context, o metav1.ListOptions) ([]cluster.Resource, string, error) {
				l, err := c.CoreV1().Pods(ns).List(ctx, o)
				if err != nil {
					return nil, "", err
				}
				out := make([]cluster.Resource, len(l.Items))
				for i := range l.Items {
					out[i] = resource("Pod", l.Items[i].ObjectMeta)
				}
				return out, l.Continue, nil
			},
			del: func(ctx context.Context, n string) error { return c.CoreV1().Pods(ns).Delete(ctx, n, delOpts) },
			delAll: func(ctx context.Context, sel string) error {
				return c.CoreV1().Pods(ns).DeleteCollection(ctx, delOpts, metav1.ListOptions{LabelSelector: sel})
			}},
		{name: "Secret",
			list: func(ctx context.Context, o metav1.ListOptions) ([]cluster.Resource, string, error) {
				l, err := c.CoreV1().Secrets(ns).List(ctx, o)
				if err != nil {
					return nil, "", err
				}
				out := make([]cluster.Resource, len(l.Items))
				for i := range l.Items {
					out[i] = resource("Secret", l.Items[i].ObjectMeta)
				}
				return out, l.Continue, nil
			},
			del: func(ctx context.Context, n string) error { return c.CoreV1().Secrets(ns).Delete(ctx, n, delOpts) },
			delAll: func(ctx context.Context, sel string) error {
				return c.CoreV1().Secrets(ns).DeleteCollection(ctx, delOpts, metav1.ListOptions{LabelSelector: sel})
			}},
	}
}

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
