// Package cluster is where projects run. The local backend (package local)
// runs a project's "pod" as a directory plus supervised processes on this
// machine; a Kubernetes backend implements the same interface. Every
// resource carries the labels of SPEC §2.
package cluster

import (
	"context"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"rdev.dev/rdev/internal/rdev"
)

// The labels every managed resource carries (SPEC §2).
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "rdev"
	LabelProject   = "rdev.dev/project"
	LabelComponent = "rdev.dev/component"
	LabelSession   = "rdev.dev/session"
)

// Labels are key/value pairs on a resource.
type Labels map[string]string

// ProjectLabels returns the labels of a project's resources.
func ProjectLabels(projectID string) Labels {
	return Labels{LabelManagedBy: ManagedBy, LabelProject: projectID}
}

// With returns a copy of l with k set to v.
func (l Labels) With(k, v string) Labels {
	out := make(Labels, len(l)+1)
	for a, b := range l {
		out[a] = b
	}
	out[k] = v
	return out
}

// Matches reports whether l has every pair of selector.
func (l Labels) Matches(selector Labels) bool {
	for k, v := range selector {
		if l[k] != v {
			return false
		}
	}
	return true
}

// Resource is one object the cluster holds for rdev.
type Resource struct {
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	Labels    Labels    `json:"labels"`
	CreatedAt time.Time `json:"created_at"`
}

// Process states of a component.
const (
	StateRunning    = "running"
	StateRestarting = "restarting" // exited, will be started again
	StateStopped    = "stopped"
)

// Process is the state of one component's process.
type Process struct {
	Component string     `json:"component"`
	State     string     `json:"state"`
	PID       int        `json:"pid,omitempty"`
	Restarts  int        `json:"restarts"`
	LastExit  *int       `json:"last_exit_code,omitempty"`
	Since     time.Time  `json:"since"`
	Port      *int       `json:"port,omitempty"`
	LastError string     `json:"last_error,omitempty"`
	ExitedAt  *time.Time `json:"exited_at,omitempty"`
}

// Status is a project's deployment state.
type Status struct {
	ProjectID string    `json:"project_id"`
	Running   bool      `json:"running"`
	Pod       string    `json:"pod,omitempty"`
	Processes []Process `json:"processes"`
	// Sandbox is "none" when the project's processes run unconfined
	// (--sandbox none); absent otherwise.
	Sandbox string `json:"sandbox,omitempty"`
}

// WorkspaceSpec describes a session's workspace.
type WorkspaceSpec struct {
	ProjectID string
	SessionID string
	Branch    string
	// CloneURL is the project's URL on rdev's git host; pushes from the
	// workspace go there, authenticated by the session's checkout token.
	CloneURL string
	// Token is the checkout token, kept for the workspace's credential
	// helper (never in .git/config).
	Token string
	// Commit is the branch's commit, when the caller knows it.
	Commit string
	// PreviewPort is the port the session's preview listens on in the pod
	// (rdev.DefaultPreviewPort when 0). The local backend maps it to a free
	// port of the machine.
	PreviewPort int
}

// Workspace is a prepared session workspace.
type Workspace struct {
	Path string `json:"path"`
}

// Cluster is what rdev needs from wherever projects run.
type Cluster interface {
	// Deploy makes the project running (again, with the given spec).
	Deploy(ctx context.Context, p *rdev.Project) error
	// Undeploy stops and removes everything of the project.
	Undeploy(ctx context.Context, projectID string) error
	// DeleteSelected removes every resource whose labels match selector,
	// going on past failures and returning them joined.
	DeleteSelected(ctx context.Context, selector Labels) error
	// Status reports the project's pod and processes.
	Status(ctx context.Context, projectID string) (*Status, error)
	// RunningPod returns the name of the project's running pod, or
	// rdev.ErrPodNotRunning.
	RunningPod(ctx context.Context, projectID string) (string, error)
	// PrepareWorkspace makes a session's workspace: the checkout's branch,
	// wired to rdev's git host.
	PrepareWorkspace(ctx context.Context, spec WorkspaceSpec) (*Workspace, error)
	// PreviewAddr returns host:port where rdev reaches the session's
	// preview port (the port commands are given as $PORT).
	PreviewAddr(ctx context.Context, projectID, sessionID string) (string, error)
	// DialPreview connects to the session's preview port, wherever the
	// pod's network is (the local sandbox's own namespace, a pod's IP).
	DialPreview(ctx context.Context, projectID, sessionID string) (net.Conn, error)
	// RemoveWorkspace removes a session's workspace; a missing one is not
	// an error.
	RemoveWorkspace(ctx context.Context, projectID, sessionID string) error
	// List returns every resource labelled managed-by=rdev.
	List(ctx context.Context) ([]Resource, error)
	// Delete removes one resource List returned (with what it owns: a
	// pod's processes and workspaces); one already gone is not an error.
	Delete(ctx context.Context, r Resource) error
	// Exec starts a process in a session's workspace.
	Exec(ctx context.Context, spec ExecSpec) (Proc, error)
}

