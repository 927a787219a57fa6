package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	kindcmd "sigs.k8s.io/kind/pkg/cmd"
)

// Kind runs the tests on a multi-node kind cluster with a local registry
// (kind's documented local-registry setup: a registry container on the kind
// network, the nodes' containerd told by hosts.toml to pull localhost:PORT/…
// from it). It needs Docker, and the internet for the node and registry
// images; it is run by .github/workflows/e2e-kind.yml, not on the project's
// offline machines.
//
// Knobs: CORAL_KIND_NODE_IMAGE (kindest/node image; default: kind's),
// CORAL_KIND_REGISTRY_IMAGE (default registry:3), CORAL_WORKER_IMAGE (skip
// building the worker image).
type Kind struct {
	RepoRoot string
	StateDir string // _output/kind
}

// The registries, as the host and the nodes name them. The host reaches
// them on published loopback ports; the nodes' containerd maps the same
// names to the containers on the kind network.
const (
	kindRegistry         = "coral-kind-registry"
	kindRegistryPort     = "5001"
	kindAuthRegistry     = "coral-kind-registry-auth"
	kindAuthRegistryPort = "5002"
	kindAuthUser         = "coral"
)

// NewKind returns the kind provider of the repository at repoRoot.
func NewKind(repoRoot string) *Kind {
	return &Kind{RepoRoot: repoRoot, StateDir: filepath.Join(repoRoot, "_output", "kind")}
}

func (*Kind) Name() string { return "kind" }

// KindMirrors are the registry mirrors every kind node gets.
func KindMirrors() []RegistryMirror {
	return []RegistryMirror{
		{Host: "localhost:" + kindRegistryPort, Endpoint: "http://" + kindRegistry + ":5000"},
		{Host: "localhost:" + kindAuthRegistryPort, Endpoint: "http://" + kindAuthRegistry + ":5000"},
	}
}

// Spec is the cluster this provider makes.
func (k *Kind) Spec() KindSpec {
	s := DefaultKindSpec(k.StateDir, KindMirrors())
	s.NodeImage = os.Getenv("CORAL_KIND_NODE_IMAGE")
	return s
}

func (k *Kind) Up(ctx context.Context) (*Cluster, error) {
	if _, err := docker(ctx, "version", "--format", "{{.Server.Version}}"); err != nil {
		return nil, fmt.Errorf("the kind provider needs a running Docker engine (CORAL_E2E_PROVIDER=kind; see docs/kind.md): %w", err)
	}
	spec := k.Spec()
	for _, d := range []string{spec.CertsDir, spec.ToolsDir, filepath.Join(k.StateDir, "auth"), filepath.Join(k.StateDir, "cri")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	arch, err := docker(ctx, "version", "--format", "{{.Server.Arch}}")
	if err != nil {
		return nil, err
	}
	if err := k.buildSockpipe(ctx, arch); err != nil {
		return nil, err
	}
	password, err := k.startRegistries(ctx)
	if err != nil {
		return nil, err
	}
	for p, content := range spec.HostsFiles() {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	kubeconfig := filepath.Join(k.StateDir, "kubeconfig")
	kp := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindcmd.NewLogger()))
	if err := k.createOrReuse(kp, spec, kubeconfig); err != nil {
		return nil, err
	}
	for _, r := range []string{kindRegistry, kindAuthRegistry} {
		if err := connectToKindNetwork(ctx, r); err != nil {
			return nil, err
		}
	}
	containers, err := waitForNodes(ctx, kubeconfig, spec)
	if err != nil {
		return nil, err
	}
	kindNodes, err := kp.ListNodes(spec.Name)
	if err != nil {
		return nil, fmt.Errorf("listing the nodes of kind cluster %s: %w", spec.Name, err)
	}

	env := map[string]string{
		"KUBECONFIG":          kubeconfig,
		"CORAL_E2E_PROVIDER":  "kind",
		"CORAL_KIND_CLUSTER":  spec.Name,
		"CORAL_REGISTRY":      "localhost:" + kindRegistryPort,
		"CORAL_AUTH_REGISTRY": "localhost:" + kindAuthRegistryPort,
		"CORAL_AUTH_USER":     kindAuthUser,
		"CORAL_AUTH_PASSWORD": password,
		"CORAL_NODES":         strings.Join(spec.NodeNames(), " "),
	}
	var forwarders []*CRIForwarder
	closeAll := func() error {
		var errs []error
		for _, f := range forwarders {
			errs = append(errs, f.Close())
		}
		return errors.Join(errs...)
	}
	for _, node := range spec.NodeNames() {
		i := slices.IndexFunc(kindNodes, func(n nodes.Node) bool { return n.String() == containers[node] })
		if i < 0 {
			closeAll()
			return nil, fmt.Errorf("node %s runs in container %q, which kind does not list for cluster %s", node, containers[node], spec.Name)
		}
		f, err := ForwardCRI(filepath.Join(k.StateDir, "cri", node+".sock"), kindNodeBridge(kindNodes[i]))
		if err != nil {
			closeAll()
			return nil, err
		}
		forwarders = append(forwarders, f)
		env[CRIEnvKey(node)] = f.Endpoint()
	}
	worker := os.Getenv("CORAL_WORKER_IMAGE")
	if worker == "" {
		if worker, err = k.pushWorkerImage(ctx, env["CORAL_REGISTRY"], arch); err != nil {
			closeAll()
			return nil, err
		}
	}
	env["CORAL_WORKER_IMAGE"] = worker
	if err := WriteEnvFile(filepath.Join(k.StateDir, "env"), `written by the e2e kind provider (e2e/provider/kind.go).
The CORAL_CRI_* sockets are served by the process that wrote this file, while it runs.`, env); err != nil {
		closeAll()
		return nil, err
	}
	return &Cluster{Env: env, close: closeAll}, nil
}

