// Package version holds what `make build` stamps into the binaries.
package version

import (
	"os"
	"runtime"
	"strings"
)

// Set with -ldflags "-X github.com/coral-dev/coral/pkg/version.Version=…".
var (
	Version = "v0.0.0-dev"
	Commit  = "unknown"
	// WorkerRepository is where released worker images live.
	WorkerRepository = "ghcr.io/coral-dev/coral-worker"
)

// EnvWorkerImage overrides the default worker image (e.g. a mirror, or the
// local e2e registry) without a flag on every call.
const EnvWorkerImage = "CORAL_WORKER_IMAGE"

// DefaultWorkerImage is the worker image of this plugin version: the plugin
// and the worker are released together and speak one wire version.
func DefaultWorkerImage() string {
	if v := strings.TrimSpace(os.Getenv(EnvWorkerImage)); v != "" {
		return v
	}
	return WorkerRepository + ":" + Version
}

// GoVersion is the Go release the binary was built with.
func GoVersion() string { return runtime.Version() }
