package kube

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/rdev"
)

// Images are the images deployments use when a component names none.
type Images struct {
	Component string // a component without its own image
	Workspace string // the dev pod's workspace container
}

// DevComponent labels a project's dev pod, where sessions run.
const DevComponent = "dev"

// Deployer makes a project's objects: its NetworkPolicy, per component a
// Deployment (and a Service when it has a port), and the project's dev
// pod. Every object carries the labels of SPEC §2.
type Deployer struct {
	Resources
	Images Images
	// WorkspaceRoot is the dev pod's working directory, where sessions'
	// workspaces are made (default /workspace); an emptyDir volume.
	WorkspaceRoot string
	// Pods is how the project's pods run (user, limits).
	Pods Pods
	// Network is what the project's NetworkPolicy admits.
	Network Network
}

func objectName(projectID, part string) string { return "rdev-" + projectID + "-" + part }

// workspaceVolume is the emptyDir holding workspaces: sessions' in the dev
// pod, the checkout in a review pod.
const workspaceVolume = "workspace"

// root is the workspace volume's mount path.
func (d *Deployer) root() string {
	if d.WorkspaceRoot == "" {
		return "/workspace"
	}
	return strings.TrimRight(d.WorkspaceRoot, "/")
}

// Deploy creates or updates the project's objects, and deletes those of
// components it no longer has. The NetworkPolicy comes first, so that no
// pod of the project runs without it.
func (d *Deployer) Deploy(ctx context.Context, p *rdev.Project) error {
	ns, c := d.Namespace, d.Client
	if err := d.applyNetworkPolicy(ctx, p.ID); err != nil {
		return err
	}
	wanted := map[string]bool{}
	var services []string // reached directly, not through the egress proxy
	for _, comp := range p.Components {
		if comp.Port != nil {
			services = append(services, objectName(p.ID, comp.Name))
		}
	}
	proxyEnv := d.Pods.proxyEnv(p.ID, "", services...)
	for _, comp := range p.Components {
		labels := map[string]string(cluster.ProjectLabels(p.ID).With(cluster.LabelComponent, comp.Name))
		name := objectName(p.ID, comp.Name)
		wanted[name] = true
		image := comp.Image
		if image == "" {
			image = d.Images.Component
		}
		var env []corev1.EnvVar
		for _, k := range sortedKeys(comp.Env) {
			env = append(env, corev1.EnvVar{Name: k, Value: comp.Env[k]})
		}
		env = append(env, proxyEnv...)
		container := corev1.Container{Name: comp.Name, Image: image, Command: []string{"/bin/sh", "-c", comp.Command}, Env: env}
		if comp.Port != nil {
			container.Ports = []corev1.ContainerPort{{Name: "app", ContainerPort: int32(*comp.Port)}}
		}
		one := int32(1)
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{Containers: []corev1.Container{container}}}}}
		d.Pods.secure(&dep.Spec.Template.Spec, p.Limits)
		if !comp.Writable {
			readOnlyCode(&dep.Spec.Template.Spec)
		}
		if err := upsert(ctx, dep, c.AppsV1().Deployments(ns).Create, c.AppsV1().Deployments(ns).Get,
			func(ctx context.Context, cur *appsv1.Deployment) error {
				cur.Labels, cur.Spec = dep.Labels, dep.Spec
				_, err := c.AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{})
				return err
			}); err != nil {
			return fmt.Errorf("deployment %s: %w", name, err)
		}
		if comp.Port == nil {
			if err := c.CoreV1().Services(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("service %s: %w", name, err)
			}
			continue
		}
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
			Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "app", Port: int32(*comp.Port), TargetPort: intstr.FromString("app")}}}}
		if err := upsert(ctx, svc, c.CoreV1().Services(ns).Create, c.CoreV1().Services(ns).Get,
			func(ctx context.Context, cur *corev1.Service) error {
				cur.Labels, cur.Spec.Selector, cur.Spec.Ports = svc.Labels, svc.Spec.Selector, svc.Spec.Ports
				_, err := c.CoreV1().Services(ns).Update(ctx, cur, metav1.UpdateOptions{})
				return err
			}); err != nil {
			return fmt.Errorf("service %s: %w", name, err)
		}
	}
	// The dev pod: the workspace container sessions exec into, over an
	// emptyDir the pod's group (fsGroup) may write.
	devLabels := map[string]string(cluster.ProjectLabels(p.ID).With(cluster.LabelComponent, DevComponent))
	devName := objectName(p.ID, DevComponent)
	root := d.root()
	wanted[devName] = true
	dev := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: devName, Namespace: ns, Labels: devLabels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: WorkspaceContainer, Image: d.Images.Workspace,
			Command:      []string{"/bin/sh", "-c", "mkdir -p \"$0\"; trap 'exit 0' TERM; while :; do sleep 3600 & wait; done", root},
			WorkingDir:   root,
			Env:          proxyEnv,
			VolumeMounts: []corev1.VolumeMount{{Name: workspaceVolume, MountPath: root}}}},
			Volumes: []corev1.Volume{{Name: workspaceVolume, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}}}
	d.Pods.secure(&dev.Spec, p.Limits)
	if _, err := c.CoreV1().Pods(ns).Create(ctx, dev, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("pod %s: %w", devName, err)
	}
	// Components the project no longer has.
	var errs []error
	for _, k := range []string{"Deployment", "Service"} {
		kd, _ := d.kind(k)
		rs, err := d.listKind(ctx, kd, cluster.LabelProject+"="+p.ID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, r := range rs {
			if !wanted[r.Name] {
				if err := d.Delete(ctx, r); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Undeploy deletes everything labelled with the project.
func (d *Deployer) Undeploy(ctx context.Context, projectID string) error {
	return d.DeleteSelected(ctx, cluster.ProjectLabels(projectID))
}

// RunningPod returns the name of the project's dev pod when it is Ready,
// or rdev.ErrPodNotRunning.
func (d *Deployer) RunningPod(ctx context.Context, projectID string) (string, error) {
	pods, err := d.Client.CoreV1().Pods(d.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: cluster.LabelProject + "=" + projectID + "," + cluster.LabelComponent + "=" + DevComponent})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && podReady(&p) {
			return p.Name, nil
		}
	}
	return "", rdev.ErrPodNotRunning
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// upsert creates obj, or updates the existing one with update.
func upsert[T any](ctx context.Context, obj *T,
	create func(context.Context, *T, metav1.CreateOptions) (*T, error),
	get func(context.Context, string, metav1.GetOptions) (*T, error),
	update func(context.Context, *T) error) error {
	_, err := create(ctx, obj, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	name := any(obj).(metav1.Object).GetName()
	cur, err := get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	return update(ctx, cur)
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
