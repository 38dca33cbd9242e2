package kube_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/cluster/clustertest"
	"rdev.dev/rdev/internal/cluster/kube"
	"rdev.dev/rdev/internal/cluster/kube/kubetest"
	"rdev.dev/rdev/internal/rdev"
)

// The conformance suite on a real API server, with controllers turning
// Deployments into pods and a test node running them and serving exec:
// every workspace is cloned and every command run through pods/exec.
func TestConformance(t *testing.T) {
	cp, _ := kubetest.StartCluster(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	must(t, err)
	var n atomic.Int32
	clustertest.Run(t, func(t *testing.T) clustertest.Env {
		name := fmt.Sprintf("conf-%d", n.Add(1))
		kubetest.Namespace(t, kc, name)
		// rdev works with the rights deploy/kubernetes/rbac.yaml gives it,
		// and no more: the limited user holds exactly that Role here.
		bindManifestRole(t, kc, name)
		limited := cp.ConfigFor(cp.LimitedToken)
		lc, err := kubernetes.NewForConfig(limited)
		must(t, err)
		repos := t.TempDir()
		git := gitServer(t, repos, "tok")
		c, err := kube.New(kube.Config{Client: lc, REST: limited, Namespace: name, WorkspaceRoot: t.TempDir(),
			Images:   kube.Images{Component: "rdev-test/component", Workspace: "rdev-test/workspace"},
			Previews: kube.Previews{Mode: kube.PreviewIngress, Domain: "preview.test", ForwardAuthURL: "http://rdev.test/api/v1/preview-auth"},
			Log:      slog.New(slog.NewTextHandler(io.Discard, nil))})
		must(t, err)
		return clustertest.Env{Cluster: c,
			CloneURL: func(id string) string { return git + "/" + id + ".git" },
			NewProject: func(t *testing.T, id string, comps ...rdev.Component) *rdev.Project {
				newRepo(t, filepath.Join(repos, id+".git"))
				p := &rdev.Project{ID: id, Name: id, DefaultBranch: "main", Components: comps}
				p.Normalize()
				return p
			}}
	})
}

// bindManifestRole creates the Role of deploy/kubernetes/rbac.yaml in
// namespace and binds it to the control plane's limited user.
func bindManifestRole(t *testing.T, kc kubernetes.Interface, namespace string) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", "kubernetes", "rbac.yaml"))
	must(t, err)
	var role *rbacv1.Role
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var r rbacv1.Role
		must(t, yaml.Unmarshal([]byte(doc), &r))
		if r.Kind == "Role" {
			role = &r
		}
	}
	if role == nil || len(role.Rules) == 0 {
		t.Fatal("no Role in deploy/kubernetes/rbac.yaml")
	}
	ctx := context.Background()
	role.Namespace, role.ResourceVersion = namespace, ""
	_, err = kc.RbacV1().Roles(namespace).Create(ctx, role, metav1.CreateOptions{})
	must(t, err)
	_, err = kc.RbacV1().RoleBindings(namespace).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "rdev-test", Namespace: namespace},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "rdev-test"}}}, metav1.CreateOptions{})
	must(t, err)
}

