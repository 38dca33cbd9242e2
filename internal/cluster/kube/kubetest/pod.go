package kubetest

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// localPod is what runs of one pod: its init containers one after the
// other, then its containers.
type localPod struct {
	uid        types.UID
	inits      []*container
	containers []*container
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	volumes    []string // emptyDir paths the node made that this pod holds

	mu          sync.Mutex
	initialized bool // every init container exited 0
	initFailed  bool // one failed, and restartPolicy Never keeps it so
	expired     bool // activeDeadlineSeconds passed
}

// container is one container's local process, run after run.
type container struct {
	spec corev1.Container

	mu           sync.Mutex
	running      bool
	startedAt    time.Time
	restarts     int32
	runs         int
	lastExit     *int32
	lastStarted  time.Time
	lastFinished time.Time
	exited       bool   // it will not run again
	waiting      string // why it cannot start (CreateContainerConfigError), with message
	message      string
	env          []string   // the environment of its last start, exec's too
	log          *logBuffer // the output of its last run; nil before the first
	cmd          *exec.Cmd  // while running
}

// start runs the pod: its init containers in order, each to a successful
// exit, then its containers side by side. Called with n.mu held.
func (n *Node) start(key string, pod *corev1.Pod) *localPod {
	ctx, cancel := context.WithCancel(context.Background())
	lp := &localPod{uid: pod.UID, cancel: cancel, volumes: n.holdVolumes(pod)}
	for _, s := range pod.Spec.InitContainers {
		lp.inits = append(lp.inits, &container{spec: s})
	}
	for _, s := range pod.Spec.Containers {
		lp.containers = append(lp.containers, &container{spec: s})
	}
	changed := func() { n.queue.Add(key) }
	env := func(c corev1.Container) ([]string, error) { return n.containerEnv(ctx, pod.Namespace, c) }
	policy := pod.Spec.RestartPolicy
	lp.wg.Add(1)
	go func() {
		defer lp.wg.Done()
		for _, c := range lp.inits {
			if !c.runInit(ctx, policy, env, changed) {
				if ctx.Err() == nil {
					lp.mu.Lock()
					lp.initFailed = true
					lp.mu.Unlock()
					changed()
				}
				return
			}
		}
		lp.mu.Lock()
		lp.initialized = true
		lp.mu.Unlock()
		changed()
		for _, c := range lp.containers {
			lp.wg.Add(1)
			go func() {
				defer lp.wg.Done()
				c.supervise(ctx, policy, env, changed)
			}()
		}
	}()
	return lp
}

// containerEnv is a container's environment: PATH and HOSTNAME as a
// runtime sets them, its values, and secretKeyRef values read from the API
// server. Other sources are refused.
func (n *Node) containerEnv(ctx context.Context, namespace string, spec corev1.Container) ([]string, error) {
	if len(spec.EnvFrom) > 0 {
		return nil, fmt.Errorf("envFrom is not supported by the test node")
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOSTNAME=" + spec.Name}
	for _, e := range spec.Env {
		v := e.Value
		if f := e.ValueFrom; f != nil {
			ref := f.SecretKeyRef
			if ref == nil {
				return nil, fmt.Errorf("env %s: only secretKeyRef is supported by the test node", e.Name)
			}
			optional := ref.Optional != nil && *ref.Optional
			s, err := n.kc.CoreV1().Secrets(namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) && optional {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("secret %q: %w", ref.Name, err)
			}
			b, ok := s.Data[ref.Key]
			if !ok {
				if optional {
					continue
				}
				return nil, fmt.Errorf("couldn't find key %s in Secret %s/%s", ref.Key, namespace, ref.Name)
			}
			v = string(b)
		}
		env = append(env, e.Name+"="+v)
	}
	return env, nil
}

// run starts the container's command once and waits for it to exit; its
// output (stdout and stderr on one pipe, in order) goes to a fresh log.
// ran is false when it could not be started for a reason a kubelet would
// report as waiting (the environment could not be made).
func (c *container) run(ctx context.Context, env func(corev1.Container) ([]string, error), changed func()) (code int32, ran bool) {
	vars, err := env(c.spec)
	if err != nil {
		c.mu.Lock()
		c.waiting, c.message = "CreateContainerConfigError", err.Error()
		c.mu.Unlock()
		changed()
		return 0, false
	}
	log := newLogBuffer()
	c.mu.Lock()
	c.waiting, c.message, c.env, c.log = "", "", vars, log
	c.runs++
	c.mu.Unlock()
	argv := append(append([]string{}, c.spec.Command...), c.spec.Args...)
	if len(argv) == 0 {
		// No image entrypoint to fall back on: a runtime's failure to start.
		fmt.Fprintf(log, "the test node runs only a container's command, and %s has none\n", c.spec.Name)
		log.close()
		return 128, true
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = vars
	if wd := c.spec.WorkingDir; wd != "" {
		os.MkdirAll(wd, 0o755)
		cmd.Dir = wd
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	r, w, err := os.Pipe()
	if err != nil {
		log.close()
		return 128, true
	}
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		r.Close()
		fmt.Fprintf(log, "start %s: %v\n", argv[0], err)
		log.close()
		return 128, true
	}
	copied := make(chan struct{})
	go func() { io.Copy(log, r); close(copied) }()
	c.mu.Lock()
	c.running, c.startedAt, c.cmd = true, time.Now(), cmd
	if ctx.Err() != nil { // stopped while starting: stop saw no process to kill
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	c.mu.Unlock()
	changed()
	cmd.Wait()
	code = exitStatus(cmd)
	// The container's other processes end with its main one, as they do
	// when a container's PID namespace goes.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-copied:
	case <-time.After(2 * time.Second): // something left the process group holding the pipe
		r.Close()
		<-copied
	}
	r.Close()
	log.close()
	c.mu.Lock()
	c.running, c.cmd, c.lastExit, c.lastStarted, c.lastFinished = false, nil, &code, c.startedAt, time.Now()
	c.mu.Unlock()
	return code, true
}

// supervise runs a container for as long as its restartPolicy says.
func (c *container) supervise(ctx context.Context, policy corev1.RestartPolicy, env func(corev1.Container) ([]string, error), changed func()) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		code, ran := c.run(ctx, env, changed)
		if ran {
			c.mu.Lock()
			restart := ctx.Err() == nil && (policy == "" || policy == corev1.RestartPolicyAlways || (policy == corev1.RestartPolicyOnFailure && code != 0))
			if restart {
				c.restarts++
			} else {
				c.exited = ctx.Err() == nil
			}
			c.mu.Unlock()
			changed()
			if !restart {
				return
			}
		}
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(backoff*2, time.Second)
	}
}

