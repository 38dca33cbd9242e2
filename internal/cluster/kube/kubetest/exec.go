package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"syscall"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// serveExec is the kubelet's exec endpoint, /exec/<ns>/<pod>/<container>,
// served by the streaming code the kubelet itself uses.
func (n *Node) serveExec(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("ns") + "/" + r.PathValue("pod")
	n.mu.Lock()
	lp := n.local[key]
	n.mu.Unlock()
	var c *container
	if lp != nil {
		c = lp.container(r.PathValue("container"))
	}
	var ex executor
	if c != nil {
		c.mu.Lock()
		ex = executor{dir: c.spec.WorkingDir, env: c.env, running: c.running}
		c.mu.Unlock()
	}
	if !ex.running {
		http.Error(w, fmt.Sprintf("container %s of pod %s is not running on this node", r.PathValue("container"), key), http.StatusNotFound)
		return
	}
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	remotecommand.ServeExec(w, r, ex, key, "", c.spec.Name, r.URL.Query()["command"], opts,
		time.Hour, 30*time.Second, remotecommand.SupportedStreamingProtocols)
}

// executor runs exec'd commands as local processes in the container's
// working directory and environment.
type executor struct {
	dir     string
	env     []string
	running bool
}

func (e executor) ExecInContainer(ctx context.Context, _, _, _ string, argv []string, in io.Reader, out, errw io.WriteCloser,
	tty bool, resize <-chan remotecommand.TerminalSize, timeout time.Duration) error {
	if len(argv) == 0 {
		return errors.New("no command")
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = e.env
	cmd.Dir = e.dir
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
	cmd.Wait()
	if code := exitStatus(cmd); code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("exit status %d", code), Code: int(code)}
	}
	return nil
}