// createOrReuse creates the kind cluster, or exports the kubeconfig of the
// one already there (a second test run costs nothing).
func (k *Kind) createOrReuse(kp *cluster.Provider, spec KindSpec, kubeconfig string) error {
	existing, err := kp.List()
	if err != nil {
		return fmt.Errorf("listing kind clusters: %w", err)
	}
	if slices.Contains(existing, spec.Name) {
		if err := kp.ExportKubeConfig(spec.Name, kubeconfig, false); err != nil {
			return fmt.Errorf("kind cluster %s exists but its kubeconfig cannot be exported (delete it: go run ./e2e/cmd/kindcluster down): %w", spec.Name, err)
		}
		return nil
	}
	raw, err := RenderKindConfig(spec)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(k.StateDir, "kind-config.yaml"), raw, 0o644); err != nil {
		return err
	}
	opts := []cluster.CreateOption{
		cluster.CreateWithRawConfig(raw),
		cluster.CreateWithKubeconfigPath(kubeconfig),
		cluster.CreateWithWaitForReady(5 * time.Minute),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	}
	if spec.NodeImage != "" {
		opts = append(opts, cluster.CreateWithNodeImage(spec.NodeImage))
	}
	if err := kp.Create(spec.Name, opts...); err != nil {
		return fmt.Errorf("creating kind cluster %s (config in %s): %w", spec.Name, filepath.Join(k.StateDir, "kind-config.yaml"), err)
	}
	return nil
}

// Down deletes the kind cluster and the registry containers.
func (k *Kind) Down(ctx context.Context) error {
	kp := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(kindcmd.NewLogger()))
	err := kp.Delete(k.Spec().Name, filepath.Join(k.StateDir, "kubeconfig"))
	for _, r := range []string{kindRegistry, kindAuthRegistry} {
		if _, rerr := docker(ctx, "rm", "-f", r); rerr != nil && !strings.Contains(rerr.Error(), "No such container") {
			err = errors.Join(err, rerr)
		}
	}
	return err
}

// kindNodeBridge runs sockpipe in the node, attached to containerd's socket
// (kind runs `docker exec -i` for it).
func kindNodeBridge(n nodes.Node) StartFunc {
	return func(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
		var stderr bytes.Buffer
		err := n.CommandContext(ctx, NodeToolsDir+"/sockpipe", NodeCRISocket).
			SetStdin(stdin).SetStdout(stdout).SetStderr(&stderr).Run()
		if err != nil && ctx.Err() == nil {
			return fmt.Errorf("sockpipe in %s: %w: %s", n, err, stderr.String())
		}
		return nil
	}
}

// buildSockpipe builds the bridge for the nodes' architecture into ToolsDir,
// which every node mounts.
func (k *Kind) buildSockpipe(ctx context.Context, arch string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(k.Spec().ToolsDir, "sockpipe"), "./e2e/cmd/sockpipe")
	cmd.Dir = k.RepoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building e2e/cmd/sockpipe for linux/%s: %v\n%s", arch, err, out)
	}
	return nil
}

