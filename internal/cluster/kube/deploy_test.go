package kube_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/cluster/kube/kubetest"
	"rdev.dev/rdev/internal/rdev"
)

func TestDeployOnTheAPIServer(t *testing.T) {
	cp := kubetest.Start(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	must(t, err)
	ctx := context.Background()
	namespace(t, kc)
	// An older deploy's NetworkPolicy of the same name, with other rules.
	_, err = kc.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "rdev-shop-network",
		Labels: cluster.ProjectLabels("shop")}, Spec: networkingv1.NetworkPolicySpec{PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}}},
		metav1.CreateOptions{})
	must(t, err)
	d := &kube.Deployer{Resources: kube.Resources{Client: kc, Namespace: ns}, Images: kube.Images{Component: "debian:12", Workspace: "rdev-workspace:1"},
		WorkspaceRoot: "/work/space/", Pods: kube.Pods{User: 20002, Limits: rdev.Limits{Memory: "1GiB", CPU: 2}, EgressProxy: testProxy},
		Network: kube.Network{RdevPods: map[string]string{"app": "rdev-server"}, RdevPorts: []int32{7420, 3128},
			IngressNamespaces: map[string]string{"ingress": "yes"}}}
	port, api := 3000, 8080
	p := &rdev.Project{ID: "shop", Name: "Shop", DefaultBranch: "main", Limits: rdev.Limits{Memory: "512MiB", PIDs: 64}, Components: []rdev.Component{
		{Name: "web", Command: "npm start", Port: &port, Env: map[string]string{"B": "2", "A": "1"}, Image: "node:22", Writable: true},
		{Name: "api", Command: "./api", Port: &api},
		{Name: "worker", Command: "./worker"},
	}}
	must(t, d.Deploy(ctx, p))
	must(t, d.Deploy(ctx, p)) // again: updates in place

	got := count(t, kc, "shop")
	if want := map[string]int{"Deployment": 3, "Service": 2, "Pod": 1, "Ingress": 0, "Secret": 0, "NetworkPolicy": 1}; !equal(got, want) {
		t.Fatalf("objects %v, want %v", got, want)
	}
	web, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-shop-web", metav1.GetOptions{})
	must(t, err)
	c := web.Spec.Template.Spec.Containers[0]
	if web.Labels[cluster.LabelManagedBy] != "rdev" || web.Labels[cluster.LabelProject] != "shop" || web.Labels[cluster.LabelComponent] != "web" ||
		c.Image != "node:22" || c.Command[2] != "npm start" || len(c.Env) != 2+8 || c.Env[0].Name != "A" || c.Ports[0].ContainerPort != 3000 {
		t.Fatalf("web deployment: labels %v container %+v", web.Labels, c)
	}
	worker, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-shop-worker", metav1.GetOptions{})
	must(t, err)
	if worker.Spec.Template.Spec.Containers[0].Image != "debian:12" {
		t.Fatalf("default image not used: %+v", worker.Spec.Template.Spec.Containers[0])
	}

	t.Run("PodsRunConfined", func(t *testing.T) {
		// Memory from the project, CPU from the Deployer's default (the
		// project sets none), the Deployer's user.
		for _, comp := range []string{"web", "api", "worker"} {
			dep, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-shop-"+comp, metav1.GetOptions{})
			must(t, err)
			checkConfined(t, "deployment "+comp, dep.Spec.Template.Spec, 20002, "512Mi", "2")
		}
		dev, err := kc.CoreV1().Pods(ns).Get(ctx, "rdev-shop-dev", metav1.GetOptions{})
		must(t, err)
		checkConfined(t, "dev pod", dev.Spec, 20002, "512Mi", "2")
		checkWorkspaceVolume(t, dev.Spec, "/work/space")
	})

	t.Run("CodeReadOnlyUnlessWritable", func(t *testing.T) {
		// A component's image is its code: read-only, with emptyDirs for
		// temporary files, unless the component is declared writable.
		for comp, readOnly := range map[string]bool{"web": false, "api": true, "worker": true} {
			dep, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-shop-"+comp, metav1.GetOptions{})
			must(t, err)
			spec := dep.Spec.Template.Spec
			c := spec.Containers[0]
			if ro := c.SecurityContext.ReadOnlyRootFilesystem; ro == nil || *ro != readOnly {
				t.Errorf("component %s: readOnlyRootFilesystem %v, want %v", comp, ro, readOnly)
			}
			mounts := map[string]string{}
			for _, m := range c.VolumeMounts {
				mounts[m.MountPath] = m.Name
			}
			for _, dir := range []string{"/tmp", "/var/tmp"} {
				name, ok := mounts[dir]
				if ok != readOnly {
					t.Errorf("component %s: a volume at %s: %v, want %v", comp, dir, ok, readOnly)
					continue
				}
				if !ok {
					continue
				}
				var emptyDir bool
				for _, v := range spec.Volumes {
					emptyDir = emptyDir || v.Name == name && v.EmptyDir != nil
				}
				if !emptyDir {
					t.Errorf("component %s: %s is not an emptyDir: %+v", comp, dir, spec.Volumes)
				}
			}
		}
	})

	t.Run("EgressOnlyThroughRdev", func(t *testing.T) {
		// Every container of the project is pointed at rdev's egress proxy
		// with the project's credentials; its Services stay direct.
		for _, comp := range []string{"web", "api", "worker"} {
			dep, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-shop-"+comp, metav1.GetOptions{})
			must(t, err)
			checkProxied(t, "deployment "+comp, dep.Spec.Template.Spec.Containers[0], testProxy("shop", ""), "rdev-shop-web", "rdev-shop-api")
		}
		dev, err := kc.CoreV1().Pods(ns).Get(ctx, "rdev-shop-dev", metav1.GetOptions{})
		must(t, err)
		checkProxied(t, "dev pod", dev.Spec.Containers[0], testProxy("shop", ""), "rdev-shop-web", "rdev-shop-api")
	})

	t.Run("DefaultsOfAPlainDeployer", func(t *testing.T) {
		plain := &kube.Deployer{Resources: kube.Resources{Client: kc, Namespace: ns}, Images: kube.Images{Component: "c", Workspace: "w"}}
		q := &rdev.Project{ID: "plain", Name: "plain", DefaultBranch: "main", Limits: rdev.Limits{CPU: 0.25},
			Components: []rdev.Component{{Name: "app", Command: "./app"}}}
		must(t, plain.Deploy(ctx, q))
		dep, err := kc.AppsV1().Deployments(ns).Get(ctx, "rdev-plain-app", metav1.GetOptions{})
		must(t, err)
		checkConfined(t, "deployment app", dep.Spec.Template.Spec, kube.DefaultUser, "2Gi", "250m")
		dev, err := kc.CoreV1().Pods(ns).Get(ctx, "rdev-plain-dev", metav1.GetOptions{})
		must(t, err)
		checkConfined(t, "dev pod", dev.Spec, 10001, "2Gi", "250m")
		checkWorkspaceVolume(t, dev.Spec, "/workspace")
		np, err := kc.NetworkingV1().NetworkPolicies(ns).Get(ctx, "rdev-plain-network", metav1.GetOptions{})
		must(t, err)
		checkNetworkPolicy(t, np, "plain", map[string]string{"app.kubernetes.io/name": "rdev"}, []int32{7420},
			map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"})
		must(t, plain.Undeploy(ctx, "plain"))
	})

	t.Run("NetworkPolicy", func(t *testing.T) {
		// The older deploy's policy now has the rules of the settings.
		np, err := kc.NetworkingV1().NetworkPolicies(ns).Get(ctx, "rdev-shop-network", metav1.GetOptions{})
		must(t, err)
		checkNetworkPolicy(t, np, "shop", map[string]string{"app": "rdev-server"}, []int32{7420, 3128}, map[string]string{"ingress": "yes"})
	})

	// No node runs the dev pod here: the project is not running.
	if _, err := d.RunningPod(ctx, "shop"); !errors.Is(err, rdev.ErrPodNotRunning) {
		t.Fatalf("RunningPod: %v", err)
	}

	// The cluster's Deploy waits for the dev pod and says why it gave up.
	c2, err := kube.New(kube.Config{Client: kc, REST: cp.Config, Namespace: ns, ReadyTimeout: time.Second,
		Images: kube.Images{Component: "debian:12", Workspace: "rdev-workspace:1"}})
	must(t, err)
	if err := c2.Deploy(ctx, p); err == nil || !strings.Contains(err.Error(), "dev pod rdev-shop-dev not ready within 1s: phase Pending") {
		t.Fatalf("deploy with no node: %v", err)
	}

	// A component dropped: its Deployment and Service go, the rest stay.
	p.Components = p.Components[1:]
	must(t, d.Deploy(ctx, p))
	if got := count(t, kc, "shop"); !equal(got, map[string]int{"Deployment": 2, "Service": 1, "Pod": 1, "Ingress": 0, "Secret": 0, "NetworkPolicy": 1}) {
		t.Fatalf("after dropping web: %v", got)
	}

	// Another NetworkPolicy of the project (an older deploy's name) goes
	// with the rest.
	_, err = kc.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "rdev-shop-old",
		Labels: cluster.ProjectLabels("shop")}}, metav1.CreateOptions{})
	must(t, err)
	must(t, d.Undeploy(ctx, "shop"))
	if got := count(t, kc, "shop"); !equal(got, map[string]int{"Deployment": 0, "Service": 0, "Pod": 0, "Ingress": 0, "Secret": 0, "NetworkPolicy": 0}) {
		t.Fatalf("after undeploy: %v", got)
	}
}

