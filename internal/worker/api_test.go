package worker_test

import (
	"rdev.dev/rdev/client"
	"rdev.dev/rdev/internal/service"
	"rdev.dev/rdev/internal/worker"
)

// Both the SDK and the service's in-process adapter are worker APIs.
var (
	_ worker.API = (*client.Client)(nil)
	_ worker.API = service.LocalWorkers{}
)
