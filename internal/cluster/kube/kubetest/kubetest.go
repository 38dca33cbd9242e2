// Package kubetest runs a real Kubernetes control plane for tests, with no
// containers: kine (the etcd API on SQLite) and kube-apiserver, both built
// from the tools/kube module, on free loopback ports with a bearer token.
// Tests talk to it through client-go exactly as rdev does to a cluster.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// BinDir is where kube-apiserver and kine are looked for: $RDEV_KUBE_BIN,
// else tools/kube/bin of this repository.
func BinDir() string {
	if d := os.Getenv("RDEV_KUBE_BIN"); d != "" {
		return d
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "..", "tools", "kube", "bin")
}

// ControlPlane is a running kube-apiserver over kine.
type ControlPlane struct {
	Config *rest.Config // admin: member of system:masters
	URL    string
	Token  string
	// LimitedToken authenticates user "rdev-test-limited" (group
	// "rdev-test"), who may do only what RBAC objects grant.
	LimitedToken string
	dir          string
}

// ConfigFor is Config with another bearer token.
func (cp *ControlPlane) ConfigFor(token string) *rest.Config {
	c := rest.CopyConfig(cp.Config)
	c.BearerToken = token
	return c
}

// Start runs a control plane for the test and stops it at the end. Without
// the binaries it skips — or fails under CI=true, where .ci/run builds them.
func Start(t testing.TB) *ControlPlane {
	t.Helper()
	bin := BinDir()
	for _, b := range []string{"kube-apiserver", "kine"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			need(t, b)
		}
	}
	dir := t.TempDir()
	cp := &ControlPlane{dir: dir, Token: randomHex(16), LimitedToken: randomHex(16)}
	etcdPort, apiPort := freePort(t), freePort(t)
	if etcd, err := exec.LookPath("etcd"); err == nil && os.Getenv("RDEV_KUBE_STORAGE") != "kine" {
		// Debian's etcd-server, where installed: the storage clusters use.
		peer := freePort(t)
		run(t, dir, "etcd", etcd, "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", "http://127.0.0.1:"+etcdPort,
			"--advertise-client-urls", "http://127.0.0.1:"+etcdPort, "--listen-peer-urls", "http://127.0.0.1:"+peer,
			"--initial-advertise-peer-urls", "http://127.0.0.1:"+peer, "--initial-cluster", "default=http://127.0.0.1:"+peer,
			"--listen-metrics-urls", "", "--log-level", "warn")
	} else {
		run(t, dir, "kine", filepath.Join(bin, "kine"), "--listen-address", "127.0.0.1:"+etcdPort, "--metrics-bind-address", "0",
			"--endpoint", "sqlite://"+filepath.Join(dir, "kine.db")+"?_journal=WAL&cache=shared")
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	write(t, filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	write(t, filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	write(t, filepath.Join(dir, "tokens.csv"), []byte(cp.Token+",rdev-test-admin,rdev-test-admin,system:masters\n"+
		cp.LimitedToken+",rdev-test-limited,rdev-test-limited,rdev-test\n"))
	run(t, dir, "kube-apiserver", filepath.Join(bin, "kube-apiserver"),
		"--etcd-servers", "http://127.0.0.1:"+etcdPort,
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1", "--secure-port", apiPort,
		// A loopback advertise address: no endpoint reconciling for the
		// kubernetes service.
		"--endpoint-reconciler-type", "none",
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"--authorization-mode", "RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", filepath.Join(dir, "sa.pub"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/16",
		"--cert-dir", filepath.Join(dir, "certs"))
	cp.URL = "https://127.0.0.1:" + apiPort
	cp.Config = &rest.Config{Host: cp.URL, BearerToken: cp.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS: 1000, Burst: 2000}
	cp.waitReady(t)
	return cp
}

func (cp *ControlPlane) waitReady(t testing.TB) {
	t.Helper()
	hc, err := rest.HTTPClientFor(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, "GET", cp.URL+"/readyz", nil)
		resp, err := hc.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(cp.dir, "kube-apiserver.log"))
			t.Fatalf("kube-apiserver not ready within 90 s (last: %v)\n%s", err, tail(log, 4000))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run starts a program in the background, logging to dir/<name>.log, and
// stops it when the test ends.
func run(t testing.TB, dir, name, path string, args ...string) {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, args...)
	cmd.Stdout, cmd.Stderr, cmd.Dir = logf, logf, dir
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		logf.Close()
	})
}

// need skips the test for a program not built — or fails it under
// CI=true, where .ci/run builds them all.
func need(t testing.TB, program string) {
	t.Helper()
	msg := fmt.Sprintf("%s not built in %s: cd tools/kube && go build -o bin/ ./... (see tools/kube/README.md)", program, BinDir())
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func freePort(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

func write(t testing.TB, path string, b []byte) {
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Namespace makes namespace name with its "default" service account, which
// pods need to be admitted (the service-account controller makes it too,
// where it runs; whichever is first).
func Namespace(t testing.TB, kc kubernetes.Interface, name string) {
	t.Helper()
	ctx := context.Background()
	if _, err := kc.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := kc.CoreV1().ServiceAccounts(name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