// Pod and network settings no pod or policy could take are refused when
// the backend is made.
func TestPodAndNetworkSettingsRefused(t *testing.T) {
	for name, c := range map[string]struct {
		edit func(*kube.Config)
		want string
	}{
		"Defaults":     {func(*kube.Config) {}, ""},
		"Set":          {func(c *kube.Config) { c.Pods = kube.Pods{User: 1000, Limits: rdev.Limits{Memory: "1GiB", CPU: 0.5}} }, ""},
		"NegativeUser": {func(c *kube.Config) { c.Pods.User = -1 }, "must be a non-root uid"},
		"BadMemory":    {func(c *kube.Config) { c.Pods.Limits.Memory = "lots" }, "default memory limit"},
		"NegativeCPU":  {func(c *kube.Config) { c.Pods.Limits.CPU = -1 }, "CPU limit"},
		"BadPort":      {func(c *kube.Config) { c.Network.RdevPorts = []int32{70000} }, "rdev port 70000"},
		"BadSelector":  {func(c *kube.Config) { c.Network.RdevPods = map[string]string{"bad key!": "x"} }, "rdev pod selector"},
		"BadNamespace": {func(c *kube.Config) { c.Network.IngressNamespaces = map[string]string{"k": "bad value!"} }, "ingress namespace selector"},
	} {
		cfg := kube.Config{Client: fake.NewClientset(), REST: &rest.Config{}, Namespace: "rdev", Images: kube.Images{Component: "c", Workspace: "w"}}
		c.edit(&cfg)
		_, err := kube.New(cfg)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", name, err, c.want)
		}
	}
}

