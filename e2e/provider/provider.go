// Package provider brings up, or finds, the cluster the end-to-end tests run
// on, and describes it by one contract: the environment the tests read
// (KUBECONFIG, CORAL_REGISTRY, CORAL_NODES, CORAL_CRI_<NODE>, …; see
// e2e/cluster/README.md).
//
// Two providers stand behind the Provider interface, chosen with
// CORAL_E2E_PROVIDER:
//
//   - local (the default): the offline multi-node cluster `make cluster-up`
//     starts on this machine; this provider only reads the env file it wrote.
//   - kind: a multi-node kind cluster with a local registry, created (or
//     reused) through kind's Go API. It needs Docker; see docs/kind.md.
package provider

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
)

// EnvVar selects the provider.
const EnvVar = "CORAL_E2E_PROVIDER"

// Provider gives the tests a running cluster.
type Provider interface {
	// Name is what CORAL_E2E_PROVIDER calls it.
	Name() string
	// Up returns a running cluster, starting one when the provider can and
	// none is there. The caller closes it when the tests are done.
	Up(ctx context.Context) (*Cluster, error)
}

// Cluster is a running cluster as the tests see it.
type Cluster struct {
	// Env is the contract the tests read (see e2e/cluster/README.md). Keys
	// the provider cannot fill are absent.
	Env map[string]string
	// close releases what the provider started for this process (the kind
	// provider's CRI forwarders); nil when there is nothing.
	close func() error
}

// Close releases what the provider started for this process. It does not
// delete the cluster: `make cluster-down`, or `go run ./e2e/cmd/kindcluster
// down`, does.
func (c *Cluster) Close() error {
	if c == nil || c.close == nil {
		return nil
	}
	return c.close()
}

// Required are the keys every provider must set: the tests cannot do
// without them.
var Required = []string{"KUBECONFIG", "CORAL_REGISTRY", "CORAL_NODES", "CORAL_WORKER_IMAGE", "CORAL_AUTH_REGISTRY"}

// CheckRequired says which required keys env lacks, naming where env came from.
func CheckRequired(env map[string]string, from string) error {
	var missing []string
	for _, k := range Required {
		if env[k] == "" {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s does not set %s", from, strings.Join(missing, ", "))
	}
	return nil
}

// FromEnv returns the provider CORAL_E2E_PROVIDER names (local when unset).
// repoRoot is the repository the tests run from: both providers keep their
// state under its _output directory.
func FromEnv(repoRoot string) (Provider, error) {
	switch name := os.Getenv(EnvVar); name {
	case "", "local":
		return NewLocal(repoRoot), nil
	case "kind":
		return NewKind(repoRoot), nil
	default:
		return nil, fmt.Errorf("%s=%q: want local (the cluster of make cluster-up) or kind (needs Docker, see docs/kind.md)", EnvVar, name)
	}
}

// CRIEnvKey is the env key holding a node's CRI endpoint:
// CORAL_CRI_CORAL_NODE_1 for coral-node-1.
func CRIEnvKey(node string) string {
	return "CORAL_CRI_" + strings.ToUpper(strings.NewReplacer("-", "_", ".", "_").Replace(node))
}

// ReadEnvFile reads a sourceable file of `export KEY="VALUE"` lines.
func ReadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	env := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(sc.Text()), "export "))
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.HasPrefix(k, "#") {
			continue
		}
		env[k] = strings.Trim(v, `"'`)
	}
	return env, sc.Err()
}

// WriteEnvFile writes env as a sourceable file, keys sorted, with a comment
// on top.
func WriteEnvFile(path, comment string, env map[string]string) error {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimSpace(comment), "\n") {
		fmt.Fprintf(&b, "# %s\n", l)
	}
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&b, "export %s=%q\n", k, env[k])
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
