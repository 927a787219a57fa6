package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
)

// Local is the offline cluster of `make cluster-up` (e2e/cluster): it is
// started by the Makefile, not here, because it needs root and takes a lock
// shared with the harness scripts; Up reads the env file it wrote.
type Local struct {
	// EnvFile is _output/cluster/env of the repository, or $CORAL_CLUSTER_ENV.
	EnvFile string
}

// NewLocal returns the local provider of the repository at repoRoot.
func NewLocal(repoRoot string) *Local {
	path := os.Getenv("CORAL_CLUSTER_ENV")
	if path == "" {
		path = filepath.Join(repoRoot, "_output", "cluster", "env")
	}
	return &Local{EnvFile: path}
}

func (*Local) Name() string { return "local" }

func (l *Local) Up(context.Context) (*Cluster, error) {
	env, err := ReadEnvFile(l.EnvFile)
	if err != nil {
		return nil, fmt.Errorf("reading the local cluster's env file: %w (run make cluster-up)", err)
	}
	if err := CheckRequired(env, l.EnvFile); err != nil {
		return nil, err
	}
	return &Cluster{Env: env}, nil
}
