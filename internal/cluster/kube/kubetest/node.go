package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// Node is a test node: a Node object whose kubelet endpoint is an HTTPS
// server in the test process. It binds every unscheduled pod to itself
// (standing in for the scheduler) and runs each pod as the kubelet would,
// with local processes instead of containers:
//
//   - init containers one after the other, each to a successful exit
//     (restarted unless restartPolicy is Never, where a failure fails the
//     pod), then the containers, each restarted as its restartPolicy says;
//   - environment values and secretKeyRef references (read from the API
//     server, as the kubelet does); other sources make the container wait
//     with CreateContainerConfigError;
//   - emptyDir volumes (see holdVolumes); other kinds of volume are not made;
//   - each container's output (stdout and stderr merged, as the kubelet's
//     log API gives them) kept for /containerLogs, which pods/log reaches;
//   - activeDeadlineSeconds: past it the pod's processes are killed and the
//     pod fails with reason DeadlineExceeded;
//   - status as the kubelet reports it: phase (Pending, Running, Succeeded,
//     Failed), conditions, init and container statuses with restart counts,
//     exit codes (128+n for signal n) and reasons;
//   - exec (what the API server proxies pods/exec to) with Kubernetes' own
//     streaming server from k8s.io/cri-streaming.
//
// Images are not pulled and nothing is isolated: processes run as the
// test's user on this machine's filesystem and network (every pod's IP is
// 127.0.0.1); security contexts, resource limits and network policies are
// accepted by the API server but not enforced here.
type Node struct {
	Name string
	kc   kubernetes.Interface
	port int

	pods  corelisters.PodLister
	queue workqueue.TypedRateLimitingInterface[string]

	mu     sync.Mutex
	local  map[string]*localPod // namespace/name → what runs
	made   map[string]int       // emptyDir path the node made → pods holding it
	stopCh chan struct{}
}

// StartNode registers a node and serves it until the test ends.
func (cp *ControlPlane) StartNode(t testing.TB, name string) *Node {
	t.Helper()
	kc, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Name: name, kc: kc, local: map[string]*localPod{}, made: map[string]int{}, stopCh: make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, time.Second))}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.port = l.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", n.serveExec)
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{container}", n.serveLogs)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := &http.Server{Handler: mux, TLSConfig: &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}}
	go srv.ServeTLS(l, "", "")

	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}}}
	if _, err := kc.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := n.reportNode(ctx); err != nil {
		t.Fatal(err)
	}

	factory := informers.NewSharedInformerFactory(kc, 0)
	inf := factory.Core().V1().Pods()
	n.pods = inf.Lister()
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			n.queue.Add(key)
		}
	}
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue})
	factory.Start(n.stopCh)
	factory.WaitForCacheSync(n.stopCh)
	go n.work()
	t.Cleanup(func() {
		close(n.stopCh)
		n.queue.ShutDown()
		srv.Close()
		n.mu.Lock()
		pods := n.local
		n.local = map[string]*localPod{}
		n.mu.Unlock()
		for _, p := range pods {
			n.end(p, 0)
		}
		factory.Shutdown()
	})
	return n
}

// reportNode writes the node's status: Ready, loopback address, kubelet port.
func (n *Node) reportNode(ctx context.Context) error {
	node, err := n.kc.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	now := metav1.Now()
	capacity := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("500"),
		corev1.ResourceCPU: resource.MustParse("64"), corev1.ResourceMemory: resource.MustParse("256Gi")}
	node.Status = corev1.NodeStatus{
		Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(n.port)}},
		Capacity:        capacity, Allocatable: capacity,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: now, LastTransitionTime: now}},
		NodeInfo: corev1.NodeSystemInfo{KubeletVersion: "v1.37.2-rdev-test", OperatingSystem: "linux", Architecture: "amd64"},
	}
	_, err = n.kc.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	return err
}

func (n *Node) work() {
	for {
		key, quit := n.queue.Get()
		if quit {
			return
		}
		if err := n.sync(key); err != nil {
			n.queue.AddRateLimited(key)
		} else {
			n.queue.Forget(key)
		}
		n.queue.Done(key)
	}
}