// testProxy stands for the egress proxy URL rdev gives a pod.
func testProxy(projectID, taskID string) string {
	return "http://" + projectID + "." + taskID + ":secret@rdev.rdev.svc:7420"
}

// checkProxied checks that c's way out is the proxy at url, in both
// spellings of each variable, with loopback, the cluster's domains and
// direct kept out of it.
func checkProxied(t *testing.T, what string, c corev1.Container, url string, direct ...string) {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"} {
		if env[k] != url {
			t.Errorf("%s: %s=%q, want %q", what, k, env[k], url)
		}
	}
	want := strings.Join(append([]string{"localhost", "127.0.0.1", "::1", ".svc", ".cluster.local"}, direct...), ",")
	if env["NO_PROXY"] != want || env["no_proxy"] != want {
		t.Errorf("%s: NO_PROXY=%q no_proxy=%q, want %q", what, env["NO_PROXY"], env["no_proxy"], want)
	}
}

// checkConfined checks every field a project pod runs with.
func checkConfined(t *testing.T, what string, spec corev1.PodSpec, uid int64, memory, cpu string) {
	t.Helper()
	if a := spec.AutomountServiceAccountToken; a == nil || *a {
		t.Errorf("%s: automountServiceAccountToken %v", what, a)
	}
	if e := spec.EnableServiceLinks; e == nil || *e {
		t.Errorf("%s: enableServiceLinks %v", what, e)
	}
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser != uid ||
		sc.RunAsGroup == nil || *sc.RunAsGroup != uid || sc.FSGroup == nil || *sc.FSGroup != uid ||
		sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod security context %+v", what, sc)
	}
	if len(spec.Containers) == 0 {
		t.Fatalf("%s: no containers", what)
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		s := c.SecurityContext
		if s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation || s.Capabilities == nil ||
			!slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(s.Capabilities.Add) != 0 ||
			s.Privileged != nil && *s.Privileged || s.ReadOnlyRootFilesystem == nil {
			t.Errorf("%s, container %s: security context %+v", what, c.Name, s)
		}
		for _, rl := range []corev1.ResourceList{c.Resources.Limits, c.Resources.Requests} {
			if m := rl[corev1.ResourceMemory]; m.Cmp(resource.MustParse(memory)) != 0 {
				t.Errorf("%s, container %s: memory %s, want %s", what, c.Name, m.String(), memory)
			}
			if n := rl[corev1.ResourceCPU]; n.Cmp(resource.MustParse(cpu)) != 0 {
				t.Errorf("%s, container %s: cpu %s, want %s", what, c.Name, n.String(), cpu)
			}
		}
		if len(c.Resources.Limits) != 2 || len(c.Resources.Requests) != 2 {
			t.Errorf("%s, container %s: resources %+v", what, c.Name, c.Resources)
		}
	}
}