// startRegistries starts (or keeps) the plain and the htpasswd registry
// containers and returns the htpasswd registry's password.
func (k *Kind) startRegistries(ctx context.Context) (string, error) {
	image := os.Getenv("CORAL_KIND_REGISTRY_IMAGE")
	if image == "" {
		image = "registry:3"
	}
	if err := ensureContainer(ctx, kindRegistry, "-p", "127.0.0.1:"+kindRegistryPort+":5000", image); err != nil {
		return "", err
	}
	authDir := filepath.Join(k.StateDir, "auth")
	pwFile := filepath.Join(authDir, "password")
	running, _ := docker(ctx, "inspect", "-f", "{{.State.Running}}", kindAuthRegistry)
	pw, err := os.ReadFile(pwFile)
	if running == "true" && err == nil {
		return string(pw), nil // the container reads the htpasswd file written with it
	}
	docker(ctx, "rm", "-f", kindAuthRegistry)
	password, htpasswd, err := newHtpasswd(kindAuthUser)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(authDir, "htpasswd"), htpasswd, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		return "", err
	}
	err = ensureContainer(ctx, kindAuthRegistry,
		"-p", "127.0.0.1:"+kindAuthRegistryPort+":5000",
		"-v", authDir+":/auth:ro",
		"-e", "REGISTRY_AUTH=htpasswd",
		"-e", "REGISTRY_AUTH_HTPASSWD_REALM=coral-e2e",
		"-e", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
		image)
	return password, err
}

// newHtpasswd returns a random password and an htpasswd line (bcrypt, which
// the registry requires) for user.
func newHtpasswd(user string) (string, []byte, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	password := hex.EncodeToString(b)
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return "", nil, err
	}
	return password, []byte(user + ":" + string(hash) + "\n"), nil
}

// ensureContainer starts a detached container unless one of that name runs.
func ensureContainer(ctx context.Context, name string, args ...string) error {
	if running, _ := docker(ctx, "inspect", "-f", "{{.State.Running}}", name); running == "true" {
		return nil
	}
	docker(ctx, "rm", "-f", name) // a stopped one from an earlier run
	_, err := docker(ctx, append([]string{"run", "-d", "--restart=always", "--network", "bridge", "--name", name}, args...)...)
	return err
}

// connectToKindNetwork puts a registry on the network kind created, where
// the nodes resolve it by name.
func connectToKindNetwork(ctx context.Context, name string) error {
	if nets, _ := docker(ctx, "inspect", "-f", "{{json .NetworkSettings.Networks.kind}}", name); nets != "null" && nets != "" {
		return nil
	}
	_, err := docker(ctx, "network", "connect", "kind", name)
	return err
}

// waitForNodes waits until every node of the spec is registered and Ready,
// and returns the kind container of each (from the provider ID kind gives
// every kubelet: kind://docker/CLUSTER/CONTAINER).
func waitForNodes(ctx context.Context, kubeconfig string, spec KindSpec) (map[string]string, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		list, err := client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			containers, missing := NodeContainers(list.Items, spec)
			if len(missing) == 0 {
				return containers, nil
			}
			err = fmt.Errorf("not registered or not Ready: %s", strings.Join(missing, ", "))
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the nodes of kind cluster %s: %w (a worker not named as the spec says means kind ignored the JoinConfiguration patch)", spec.Name, err)
		case <-time.After(2 * time.Second):
		}
	}
}

// NodeContainers maps each node the spec names to its kind container, and
// lists the nodes that are not there yet (absent, not Ready, or without a
// kind provider ID).
func NodeContainers(list []corev1.Node, spec KindSpec) (map[string]string, []string) {
	containers := map[string]string{}
	for _, n := range list {
		ready := false
		for _, c := range n.Status.Conditions {
			ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
		}
		prefix := "kind://docker/" + spec.Name + "/"
		if ready && strings.HasPrefix(n.Spec.ProviderID, prefix) {
			containers[n.Name] = strings.TrimPrefix(n.Spec.ProviderID, prefix)
		}
	}
	var missing []string
	for _, name := range spec.NodeNames() {
		if containers[name] == "" {
			missing = append(missing, name)
		}
	}
	return containers, missing
}

// pushWorkerImage runs `make jobimage` for the nodes' architecture; its last
// line is the pushed reference.
func (k *Kind) pushWorkerImage(ctx context.Context, registry, arch string) (string, error) {
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "jobimage", "REGISTRY="+registry, "WORKER_PLATFORMS=linux/"+arch)
	cmd.Dir = k.RepoRoot
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("make jobimage REGISTRY=%s: %v\n%s", registry, err, errb.String())
	}
	lines := strings.Fields(out.String())
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], registry+"/") {
		return "", fmt.Errorf("make jobimage printed %q; want the pushed reference in %s as its last line", out.String(), registry)
	}
	return lines[len(lines)-1], nil
}

// docker runs the docker CLI and returns its trimmed stdout.
func docker(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return strings.TrimSpace(out.String()), nil
}
