package provider

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFromEnvChoosesTheProvider(t *testing.T) {
	for env, want := range map[string]string{"": "local", "local": "local", "kind": "kind"} {
		t.Setenv(EnvVar, env)
		p, err := FromEnv("/repo")
		if err != nil || p.Name() != want {
			t.Errorf("%s=%q: %v %v, want %s", EnvVar, env, p, err, want)
		}
	}
	t.Setenv(EnvVar, "minikube")
	if _, err := FromEnv("/repo"); err == nil || !strings.Contains(err.Error(), "want local") {
		t.Errorf("an unknown provider: %v, want an error naming the choices", err)
	}
}

// The local provider reads the env file make cluster-up writes, and names
// what is missing.
func TestLocalReadsTheEnvFile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CORAL_CLUSTER_ENV", "")
	l := NewLocal(dir)
	if want := filepath.Join(dir, "_output", "cluster", "env"); l.EnvFile != want {
		t.Fatalf("env file %s, want %s", l.EnvFile, want)
	}
	if _, err := l.Up(context.Background()); err == nil || !strings.Contains(err.Error(), "make cluster-up") {
		t.Errorf("no env file: %v, want a hint to run make cluster-up", err)
	}
	env := map[string]string{
		"KUBECONFIG": "/k", "CORAL_REGISTRY": "127.0.0.1:5000", "CORAL_NODES": "coral-node-1 coral-node-2",
		"CORAL_WORKER_IMAGE": "127.0.0.1:5000/coral-worker:v1", "CORAL_AUTH_REGISTRY": "127.0.0.1:5001",
		CRIEnvKey("coral-node-1"): "unix:///run/n1.sock",
	}
	os.MkdirAll(filepath.Dir(l.EnvFile), 0o755)
	if err := WriteEnvFile(l.EnvFile, "test", env); err != nil {
		t.Fatal(err)
	}
	c, err := l.Up(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for k, v := range env {
		if c.Env[k] != v {
			t.Errorf("%s = %q, want %q", k, c.Env[k], v)
		}
	}
	if c.Env["CORAL_CRI_CORAL_NODE_1"] != "unix:///run/n1.sock" {
		t.Errorf("CRI key of coral-node-1: %v", c.Env)
	}
	delete(env, "CORAL_WORKER_IMAGE")
	delete(env, "CORAL_NODES")
	WriteEnvFile(l.EnvFile, "test", env)
	if _, err := l.Up(context.Background()); err == nil || !strings.Contains(err.Error(), "CORAL_NODES, CORAL_WORKER_IMAGE") {
		t.Errorf("missing keys: %v, want both named", err)
	}
}