// runInit runs an init container until it exits 0 (true), restarting it
// unless restartPolicy is Never (false after one failure).
func (c *container) runInit(ctx context.Context, policy corev1.RestartPolicy, env func(corev1.Container) ([]string, error), changed func()) bool {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		code, ran := c.run(ctx, env, changed)
		if ran {
			ok := code == 0 && ctx.Err() == nil
			c.mu.Lock()
			if !ok && ctx.Err() == nil && policy != corev1.RestartPolicyNever {
				c.restarts++
			}
			c.mu.Unlock()
			changed()
			if ok || policy == corev1.RestartPolicyNever {
				return ok
			}
		}
		if !sleep(ctx, backoff) {
			return false
		}
		backoff = min(backoff*2, time.Second)
	}
	return false
}

func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// exitStatus is a process's exit code, 128+n when signal n ended it (as
// container runtimes report it).
func exitStatus(cmd *exec.Cmd) int32 {
	if cmd.ProcessState == nil {
		return 128
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int32(ws.Signal())
	}
	return int32(cmd.ProcessState.ExitCode())
}

// status is the container's status as the kubelet reports it; notStarted
// is the waiting reason before its first start.
func (c *container) status(pod types.UID, notStarted string) corev1.ContainerStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := "rdev-test://" + string(pod) + "/" + c.spec.Name + "/" + strconv.Itoa(c.runs)
	cs := corev1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: "rdev-test://" + c.spec.Image,
		RestartCount: c.restarts, Ready: c.running}
	started := c.running
	cs.Started = &started
	var last *corev1.ContainerStateTerminated
	if c.lastExit != nil {
		reason := "Completed"
		if *c.lastExit != 0 {
			reason = "Error"
		}
		last = &corev1.ContainerStateTerminated{ExitCode: *c.lastExit, Reason: reason,
			StartedAt: metav1.NewTime(c.lastStarted.Truncate(time.Second)), FinishedAt: metav1.NewTime(c.lastFinished.Truncate(time.Second))}
	}
	switch {
	case c.running:
		cs.ContainerID = id
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.startedAt.Truncate(time.Second))}
	case c.waiting != "":
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: c.waiting, Message: c.message}
	case last != nil && c.restarts > 0 && !c.exited:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off restarting failed container " + c.spec.Name}
	case last != nil:
		cs.ContainerID = id
		last.ContainerID = id
		cs.State.Terminated = last
		last = nil
	default:
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: notStarted}
	}
	if last != nil && c.restarts > 0 {
		cs.LastTerminationState.Terminated = last
	}
	return cs
}

// expire marks the pod as past its deadline; true the first time.
func (lp *localPod) expire() bool {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	was := lp.expired
	lp.expired = true
	return !was
}

// stop ends the pod's processes: SIGTERM, then SIGKILL after grace.
func (lp *localPod) stop(grace time.Duration) {
	lp.cancel()
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		for _, c := range append(append([]*container{}, lp.inits...), lp.containers...) {
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

// container finds a container or init container by name.
func (lp *localPod) container(name string) *container {
	for _, c := range append(append([]*container{}, lp.inits...), lp.containers...) {
		if c.spec.Name == name {
			return c
		}
	}
	return nil
}
