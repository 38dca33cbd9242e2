package kube

import (
	"errors"
	"fmt"
	"math"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"

	"rdev.dev/rdev/internal/rdev"
)

// DefaultUser is the uid and gid project pods run as unless Pods.User
// says otherwise.
const DefaultUser int64 = 10001

// DefaultLimits bound a project pod when neither the project nor
// Pods.Limits says otherwise.
var DefaultLimits = rdev.Limits{Memory: "2GiB", CPU: 1}

// Pods is how every pod rdev makes for a project runs — its dev pod, its
// components' pods, its review pods — since what runs in them is the
// project's code, which rdev does not trust.
type Pods struct {
	// User is the uid and gid of every container, and the group owning
	// the pods' volumes (fsGroup), so that the workspace volume is
	// writable; never 0 (DefaultUser when 0).
	User int64
	// Limits stand in for the fields a project leaves at zero (each field
	// of DefaultLimits when zero here too). PIDs is not used: Kubernetes
	// bounds processes per node (the kubelet's podPidsLimit), not per pod.
	Limits rdev.Limits
	// EgressProxy returns the proxy URL, with the pod's credentials, that
	// the project's pods (taskID empty) or a review pod are given as
	// HTTP_PROXY, HTTPS_PROXY and ALL_PROXY: rdev's egress proxy, which
	// applies the project's egress policy (the NetworkPolicy lets them
	// reach nothing else). Nil: no proxy variables.
	EgressProxy func(projectID, taskID string) string
}

// proxyEnv is the environment pointing a project's container at rdev's
// egress proxy, in both the upper and lower case spellings (curl reads
// only http_proxy in lower case). NO_PROXY keeps loopback, the cluster's
// own domains and the names in direct (the project's Services, which only
// its own pods may reach: see networkPolicy) out of the proxy.
func (p Pods) proxyEnv(projectID, taskID string, direct ...string) []corev1.EnvVar {
	if p.EgressProxy == nil {
		return nil
	}
	url := p.EgressProxy(projectID, taskID)
	var env []corev1.EnvVar
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"} {
		env = append(env, corev1.EnvVar{Name: k, Value: url}, corev1.EnvVar{Name: strings.ToLower(k), Value: url})
	}
	noProxy := strings.Join(append([]string{"localhost", "127.0.0.1", "::1", ".svc", ".cluster.local"}, direct...), ",")
	return append(env, corev1.EnvVar{Name: "NO_PROXY", Value: noProxy}, corev1.EnvVar{Name: "no_proxy", Value: noProxy})
}

func (p Pods) validate() error {
	if p.User < 0 {
		return fmt.Errorf("kube: pod user %d: must be a non-root uid (0 for %d)", p.User, DefaultUser)
	}
	if _, err := rdev.ParseMemory(p.Limits.Memory); err != nil {
		return fmt.Errorf("kube: default memory limit: %w", err)
	}
	if p.Limits.CPU < 0 || math.IsNaN(p.Limits.CPU) || math.IsInf(p.Limits.CPU, 0) {
		return errors.New("kube: the default CPU limit must be a positive number of CPUs")
	}
	return nil
}

func (p Pods) user() int64 {
	if p.User > 0 {
		return p.User
	}
	return DefaultUser
}

// resources are the requests and limits of each container of a project's
// pod: the project's limits, else the defaults. Requests equal limits: the
// scheduler reserves what the pod may use, so a project can neither
// overcommit a node nor be evicted before pods that exceed their requests
// (the Guaranteed QoS class).
func (p Pods) resources(l rdev.Limits) corev1.ResourceRequirements {
	mem := l.MemoryBytes()
	if mem == 0 {
		mem = p.Limits.MemoryBytes()
	}
	if mem == 0 {
		mem = DefaultLimits.MemoryBytes()
	}
	cpu := l.CPU
	if cpu == 0 {
		cpu = p.Limits.CPU
	}
	if cpu == 0 {
		cpu = DefaultLimits.CPU
	}
	list := corev1.ResourceList{
		corev1.ResourceMemory: *apiresource.NewQuantity(mem, apiresource.BinarySI),
		corev1.ResourceCPU:    *apiresource.NewMilliQuantity(int64(math.Ceil(cpu*1000)), apiresource.DecimalSI),
	}
	return corev1.ResourceRequirements{Limits: list, Requests: list.DeepCopy()}
}

// secure sets what every project pod runs with: no service account token,
// no service environment variables (the addresses of every Service in the
// namespace), a fixed non-root user, the runtime's default seccomp
// profile; in each container no privilege escalation, no capabilities, and
// the project's resource limits. Root filesystems stay writable (the
// user owns nothing of the image, so that is /tmp and the like), except
// where a caller makes one read-only (readOnlyCode).
func (p Pods) secure(spec *corev1.PodSpec, limits rdev.Limits) {
	no, yes, uid := false, true, p.user()
	spec.AutomountServiceAccountToken = &no
	spec.EnableServiceLinks = &no
	spec.SecurityContext = &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, FSGroup: &uid,
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	res := p.resources(limits)
	for _, cs := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range cs {
			readOnly := false
			cs[i].Resources = *res.DeepCopy()
			cs[i].SecurityContext = &corev1.SecurityContext{AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &readOnly,
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}}
		}
	}
}

// scratchDirs are the directories a component whose image is read-only
// still may write, each an emptyDir of its own pod.
var scratchDirs = []string{"/tmp", "/var/tmp"}

// readOnlyCode makes the root filesystem of a component's container
// read-only — its image is its code, which a component changes only when
// the project declares it writable — with an emptyDir at each of
// scratchDirs for the temporary files that tools write.
func readOnlyCode(spec *corev1.PodSpec) {
	yes := true
	for i, dir := range scratchDirs {
		name := fmt.Sprintf("scratch-%d", i)
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		for j := range spec.Containers {
			spec.Containers[j].VolumeMounts = append(spec.Containers[j].VolumeMounts, corev1.VolumeMount{Name: name, MountPath: dir})
		}
	}
	for j := range spec.Containers {
		spec.Containers[j].SecurityContext.ReadOnlyRootFilesystem = &yes
	}
}