// sync brings one pod to what the API server says: bound, running,
// reported, or stopped and removed.
func (n *Node) sync(key string) error {
	ctx := context.Background()
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := n.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		n.stopLocal(key, 0)
		return nil
	}
	if err != nil {
		return err
	}
	if pod.Spec.NodeName == "" {
		if pod.DeletionTimestamp != nil {
			return nil
		}
		err := n.kc.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: pod.UID},
			Target: corev1.ObjectReference{Kind: "Node", Name: n.Name}}, metav1.CreateOptions{})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Spec.NodeName != n.Name {
		return nil
	}
	if pod.DeletionTimestamp != nil {
		grace := time.Duration(0)
		if g := pod.DeletionGracePeriodSeconds; g != nil {
			grace = min(time.Duration(*g)*time.Second, 2*time.Second)
		}
		n.stopLocal(key, grace)
		zero := int64(0)
		err := n.kc.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
			Preconditions: &metav1.Preconditions{UID: &pod.UID}})
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	n.mu.Lock()
	lp := n.local[key]
	if lp != nil && lp.uid != pod.UID { // same name, new pod
		delete(n.local, key)
		n.mu.Unlock()
		n.end(lp, 0)
		n.mu.Lock()
		lp = nil
	}
	if lp == nil {
		lp = n.start(key, pod)
		n.local[key] = lp
	}
	n.mu.Unlock()
	if d := pod.Spec.ActiveDeadlineSeconds; d != nil && pod.Status.StartTime != nil {
		if left := time.Until(pod.Status.StartTime.Add(time.Duration(*d) * time.Second)); left > 0 {
			n.queue.AddAfter(key, left)
		} else if lp.expire() {
			lp.stop(0)
		}
	}
	return n.report(ctx, pod, lp)
}

func (n *Node) stopLocal(key string, grace time.Duration) {
	n.mu.Lock()
	lp := n.local[key]
	delete(n.local, key)
	n.mu.Unlock()
	if lp != nil {
		n.end(lp, grace)
	}
}

// end stops the pod's processes and releases its volumes.
func (n *Node) end(lp *localPod, grace time.Duration) {
	lp.stop(grace)
	n.mu.Lock()
	defer n.mu.Unlock()
	n.releaseVolumes(lp.volumes)
}

// holdVolumes makes the pod's emptyDir volumes. Containers here share the
// machine's filesystem, so a volume lives at its mount path: the node
// makes the directory (mode 0777, as the kubelet makes an emptyDir) when
// it is missing and removes it when the last pod mounting it ends. A path
// that already existed is used as it is and left in place; pods mounting
// the same path share it (a kubelet would give each pod its own).
// Called with n.mu held.
func (n *Node) holdVolumes(pod *corev1.Pod) []string {
	emptyDirs := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.EmptyDir != nil {
			emptyDirs[v.Name] = true
		}
	}
	var held []string
	seen := map[string]bool{}
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		for _, m := range c.VolumeMounts {
			p := filepath.Clean(m.MountPath)
			if !emptyDirs[m.Name] || seen[p] {
				continue
			}
			seen[p] = true
			if n.made[p] > 0 {
				n.made[p]++
				held = append(held, p)
				continue
			}
			if _, err := os.Lstat(p); !os.IsNotExist(err) {
				continue
			}
			if os.MkdirAll(p, 0o777) == nil && os.Chmod(p, 0o777) == nil {
				n.made[p] = 1
				held = append(held, p)
			}
		}
	}
	return held
}

// releaseVolumes removes the paths no other pod holds. Called with n.mu held.
func (n *Node) releaseVolumes(paths []string) {
	for _, p := range paths {
		if n.made[p]--; n.made[p] <= 0 {
			delete(n.made, p)
			os.RemoveAll(p)
		}
	}
}

