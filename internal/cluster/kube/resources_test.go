package kube_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/cluster/kube/kubetest"
	"rdev.dev/rdev/internal/loop"
)

const ns = "rdev"

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// objects makes, for project p, what a deployed project with three
// components and two previews holds: three Deployments and Services, the
// dev pod, two preview Ingresses, a Secret and a NetworkPolicy (of another
// name and rules than Deploy makes now, as an older deploy may have left).
func objects(t *testing.T, kc kubernetes.Interface, p string) {
	ctx := context.Background()
	labels := func(extra ...string) map[string]string {
		l := map[string]string(cluster.ProjectLabels(p))
		for i := 0; i+1 < len(extra); i += 2 {
			l[extra[i]] = extra[i+1]
		}
		return l
	}
	meta := func(name string, extra ...string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: p + "-" + name, Namespace: ns, Labels: labels(extra...)}
	}
	one := int32(1)
	for _, comp := range []string{"web", "api", "worker"} {
		sel := map[string]string{cluster.LabelProject: p, cluster.LabelComponent: comp}
		_, err := kc.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: meta(comp, cluster.LabelComponent, comp),
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: sel},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: comp, Image: "busybox"}}}}}}, metav1.CreateOptions{})
		must(t, err)
		_, err = kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: meta(comp, cluster.LabelComponent, comp),
			Spec: corev1.ServiceSpec{Selector: sel, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
		must(t, err)
	}
	_, err := kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: meta("dev"),
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "workspace", Image: "busybox"}}}}, metav1.CreateOptions{})
	must(t, err)
	for _, s := range []string{"s1", "s2"} {
		_, err := kc.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{ObjectMeta: meta("preview-"+s, cluster.LabelSession, s),
			Spec: networkingv1.IngressSpec{Rules: []networkingv1.IngressRule{{Host: s + ".preview.example.com"}}}}, metav1.CreateOptions{})
		must(t, err)
	}
	_, err = kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: meta("token")}, metav1.CreateOptions{})
	must(t, err)
	_, err = kc.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: meta("netpol"),
		Spec: networkingv1.NetworkPolicySpec{PodSelector: metav1.LabelSelector{MatchLabels: map[string]string{cluster.LabelProject: p}},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}}, metav1.CreateOptions{})
	must(t, err)
}

// count lists, through the API server, the objects of each kind labelled
// with the project.
func count(t *testing.T, kc kubernetes.Interface, p string) map[string]int {
	ctx := context.Background()
	o := metav1.ListOptions{LabelSelector: cluster.LabelProject + "=" + p}
	out := map[string]int{}
	d, err := kc.AppsV1().Deployments(ns).List(ctx, o)
	must(t, err)
	s, err := kc.CoreV1().Services(ns).List(ctx, o)
	must(t, err)
	po, err := kc.CoreV1().Pods(ns).List(ctx, o)
	must(t, err)
	in, err := kc.NetworkingV1().Ingresses(ns).List(ctx, o)
	must(t, err)
	se, err := kc.CoreV1().Secrets(ns).List(ctx, o)
	must(t, err)
	np, err := kc.NetworkingV1().NetworkPolicies(ns).List(ctx, o)
	must(t, err)
	// Pods being deleted gracefully still list until their kubelet (none
	// here) confirms; count those not marked for deletion.
	pods := 0
	for _, p := range po.Items {
		if p.DeletionTimestamp == nil {
			pods++
		}
	}
	out["Deployment"], out["Service"], out["Pod"], out["Ingress"], out["Secret"] = len(d.Items), len(s.Items), pods, len(in.Items), len(se.Items)
	out["NetworkPolicy"] = len(np.Items)
	return out
}