// checkWorkspaceVolume: the dev pod's workspace root is an emptyDir the
// pod's group may write (fsGroup, checked by checkConfined).
func checkWorkspaceVolume(t *testing.T, spec corev1.PodSpec, root string) {
	t.Helper()
	c := spec.Containers[0]
	if len(spec.Volumes) != 1 || spec.Volumes[0].EmptyDir == nil || len(c.VolumeMounts) != 1 ||
		c.VolumeMounts[0].Name != spec.Volumes[0].Name || c.VolumeMounts[0].MountPath != root || c.WorkingDir != root {
		t.Errorf("workspace volume: %+v, mounts %+v, working dir %s", spec.Volumes, c.VolumeMounts, c.WorkingDir)
	}
	if c.SecurityContext.ReadOnlyRootFilesystem == nil || *c.SecurityContext.ReadOnlyRootFilesystem {
		t.Errorf("the workspace container's root filesystem: %v", c.SecurityContext.ReadOnlyRootFilesystem)
	}
}

// checkNetworkPolicy checks a project's NetworkPolicy rule by rule.
func checkNetworkPolicy(t *testing.T, np *networkingv1.NetworkPolicy, project string, rdevPods map[string]string, rdevPorts []int32, ingressNS map[string]string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Errorf("network policy %s: "+format, append([]any{np.Name}, args...)...)
	}
	if np.Labels[cluster.LabelManagedBy] != "rdev" || np.Labels[cluster.LabelProject] != project {
		fail("labels %v", np.Labels)
	}
	s := np.Spec
	if !equalStrings(s.PodSelector.MatchLabels, map[string]string{cluster.LabelProject: project}) || len(s.PodSelector.MatchExpressions) != 0 {
		fail("pod selector %+v", s.PodSelector)
	}
	if !slices.Equal(s.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		fail("policy types %v", s.PolicyTypes)
	}
	// The project's own pods, review pods excepted.
	peer := func(p networkingv1.NetworkPolicyPeer) bool {
		return p.NamespaceSelector == nil && p.IPBlock == nil && p.PodSelector != nil &&
			equalStrings(p.PodSelector.MatchLabels, map[string]string{cluster.LabelProject: project}) &&
			len(p.PodSelector.MatchExpressions) == 1 && p.PodSelector.MatchExpressions[0].Key == kube.LabelTask &&
			p.PodSelector.MatchExpressions[0].Operator == metav1.LabelSelectorOpDoesNotExist
	}
	rdev := func(p networkingv1.NetworkPolicyPeer) bool {
		return p.NamespaceSelector == nil && p.IPBlock == nil && p.PodSelector != nil &&
			equalStrings(p.PodSelector.MatchLabels, rdevPods) && len(p.PodSelector.MatchExpressions) == 0
	}
	if len(s.Ingress) != 1 || len(s.Ingress[0].Ports) != 0 || len(s.Ingress[0].From) != 3 {
		fail("ingress %+v", s.Ingress)
	} else {
		from := s.Ingress[0].From
		if !rdev(from[0]) || from[1].PodSelector != nil || from[1].NamespaceSelector == nil ||
			!equalStrings(from[1].NamespaceSelector.MatchLabels, ingressNS) || !peer(from[2]) {
			fail("ingress from %+v", from)
		}
	}
	if len(s.Egress) != 3 {
		fail("egress %+v", s.Egress)
		return
	}
	dns := s.Egress[0]
	if len(dns.To) != 1 || dns.To[0].NamespaceSelector == nil || dns.To[0].PodSelector == nil ||
		!equalStrings(dns.To[0].NamespaceSelector.MatchLabels, map[string]string{"kubernetes.io/metadata.name": "kube-system"}) ||
		!equalStrings(dns.To[0].PodSelector.MatchLabels, map[string]string{"k8s-app": "kube-dns"}) || len(dns.Ports) != 2 ||
		*dns.Ports[0].Protocol != corev1.ProtocolUDP || dns.Ports[0].Port.IntValue() != 53 ||
		*dns.Ports[1].Protocol != corev1.ProtocolTCP || dns.Ports[1].Port.IntValue() != 53 {
		fail("egress to DNS %+v", dns)
	}
	toRdev := s.Egress[1]
	if len(toRdev.To) != 1 || !rdev(toRdev.To[0]) || len(toRdev.Ports) != len(rdevPorts) {
		fail("egress to rdev %+v", toRdev)
	} else {
		for i, p := range rdevPorts {
			if *toRdev.Ports[i].Protocol != corev1.ProtocolTCP || toRdev.Ports[i].Port.IntValue() != int(p) || toRdev.Ports[i].EndPort != nil {
				fail("egress to rdev, port %d: %+v", p, toRdev.Ports[i])
			}
		}
	}
	if own := s.Egress[2]; len(own.To) != 1 || !peer(own.To[0]) || len(own.Ports) != 0 {
		fail("egress to the project's pods %+v", own)
	}
}

func equalStrings(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
