package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// Node is a test node: a Node object whose kubelet endpoint is an HTTPS
// server in the test process. It binds every unscheduled pod to itself
// (standing in for the scheduler), runs each container's command as a
// local process — restarted when it exits, as restartPolicy Always does —
// reports Running/Ready and restart counts in the pods' status, and serves
// exec (what the API server proxies pods/exec to) with Kubernetes' own
// streaming server from k8s.io/cri-streaming, running the command as a
// local process in the container's working directory and environment.
//
// Images are not pulled: containers share this machine's filesystem and
// network (every pod's IP is 127.0.0.1).
type Node struct {
	Name string
	kc   kubernetes.Interface
	port int

	pods   corelisters.PodLister
	queue  workqueue.TypedRateLimitingInterface[string]
	mu     sync.Mutex
	local  map[string]*localPod // namespace/name → what runs
	stopCh chan struct{}
}

type localPod struct {
	uid        types.UID
	containers []*container
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

type container struct {
	spec corev1.Container
	mu   sync.Mutex
	// What the status reports.
	running      bool
	startedAt    time.Time
	restarts     int32
	lastExit     *int32
	lastFinished time.Time
	cmd          *exec.Cmd
}

// StartNode registers a node and serves it until the test ends.
func (cp *ControlPlane) StartNode(t testing.TB, name string) *Node {
	t.Helper()
	kc, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{Name: name, kc: kc, local: map[string]*localPod{}, stopCh: make(chan struct{}),
		queue: workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[string](20*time.Millisecond, time.Second))}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.port = l.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", n.serveExec)
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
			p.stop(0)
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
		lp.stop(0)
		n.mu.Lock()
		lp = nil
	}
	if lp == nil {
		lp = n.start(key, pod)
		n.local[key] = lp
	}
	n.mu.Unlock()
	return n.report(ctx, pod, lp)
}

// start runs the pod's containers, each under a supervisor that restarts
// it after it exits.
func (n *Node) start(key string, pod *corev1.Pod) *localPod {
	ctx, cancel := context.WithCancel(context.Background())
	lp := &localPod{uid: pod.UID, cancel: cancel}
	for _, spec := range pod.Spec.Containers {
		c := &container{spec: spec}
		lp.containers = append(lp.containers, c)
		lp.wg.Add(1)
		go func() {
			defer lp.wg.Done()
			c.supervise(ctx, pod.Spec.RestartPolicy, func() { n.queue.Add(key) })
		}()
	}
	return lp
}

func (c *container) supervise(ctx context.Context, policy corev1.RestartPolicy, changed func()) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		argv := append(append([]string{}, c.spec.Command...), c.spec.Args...)
		var code int32 = 128
		if len(argv) > 0 {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = containerEnv(c.spec)
			if c.spec.WorkingDir != "" {
				os.MkdirAll(c.spec.WorkingDir, 0o755)
				cmd.Dir = c.spec.WorkingDir
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err == nil {
				c.mu.Lock()
				c.running, c.startedAt, c.cmd = true, time.Now(), cmd
				c.mu.Unlock()
				changed()
				code = exitStatus(cmd.Wait(), cmd)
			}
		}
		c.mu.Lock()
		c.running, c.cmd, c.lastExit, c.lastFinished = false, nil, &code, time.Now()
		restart := ctx.Err() == nil && (policy == "" || policy == corev1.RestartPolicyAlways || (policy == corev1.RestartPolicyOnFailure && code != 0))
		if restart {
			c.restarts++
		}
		c.mu.Unlock()
		changed()
		if !restart {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// exitStatus is a process's exit code, 128+n when signal n ended it (as
// container runtimes report it).
func exitStatus(err error, cmd *exec.Cmd) int32 {
	if cmd.ProcessState == nil {
		return 128
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(cmd.ProcessState.ExitCode())
}

func containerEnv(spec corev1.Container) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOSTNAME=" + spec.Name}
	for _, e := range spec.Env {
		env = append(env, e.Name+"="+e.Value)
	}
	return env
}

// stop ends the pod's processes: SIGTERM, then SIGKILL after grace.
func (lp *localPod) stop(grace time.Duration) {
	lp.cancel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for _, c := range lp.containers {
			c.mu.Lock()
			if c.cmd != nil && c.cmd.Process != nil {
				syscall.Kill(-c.cmd.Process.Pid, sig)
			}
			c.mu.Unlock()
		}
		done := make(chan struct{})
		go func() { lp.wg.Wait(); close(done) }()
		select {
		case <-done:
			return
		case <-time.After(grace):
		}
	}
	lp.wg.Wait()
}

func (n *Node) stopLocal(key string, grace time.Duration) {
	n.mu.Lock()
	lp := n.local[key]
	delete(n.local, key)
	n.mu.Unlock()
	if lp != nil {
		lp.stop(grace)
	}
}

// report writes the pod's status from its processes.
func (n *Node) report(ctx context.Context, pod *corev1.Pod, lp *localPod) error {
	st := pod.Status.DeepCopy()
	st.Phase, st.HostIP, st.PodIP = corev1.PodRunning, "127.0.0.1", "127.0.0.1"
	st.HostIPs, st.PodIPs = []corev1.HostIP{{IP: "127.0.0.1"}}, []corev1.PodIP{{IP: "127.0.0.1"}}
	if st.StartTime == nil {
		now := metav1.Now()
		st.StartTime = &now
	}
	ready := true
	st.ContainerStatuses = nil
	for _, c := range lp.containers {
		c.mu.Lock()
		cs := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: "rdev-test://" + c.spec.Image,
			ContainerID: "rdev-test://" + string(pod.UID) + "/" + c.spec.Name, RestartCount: c.restarts, Ready: c.running}
		started := c.running
		cs.Started = &started
		switch {
		case c.running:
			cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.startedAt.Truncate(time.Second))}
		case c.lastExit != nil && c.restarts > 0:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off restarting failed container " + c.spec.Name}
		case c.lastExit != nil:
			cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: *c.lastExit, FinishedAt: metav1.NewTime(c.lastFinished.Truncate(time.Second))}
		default:
			cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
		}
		if c.lastExit != nil && c.restarts > 0 {
			cs.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: *c.lastExit,
				FinishedAt: metav1.NewTime(c.lastFinished.Truncate(time.Second)), Reason: "Error"}
		}
		ready = ready && c.running
		c.mu.Unlock()
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	now := metav1.Now()
	st.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: cond, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: cond, LastTransitionTime: now},
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

