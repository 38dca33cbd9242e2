package kube_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/cluster/kube/kubetest"
	"rdev.dev/rdev/internal/loop"
)

// callCounter counts the API calls through a client, by verb.
type callCounter struct {
	rt                    http.RoundTripper
	lists, deletes, other atomic.Int64
}

func (c *callCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodGet:
		c.lists.Add(1)
	case r.Method == http.MethodDelete:
		c.deletes.Add(1)
	default:
		c.other.Add(1)
	}
	return c.rt.RoundTrip(r)
}

// BenchmarkGC is P6: one GC pass over objects of many projects, half of
// them deleted, on the real API server — wall time, and the API calls a
// counting transport saw. "sequential" (one deletion at a time) is the
// baseline of the same run. RDEV_BENCH_SMALL=1 makes it 1,000 objects.
func BenchmarkGC(b *testing.B) {
	projects := 1000
	if os.Getenv("RDEV_BENCH_SMALL") != "" {
		projects = 100
	}
	cp := kubetest.Start(b)
	admin, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	kubetest.Namespace(b, admin, ns)
	var live []string
	for p := 0; p < projects; p += 2 {
		live = append(live, fmt.Sprintf("p%04d", p))
	}
	// dry-run: the lists and the decisions alone, no deletion, with the
	// wire format rdev uses (protobuf) and JSON; then the whole pass, with
	// one deletion at a time (the baseline) and with more at once.
	for _, v := range []struct {
		name    string
		workers int
		wire    string
	}{
		{"dry-run/protobuf", 0, "protobuf"}, {"dry-run/json", 0, "json"},
		{"sequential", 1, "protobuf"}, {fmt.Sprintf("concurrency-%d", loop.DefaultGCConcurrency), loop.DefaultGCConcurrency, "protobuf"},
		{"concurrency-64", 64, "protobuf"},
	} {
		name, workers, wire := v.name, v.workers, v.wire
		b.Run(name, func(b *testing.B) {
			var lists, deletes, other, seen, deleted int64
			for range b.N {
				b.StopTimer()
				fill(b, admin, projects)
				cc := &callCounter{}
				cfg := kube.TuneClient(cp.Config, 1000)
				if wire == "json" {
					cfg = rest.CopyConfig(cp.Config)
				}
				cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { cc.rt = rt; return cc }
				kc, err := kubernetes.NewForConfig(cfg)
				if err != nil {
					b.Fatal(err)
				}
				gc := &loop.ResourceGC{Cluster: &kube.Resources{Client: kc, Namespace: ns}, Projects: projectIDs(live),
					Now: func() time.Time { return time.Now().Add(2 * time.Hour) }, Concurrency: workers, DryRun: workers == 0,
					Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
				b.StartTimer()
				st, err := gc.RunOnce(ctx)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				want := projects * 10
				if workers == 0 && (st.Seen != want || st.Orphans != want/2 || st.Deleted != 0) {
					b.Fatalf("dry run: %+v, want %d seen and %d orphans", st, want, want/2)
				}
				if workers > 0 && (st.Seen != want || st.Deleted != want/2) {
					b.Fatalf("seen %d deleted %d, want %d and %d", st.Seen, st.Deleted, want, want/2)
				}
				lists, deletes, other = lists+cc.lists.Load(), deletes+cc.deletes.Load(), other+cc.other.Load()
				seen, deleted = seen+int64(st.Seen), deleted+int64(st.Deleted)
				// What is left is live: clear it for the next round.
				if err := (&kube.Resources{Client: admin, Namespace: ns}).DeleteSelected(ctx, cluster.Labels{cluster.LabelManagedBy: cluster.ManagedBy}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			n := float64(b.N)
			b.ReportMetric(float64(seen)/n, "objects/op")
			b.ReportMetric(float64(deleted)/n, "deleted/op")
			b.ReportMetric(float64(lists)/n, "lists/op")
			b.ReportMetric(float64(deletes)/n, "deletes/op")
			b.ReportMetric(float64(other)/n, "other-calls/op")
		})
	}
}

// fill makes ten labelled objects per project: two each of Secret,
// Service, Deployment, Pod and Ingress.
func fill(b *testing.B, kc kubernetes.Interface, projects int) {
	ctx := context.Background()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range jobs {
				id := fmt.Sprintf("p%04d", p)
				for i := range 2 {
					name := fmt.Sprintf("rdev-%s-%d", id, i)
					labels := map[string]string(cluster.ProjectLabels(id).With(cluster.LabelComponent, fmt.Sprint("c", i)))
					meta := metav1.ObjectMeta{Name: name, Labels: labels}
					one := int32(1)
					pod := corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}
					for _, err := range []error{
						second(kc.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: meta}, metav1.CreateOptions{})),
						second(kc.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: meta, Spec: corev1.ServiceSpec{ClusterIP: "None",
							Selector: labels, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{})),
						second(kc.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: &one,
							Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: pod}}},
							metav1.CreateOptions{})),
						second(kc.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: meta, Spec: pod}, metav1.CreateOptions{})),
						second(kc.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{ObjectMeta: meta, Spec: networkingv1.IngressSpec{
							DefaultBackend: &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: name,
								Port: networkingv1.ServiceBackendPort{Number: 80}}}}}, metav1.CreateOptions{})),
					} {
						if err != nil {
							failed.Store(err)
						}
					}
				}
			}
		}()
	}
	for p := range projects {
		jobs <- p
	}
	close(jobs)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
}

func second[T any](_ T, err error) error { return err }