// ExecSpec is a process to start in a session's workspace.
type ExecSpec struct {
	ProjectID string
	SessionID string
	Argv      []string
	Env       []string // KEY=VALUE, added to the workspace's environment
	Cwd       string   // relative to the workspace; must stay inside it
	Stdin     bool     // give the process a stdin pipe (else /dev/null)
}

// Proc is a started process.
type Proc interface {
	PID() int
	// Stdin is nil unless the spec asked for it.
	Stdin() io.WriteCloser
	Stdout() io.Reader
	Stderr() io.Reader
	// Wait waits for the exit after the output has been read to its end;
	// signal names the signal that ended it, if one did.
	Wait() (exitCode int, signal string, err error)
	// Signal sends sig to the process and everything it started.
	Signal(sig syscall.Signal) error
}

// Signals are the signals a client may send to a command, by name.
var Signals = map[string]syscall.Signal{
	"SIGHUP": syscall.SIGHUP, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT, "SIGKILL": syscall.SIGKILL,
	"SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2, "SIGTERM": syscall.SIGTERM, "SIGCONT": syscall.SIGCONT,
	"SIGSTOP": syscall.SIGSTOP, "SIGTSTP": syscall.SIGTSTP, "SIGWINCH": syscall.SIGWINCH, "SIGALRM": syscall.SIGALRM,
	"SIGPIPE": syscall.SIGPIPE,
}

// WorkspaceConfig is a session workspace's .git/config: origin on rdev's
// git host, the branch tracking it, and the credential helper (which holds
// no token itself).
func WorkspaceConfig(spec WorkspaceSpec, helper string) string {
	return "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n" +
		"[remote \"origin\"]\n\turl = " + QuoteConfig(spec.CloneURL) + "\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n" +
		"[branch " + QuoteConfig(spec.Branch) + "]\n\tremote = origin\n\tmerge = " + QuoteConfig("refs/heads/"+spec.Branch) + "\n" +
		"[credential]\n\thelper = " + QuoteConfig(helper) + "\n\tuseHttpPath = true\n" +
		"[rdev]\n\tsession = " + QuoteConfig(spec.SessionID) + "\n"
}

// QuoteConfig quotes a git config value (or subsection name).
func QuoteConfig(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`).Replace(v) + `"`
}

// ReviewSpec is one run of a project's review command in a sandbox of its
// own.
type ReviewSpec struct {
	TaskID    string
	ProjectID string
	Branch    string
	Commit    string // the commit under review; the sandbox holds it checked out
	Command   string // a shell string
	Limits    rdev.Limits
	Egress    rdev.Egress
}

// ReviewExit is how a review command ended, as observed from outside its
// sandbox (never as reported by the command itself).
type ReviewExit struct {
	Code   int    // -1 when a signal ended it
	Signal string // the signal's name, when one did
}

// Reviewer runs review commands confined: a trusted step checks the commit
// out, then the command runs with no credential of rdev's or the worker's,
// in a network namespace of its own. Its output goes to stdout and stderr;
// ctx bounds it (a deadline kills it). An error means the review could not
// run, not that it failed.
type Reviewer interface {
	RunReview(ctx context.Context, spec ReviewSpec, stdout, stderr io.Writer) (ReviewExit, error)
}