// report writes the pod's status from its processes.
func (n *Node) report(ctx context.Context, pod *corev1.Pod, lp *localPod) error {
	st := pod.Status.DeepCopy()
	st.HostIP, st.PodIP = "127.0.0.1", "127.0.0.1"
	st.HostIPs, st.PodIPs = []corev1.HostIP{{IP: "127.0.0.1"}}, []corev1.PodIP{{IP: "127.0.0.1"}}
	if st.StartTime == nil {
		now := metav1.Now()
		st.StartTime = &now
	}
	lp.mu.Lock()
	initialized, initFailed, expired := lp.initialized, lp.initFailed, lp.expired
	lp.mu.Unlock()

	st.InitContainerStatuses = nil
	for _, c := range lp.inits {
		st.InitContainerStatuses = append(st.InitContainerStatuses, c.status(pod.UID, "PodInitializing"))
	}
	notStarted := "ContainerCreating"
	if !initialized {
		notStarted = "PodInitializing"
	}
	st.ContainerStatuses = nil
	ready, started, exited, failed := true, false, true, false
	for _, c := range lp.containers {
		cs := c.status(pod.UID, notStarted)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		ready = ready && cs.State.Running != nil
		started = started || cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil
		c.mu.Lock()
		exited = exited && c.exited
		failed = failed || (c.exited && *c.lastExit != 0)
		c.mu.Unlock()
	}
	st.Reason, st.Message = "", ""
	switch {
	case expired:
		st.Phase, st.Reason, st.Message = corev1.PodFailed, "DeadlineExceeded", "Pod was active on the node longer than the specified deadline"
	case initFailed:
		st.Phase = corev1.PodFailed
	case !initialized || !started:
		st.Phase = corev1.PodPending
	case exited && failed:
		st.Phase = corev1.PodFailed
	case exited:
		st.Phase = corev1.PodSucceeded
	default:
		st.Phase = corev1.PodRunning
	}
	ready = ready && st.Phase == corev1.PodRunning
	cond := func(b bool) corev1.ConditionStatus {
		if b {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	now := metav1.Now()
	st.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: cond(initialized), LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: cond(ready), LastTransitionTime: now},
		{Type: corev1.PodReady, Status: cond(ready), LastTransitionTime: now},
	}
	if sameStatus(&pod.Status, st) {
		return nil
	}
	up := pod.DeepCopy()
	up.Status = *st
	_, err := n.kc.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, up, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// sameStatus compares what report sets, ignoring times (the API server
// may normalize what it stores; comparing only these fields keeps an
// update from echoing forever).
func sameStatus(a, b *corev1.PodStatus) bool {
	if a.Phase != b.Phase || a.Reason != b.Reason || a.PodIP != b.PodIP || len(a.Conditions) != len(b.Conditions) ||
		!sameContainers(a.InitContainerStatuses, b.InitContainerStatuses) || !sameContainers(a.ContainerStatuses, b.ContainerStatuses) {
		return false
	}
	for i := range a.Conditions {
		if a.Conditions[i].Type != b.Conditions[i].Type || a.Conditions[i].Status != b.Conditions[i].Status {
			return false
		}
	}
	return true
}

func sameContainers(a, b []corev1.ContainerStatus) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.Name != y.Name || x.Ready != y.Ready || x.RestartCount != y.RestartCount || x.ContainerID != y.ContainerID ||
			!sameState(x.State, y.State) || !sameState(x.LastTerminationState, y.LastTerminationState) {
			return false
		}
	}
	return true
}

func sameState(a, b corev1.ContainerState) bool {
	switch {
	case a.Running != nil || b.Running != nil:
		return a.Running != nil && b.Running != nil
	case a.Terminated != nil || b.Terminated != nil:
		return a.Terminated != nil && b.Terminated != nil && a.Terminated.ExitCode == b.Terminated.ExitCode &&
			a.Terminated.Reason == b.Terminated.Reason
	case a.Waiting != nil || b.Waiting != nil:
		return a.Waiting != nil && b.Waiting != nil && a.Waiting.Reason == b.Waiting.Reason && a.Waiting.Message == b.Waiting.Message
	}
	return true
}

func selfSigned(t testing.TB) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rdev-test-node"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// Kubeconfig writes a kubeconfig file for the admin token and returns its path.
func (cp *ControlPlane) Kubeconfig(t testing.TB) string {
	p := filepath.Join(cp.dir, "admin.kubeconfig")
	write(t, p, []byte(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "`+cp.URL+`", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: "`+cp.Token+`"}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`))
	return p
}

// StartControllers runs kube-controller-manager with the controllers that
// turn Deployments into pods and clean up after them.
func (cp *ControlPlane) StartControllers(t testing.TB) {
	t.Helper()
	bin := filepath.Join(BinDir(), "kube-controller-manager")
	if _, err := os.Stat(bin); err != nil {
		need(t, "kube-controller-manager")
	}
	run(t, cp.dir, "kube-controller-manager", bin, "--kubeconfig", cp.Kubeconfig(t),
		"--controllers", "deployment-controller,replicaset-controller,garbage-collector-controller,serviceaccount-controller",
		"--leader-elect=false", "--secure-port", "0", "--bind-address", "127.0.0.1",
		"--concurrent-deployment-syncs", "10", "--concurrent-replicaset-syncs", "10")
}

// StartCluster is a control plane with controllers and one test node.
func StartCluster(t testing.TB) (*ControlPlane, *Node) {
	cp := Start(t)
	cp.StartControllers(t)
	return cp, cp.StartNode(t, "rdev-test-node-"+strconv.Itoa(os.Getpid()))
}