func TestDeleteSelectedOnTheAPIServer(t *testing.T) {
	cp := kubetest.Start(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	must(t, err)
	ctx := context.Background()
	namespace(t, kc)
	for _, p := range []string{"gone", "kept", "denied"} {
		objects(t, kc, p)
	}
	_, err = kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "foreign", Namespace: ns,
		Labels: map[string]string{cluster.LabelProject: "gone"}}, Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})
	must(t, err)
	full := map[string]int{"Deployment": 3, "Service": 3, "Pod": 1, "Ingress": 2, "Secret": 1, "NetworkPolicy": 1}

	t.Run("EveryKindOfTheProjectGoes", func(t *testing.T) {
		r := &kube.Resources{Client: kc, Namespace: ns}
		must(t, r.DeleteSelected(ctx, cluster.ProjectLabels("gone")))
		got := count(t, kc, "gone")
		// The unlabelled-by-rdev Service of the same project stays.
		if got["Service"] != 1 || got["Deployment"]+got["Pod"]+got["Ingress"]+got["Secret"]+got["NetworkPolicy"] != 0 {
			t.Fatalf("left of gone: %v", got)
		}
		if got := count(t, kc, "kept"); !equal(got, full) {
			t.Fatalf("kept: %v", got)
		}
	})

	t.Run("OneKindDeniedTheOthersStillGo", func(t *testing.T) {
		denyIngressDeletes(t, kc)
		limited, err := kubernetes.NewForConfig(cp.ConfigFor(cp.LimitedToken))
		must(t, err)
		r := &kube.Resources{Client: limited, Namespace: ns}
		err = r.DeleteSelected(ctx, cluster.ProjectLabels("denied"))
		if err == nil || !strings.Contains(err.Error(), "delete Ingress") || !strings.Contains(err.Error(), "forbidden") {
			t.Fatalf("joined error: %v", err)
		}
		got := count(t, kc, "denied")
		if got["Ingress"] != 2 || got["Deployment"]+got["Service"]+got["Pod"]+got["Secret"]+got["NetworkPolicy"] != 0 {
			t.Fatalf("left of denied: %v", got)
		}
	})

	t.Run("GCDeletesOnlyOldOrphans", func(t *testing.T) {
		objects(t, kc, "orphan")
		r := &kube.Resources{Client: kc, Namespace: ns, PageSize: 3}
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		projects := projectIDs{"kept"}
		// Everything was created just now: within the window, nothing goes.
		young := &loop.ResourceGC{Cluster: r, Projects: projects, Now: time.Now, Log: log}
		st, err := young.RunOnce(ctx)
		if err != nil || st.Deleted != 0 || st.Orphans != 0 {
			t.Fatalf("young: %+v %v", st, err)
		}
		later := func() time.Time { return time.Now().Add(2 * time.Hour) }
		dry := &loop.ResourceGC{Cluster: r, Projects: projects, Now: later, DryRun: true, Log: log}
		if st, err := dry.RunOnce(ctx); err != nil || st.Deleted != 0 || st.Orphans == 0 {
			t.Fatalf("dry run: %+v %v", st, err)
		}
		gc := &loop.ResourceGC{Cluster: r, Projects: projects, Now: later, Log: log}
		st, err = gc.RunOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The orphan's eleven objects and the denied project's two Ingresses.
		if st.Deleted != 13 {
			t.Fatalf("deleted %d: %+v", st.Deleted, st)
		}
		if got := count(t, kc, "orphan"); got["Deployment"]+got["Service"]+got["Pod"]+got["Ingress"]+got["Secret"]+got["NetworkPolicy"] != 0 {
			t.Fatalf("left of the orphan: %v", got)
		}
		if got := count(t, kc, "kept"); !equal(got, full) {
			t.Fatalf("kept: %v", got)
		}
	})
}

// namespace makes rdev's namespace. No controller manager runs here, so
// its default service account, which pod admission looks up, is made by
// hand.
func namespace(t *testing.T, kc kubernetes.Interface) { kubetest.Namespace(t, kc, ns) }

// denyIngressDeletes lets the control plane's limited user do everything
// to rdev's kinds in ns but delete Ingresses.
func denyIngressDeletes(t *testing.T, kc kubernetes.Interface) {
	ctx := context.Background()
	_, err := kc.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "limited", Namespace: ns},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"services", "pods", "secrets"}, Verbs: []string{"get", "list", "delete", "deletecollection"}},
			{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: []string{"get", "list", "delete", "deletecollection"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"ingresses"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"get", "list", "delete", "deletecollection"}},
		}}, metav1.CreateOptions{})
	must(t, err)
	_, err = kc.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "limited", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "limited"},
		Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "rdev-test"}}}, metav1.CreateOptions{})
	must(t, err)
}

type projectIDs []string

func (p projectIDs) ProjectIDs(ctx context.Context) ([]string, error) { return p, nil }

func equal(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
