// Package service orchestrates rdev's use cases across the store and the git
// host (and, in later issues, the cluster). Handlers call it; it returns
// domain errors from package rdev.
package service

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"rdev.dev/rdev/internal/cluster"
	"rdev.dev/rdev/internal/egress"
	"rdev.dev/rdev/internal/githost"
	"rdev.dev/rdev/internal/rdev"
)

// Config is what a Service is built from.
type Config struct {
	Store   rdev.Store
	Git     *githost.Host
	Cluster cluster.Cluster
	Now     func() time.Time // the clock; time.Now in production
	Log     *slog.Logger
	// PublicURL is the base of the URLs rdev hands out (clone URLs), e.g.
	// http://127.0.0.1:7420.
	PublicURL string
	// PreviewDomain is the domain under which sessions' preview hosts live
	// (<session>.<domain>).
	PreviewDomain string
	// Unconfined says project code runs with no sandbox (--sandbox none):
	// sessions then say so ("sandbox": "none").
	Unconfined bool
	// OutputLimit bounds the stored output of one command (default 64 MiB).
	OutputLimit int64
	// PreviewSecret signs preview links (shared by replicas).
	PreviewSecret []byte
	// TaskLease is how long a claim lasts without a heartbeat (30 s).
	TaskLease time.Duration
	// WorkerTimeout is how long a worker counts as online after its last
	// heartbeat (30 s).
	WorkerTimeout time.Duration
	// ClaimPoll is how often a waiting claim looks at the store for tasks
	// queued by other replicas or whose backoff ended (1 s).
	ClaimPoll time.Duration
	// RetryBackoff is the first retry delay of a failed task, doubled at
	// each attempt (1 s).
	RetryBackoff time.Duration
	// ImportProxy carries the imports of keys other than an unrestricted
	// admin key (http(s) URLs of public addresses only; see importRoute).
	// Nil: only unrestricted admin keys import.
	ImportProxy *egress.Proxy
	// ImportRoots are directories under which any key that may create
	// projects may import a path on the server (--import-root).
	ImportRoots []string
}

// taskConfig is the task queue's timing.
type taskConfig struct {
	lease, workerTimeout, poll, backoff time.Duration
	wake                                *taskWake
	workers                             *workerCache
	// claimed remembers the kind of each task claimed through this server
	// until it is completed or failed here (a task lost to the reaper stays
	// until then; a map entry per task in flight).
	claimed *sync.Map
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Service carries what the use cases need.
type Service struct {
	store         rdev.Store
	git           *githost.Host
	cluster       cluster.Cluster
	now           func() time.Time
	log           *slog.Logger
	publicURL     string
	previewDomain string
	keys          *keyCache
	previews      *keyCache
	outputLimit   int64
	hub           *hub
	previewSecret []byte
	auth          *authCache
	tasks         taskConfig
	unconfined    bool
	importProxy   *egress.Proxy
	importRoots   []string
}

// New returns a Service.
func New(c Config) *Service {
	if c.OutputLimit <= 0 {
		c.OutputLimit = DefaultOutputLimit
	}
	return &Service{store: c.Store, git: c.Git, cluster: c.Cluster, now: c.Now, log: c.Log, publicURL: strings.TrimRight(c.PublicURL, "/"),
		previewDomain: c.PreviewDomain, outputLimit: c.OutputLimit, hub: &hub{runs: map[string]*run{}},
		previewSecret: c.PreviewSecret, unconfined: c.Unconfined, importProxy: c.ImportProxy, importRoots: c.ImportRoots,
		keys: newKeyCache(TouchInterval), previews: newKeyCache(10 * time.Second), auth: &authCache{m: map[string]authEntry{}},
		tasks: taskConfig{lease: orDefault(c.TaskLease, DefaultTaskLease), workerTimeout: orDefault(c.WorkerTimeout, DefaultWorkerTimeout),
			poll: orDefault(c.ClaimPoll, DefaultClaimPoll), backoff: orDefault(c.RetryBackoff, DefaultRetryBackoff), wake: newTaskWake(), workers: &workerCache{}, claimed: &sync.Map{}}}
}

func (s *Service) clock() time.Time { return rdev.Timestamp(s.now()) }

// Store exposes the store for health checks.
func (s *Service) Store() rdev.Store { return s.store }

// Git exposes the git host to the smart-HTTP handler.
func (s *Service) Git() *githost.Host { return s.git }