// sameStatus compares what report sets, ignoring condition times.
func sameStatus(a, b *corev1.PodStatus) bool {
	if a.Phase != b.Phase || a.PodIP != b.PodIP || len(a.ContainerStatuses) != len(b.ContainerStatuses) || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	for i := range a.Conditions {
		if a.Conditions[i].Type != b.Conditions[i].Type || a.Conditions[i].Status != b.Conditions[i].Status {
			return false
		}
	}
	for i := range a.ContainerStatuses {
		x, y := a.ContainerStatuses[i], b.ContainerStatuses[i]
		if x.Name != y.Name || x.Ready != y.Ready || x.RestartCount != y.RestartCount ||
			(x.State.Running == nil) != (y.State.Running == nil) || (x.State.Waiting == nil) != (y.State.Waiting == nil) ||
			(x.LastTerminationState.Terminated == nil) != (y.LastTerminationState.Terminated == nil) {
			return false
		}
		if x.LastTerminationState.Terminated != nil && x.LastTerminationState.Terminated.ExitCode != y.LastTerminationState.Terminated.ExitCode {
			return false
		}
	}
	return true
}

// serveExec is the kubelet's exec endpoint, /exec/<ns>/<pod>/<container>,
// served by the streaming code the kubelet itself uses.
func (n *Node) serveExec(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("ns") + "/" + r.PathValue("pod")
	n.mu.Lock()
	lp := n.local[key]
	n.mu.Unlock()
	var spec *corev1.Container
	if lp != nil {
		for _, c := range lp.containers {
			if c.spec.Name == r.PathValue("container") {
				spec = &c.spec
			}
		}
	}
	if spec == nil {
		http.Error(w, fmt.Sprintf("container %s of pod %s is not running on this node", r.PathValue("container"), key), http.StatusNotFound)
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, executor{spec: *spec}, key, "", spec.Name, r.URL.Query()["command"], opts,
		time.Hour, 30*time.Second, remotecommand.SupportedStreamingProtocols)
}

// executor runs exec'd commands as local processes of the container.
type executor struct{ spec corev1.Container }

func (e executor) ExecInContainer(ctx context.Context, _, _, _ string, argv []string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = containerEnv(e.spec)
	cmd.Dir = e.spec.WorkingDir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if out != nil {
		cmd.Stdout = out
	}
	if errw != nil {
		cmd.Stderr = errw
	}
	var stdin io.WriteCloser
	if in != nil {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return err
		}
	}
	if err := cmd.Start(); err != nil {
		return utilexec.CodeExitError{Err: err, Code: 126}
	}
	if stdin != nil {
		go func() { io.Copy(stdin, in); stdin.Close() }()
	}
	err := cmd.Wait()
	if code := exitStatus(err, cmd); code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", code), Code: int(code)}
	}
	return nil
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
