package kube

import (
	"errors"
	"fmt"
	"math"

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
// where a caller makes one read-only.
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
