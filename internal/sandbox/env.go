// Package sandbox confines the processes rdev starts from a project's files
// (components, session commands, reviews): what they see of the
// filesystem, of the network and of rdev's own environment. The threat
// model is docs/security.md; this package is its mechanism on the local
// cluster:
//
//   - Env builds a process environment from nothing (never the server's).
//   - Bwrap builds bubblewrap command lines: one long-lived sandbox per
//     project pod holding the pod's network namespace, and a nested sandbox
//     per process inside it.
//   - Agent is the small supervisor that runs inside a pod's sandbox and
//     starts processes there on rdev's request (over a unix socket only rdev
//     can reach), and relays loopback ports between the pod and rdev.
//   - Enter is the stage that moves a sandbox into its resource group and
//     drops root before bubblewrap starts.
//   - Reap runs a process with no sandbox (--sandbox none) so that nothing
//     it starts outlives it.
package sandbox

import (
	"sort"
	"strings"
)

// Path is the PATH of every sandboxed process.
const Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Env is a process environment built from nothing: a fixed PATH, HOME,
// LANG and TERM, then what the caller adds (the project's declared
// variables, rdev's RDEV_* variables). Later values win.
type Env struct {
	vars map[string]string
}

// NewEnv returns the base environment with HOME set to home.
func NewEnv(home string) *Env {
	return &Env{vars: map[string]string{
		"PATH": Path,
		"HOME": home,
		"LANG": "C.UTF-8",
		"TERM": "dumb",
	}}
}

// Set sets one variable.
func (e *Env) Set(k, v string) *Env {
	e.vars[k] = v
	return e
}

// Add sets each KEY=VALUE of kvs; entries without "=" are ignored.
func (e *Env) Add(kvs ...string) *Env {
	for _, kv := range kvs {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			e.vars[k] = v
		}
	}
	return e
}

// AddMap sets every variable of m.
func (e *Env) AddMap(m map[string]string) *Env {
	for k, v := range m {
		e.vars[k] = v
	}
	return e
}

// Proxy points the proxy variables every common tool reads (curl, git,
// pip, npm, Go) at the egress proxy url; loopback stays direct, so that
// processes of one pod reach each other.
func (e *Env) Proxy(url string) *Env {
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"} {
		e.vars[k] = url
		e.vars[strings.ToLower(k)] = url
	}
	e.vars["NO_PROXY"] = "localhost,127.0.0.1,::1"
	e.vars["no_proxy"] = e.vars["NO_PROXY"]
	return e
}

// List returns the environment as sorted KEY=VALUE entries.
func (e *Env) List() []string {
	out := make([]string, 0, len(e.vars))
	for k, v := range e.vars {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
