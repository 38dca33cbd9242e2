package kubetest

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
)

// logBuffer is one run of a container's output, kept in memory for the
// log endpoint; readers following it are woken on each write and at its
// end.
type logBuffer struct {
	mu   sync.Mutex
	b    []byte
	done bool
	wake chan struct{} // closed (and replaced) on a change
}

func newLogBuffer() *logBuffer { return &logBuffer{wake: make(chan struct{})} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	close(l.wake)
	l.wake = make(chan struct{})
	return len(p), nil
}

// close ends the log: its run is over.
func (l *logBuffer) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.done = true
		close(l.wake)
	}
}

// from returns what was written past off, whether the log has ended, and
// a channel closed at the next change.
func (l *logBuffer) from(off int) ([]byte, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b[off:], l.done, l.wake
}

// serveLogs is the kubelet's log endpoint, /containerLogs/<ns>/<pod>/<container>,
// which the API server proxies pods/log to: the output of the container's
// current (or last) run, to its end with follow=true. The other options of
// PodLogOptions (previous, timestamps, since…, tailLines, limitBytes, a
// stream other than All) are refused rather than ignored.
func (n *Node) serveLogs(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("ns") + "/" + r.PathValue("pod")
	n.mu.Lock()
	lp := n.local[key]
	n.mu.Unlock()
	if lp == nil {
		http.Error(w, fmt.Sprintf("pod %q does not exist", r.PathValue("pod")), http.StatusNotFound)
		return
	}
	c := lp.container(r.PathValue("container"))
	if c == nil {
		http.Error(w, fmt.Sprintf("container %q not found in pod %q", r.PathValue("container"), r.PathValue("pod")), http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	for _, p := range []string{"previous", "timestamps", "sinceSeconds", "sinceTime", "tailLines", "limitBytes"} {
		if v := q.Get(p); v != "" && v != "false" {
			http.Error(w, "log option "+p+" is not supported by the test node", http.StatusBadRequest)
			return
		}
	}
	if s := q.Get("stream"); s != "" && s != "All" {
		http.Error(w, fmt.Sprintf("unable to return the given log stream: %q", s), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	log, waiting := c.log, c.waiting
	c.mu.Unlock()
	if log == nil {
		lp.mu.Lock()
		initialized := lp.initialized
		lp.mu.Unlock()
		switch {
		case waiting != "":
		case !initialized && !slices.Contains(lp.inits, c):
			waiting = "PodInitializing"
		default:
			waiting = "ContainerCreating"
		}
		http.Error(w, fmt.Sprintf("container %q in pod %q is waiting to start: %s", c.spec.Name, r.PathValue("pod"), waiting), http.StatusBadRequest)
		return
	}
	follow := q.Get("follow") == "true"
	w.Header().Set("Content-Type", "text/plain")
	flusher, _ := w.(http.Flusher)
	for off := 0; ; {
		b, done, wake := log.from(off)
		if len(b) > 0 {
			if _, err := w.Write(b); err != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
			off += len(b)
		}
		if !follow || done {
			return
		}
		select {
		case <-wake:
		case <-r.Context().Done():
			return
		}
	}
}