// kubeWithRepo starts a cluster with a test node and namespace ns, and
// serves a repository of project id over HTTP to clients with token.
func kubeWithRepo(t *testing.T, id, token string) (*kubetest.ControlPlane, kubernetes.Interface, string) {
	cp, _ := kubetest.StartCluster(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	must(t, err)
	kubetest.Namespace(t, kc, ns)
	repos := t.TempDir()
	newRepo(t, filepath.Join(repos, id+".git"))
	return cp, kc, gitServer(t, repos, token) + "/" + id + ".git"
}

// gitServer serves the bare repositories under root over git's smart HTTP
// protocol (git http-backend), to clients whose password is token.
func gitServer(t *testing.T, root, token string) string {
	gitPath, err := exec.LookPath("git")
	must(t, err)
	backend := &cgi.Handler{Path: gitPath, Args: []string{"http-backend"},
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pass, ok := r.BasicAuth(); !ok || pass != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="rdev"`)
			http.Error(w, "a checkout token is required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// newRepo makes a bare repository with a commit on main and a branch
// "feature" that adds feature.txt.
func newRepo(t *testing.T, bare string) {
	src := t.TempDir()
	git(t, src, "init", "-q", "-b", "main")
	must(t, os.WriteFile(filepath.Join(src, "README"), []byte("hi\n"), 0o644))
	git(t, src, "add", ".")
	git(t, src, "commit", "-q", "-m", "first")
	git(t, src, "checkout", "-q", "-b", "feature")
	must(t, os.WriteFile(filepath.Join(src, "feature.txt"), []byte("feature\n"), 0o644))
	git(t, src, "add", ".")
	git(t, src, "commit", "-q", "-m", "feature")
	git(t, src, "checkout", "-q", "main")
	git(t, "", "clone", "-q", "--bare", src, bare)
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@e",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@e", "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=gc.auto", "GIT_CONFIG_VALUE_0=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// Exec through pods/exec: stdin, exit codes, signals, refused working
// directories and programs; the token stays out of the repository config.
func TestExecThroughTheAPIServer(t *testing.T) {
	cp, kc, url := kubeWithRepo(t, "app", "s3cret-token")
	c, err := kube.New(kube.Config{Client: kc, REST: cp.Config, Namespace: ns, WorkspaceRoot: t.TempDir(),
		Images: kube.Images{Component: "c", Workspace: "w"}, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must(t, err)
	ctx := context.Background()
	p := &rdev.Project{ID: "app", Name: "app", DefaultBranch: "main"}
	p.Normalize()
	must(t, c.Deploy(ctx, p))
	if _, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "app", SessionID: "s1", Branch: "feature",
		CloneURL: url, Token: "wrong"}); err == nil || !strings.Contains(err.Error(), "check out feature") {
		t.Fatalf("a wrong token cloned: %v", err)
	}
	ws, err := c.PrepareWorkspace(ctx, cluster.WorkspaceSpec{ProjectID: "app", SessionID: "s1", Branch: "feature",
		CloneURL: url, Token: "s3cret-token", PreviewPort: 4321})
	must(t, err)

	run := func(spec cluster.ExecSpec, stdin string) (string, string, int, string) {
		t.Helper()
		spec.ProjectID, spec.SessionID = "app", "s1"
		pr, err := c.Exec(ctx, spec)
		must(t, err)
		if pr.PID() <= 0 {
			t.Fatalf("pid %d", pr.PID())
		}
		if spec.Stdin {
			io.WriteString(pr.Stdin(), stdin)
			pr.Stdin().Close()
		}
		var stderr []byte
		done := make(chan struct{})
		go func() { stderr, _ = io.ReadAll(pr.Stderr()); close(done) }()
		stdout, _ := io.ReadAll(pr.Stdout())
		<-done
		code, sig, err := pr.Wait()
		must(t, err)
		return string(stdout), string(stderr), code, sig
	}
	out, _, code, _ := run(cluster.ExecSpec{Argv: []string{"/bin/sh", "-c", `grep -c s3cret-token .git/config; git fetch -q origin && echo fetched; echo "$PORT $HOME" ; pwd`},
		Env: []string{"PORT=4321"}}, "")
	if want := "0\nfetched\n4321 " + ws.Path + "\n" + ws.Path + "\n"; out != want || code != 0 {
		t.Fatalf("workspace: %q exit %d, want %q", out, code, want)
	}
	out, errOut, code, _ := run(cluster.ExecSpec{Argv: []string{"/bin/sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"}, Stdin: true}, "hello\n")
	if out != "HELLO\n" || errOut != "oops\n" || code != 3 {
		t.Fatalf("stdin: %q %q exit %d", out, errOut, code)
	}
	must(t, os.MkdirAll(filepath.Join(ws.Path, "sub"), 0o755))
	if out, _, _, _ := run(cluster.ExecSpec{Argv: []string{"pwd"}, Cwd: "sub"}, ""); out != filepath.Join(ws.Path, "sub")+"\n" {
		t.Fatalf("cwd: %q", out)
	}
	// Signals reach the process.
	pr, err := c.Exec(ctx, cluster.ExecSpec{ProjectID: "app", SessionID: "s1", Argv: []string{"sleep", "60"}})
	must(t, err)
	go io.Copy(io.Discard, pr.Stderr())
	must(t, pr.Signal(syscall.SIGTERM))
	io.Copy(io.Discard, pr.Stdout())
	if code, sig, err := pr.Wait(); code != -1 || sig != "SIGTERM" || err != nil {
		t.Fatalf("after SIGTERM: %d %q %v", code, sig, err)
	}
	// What a dead server left running is found by its command id.
	lost, err := c.Exec(ctx, cluster.ExecSpec{ProjectID: "app", SessionID: "s1", Argv: []string{"sleep", "60"}, Env: []string{"RDEV_COMMAND=xlost"}})
	must(t, err)
	go io.Copy(io.Discard, lost.Stderr())
	// (Its environment is the command's once the prelude has exec'd it.)
	killed := 0
	for deadline := time.Now().Add(5 * time.Second); killed == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		killed = c.KillCommands([]string{"xother", "xlost"})
	}
	if killed != 1 {
		t.Fatalf("KillCommands killed %d, want 1", killed)
	}
	io.Copy(io.Discard, lost.Stdout())
	if code, _, err := lost.Wait(); code != 128+9 || err != nil {
		t.Fatalf("the lost command: exit %d %v", code, err)
	}
	// Refusals before anything starts.
	must(t, os.Symlink("/", filepath.Join(ws.Path, "escape")))
	for _, bad := range []cluster.ExecSpec{
		{Argv: []string{"pwd"}, Cwd: "/etc"},
		{Argv: []string{"pwd"}, Cwd: "../.."},
		{Argv: []string{"pwd"}, Cwd: "escape"},
		{Argv: []string{"pwd"}, Cwd: "missing"},
		{Argv: []string{"no-such-program-here"}},
		{},
	} {
		bad.ProjectID, bad.SessionID = "app", "s1"
		if _, err := c.Exec(ctx, bad); !rdev.IsInvalid(err) {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
	addr, err := c.PreviewAddr(ctx, "app", "s1")
	if err != nil || addr != "127.0.0.1:4321" {
		t.Fatalf("preview %q %v", addr, err)
	}
	// A restarted server finds the port in the workspace.
	c2, err := kube.New(kube.Config{Client: kc, REST: cp.Config, Namespace: ns, WorkspaceRoot: filepath.Dir(ws.Path), Images: kube.Images{Component: "c", Workspace: "w"}})
	must(t, err)
	if addr, err := c2.PreviewAddr(ctx, "app", "s1"); err != nil || addr != "127.0.0.1:4321" {
		t.Fatalf("preview after restart %q %v", addr, err)
	}
	// Removing the workspace kills what the session left running.
	bg, err := c.Exec(ctx, cluster.ExecSpec{ProjectID: "app", SessionID: "s1", Argv: []string{"/bin/sh", "-c", "sleep 300 >/dev/null 2>&1 & echo started"},
		Env: []string{"RDEV_SESSION=s1"}})
	must(t, err)
	go io.Copy(io.Discard, bg.Stderr())
	io.Copy(io.Discard, bg.Stdout())
	bg.Wait()
	must(t, c.RemoveWorkspace(ctx, "app", "s1"))
	if _, err := os.Stat(ws.Path); !os.IsNotExist(err) {
		t.Fatalf("workspace left: %v", err)
	}
	if out, _ := exec.Command("pgrep", "-f", "^sleep 300$").Output(); len(out) != 0 {
		t.Fatalf("background process left: %s", out)
	}
	if _, err := c.PreviewAddr(ctx, "app", "s1"); !errors.Is(err, rdev.ErrSessionNotFound) {
		t.Fatalf("preview of a removed workspace: %v", err)
	}
}
