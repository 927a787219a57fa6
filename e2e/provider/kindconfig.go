package provider

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// KindSpec is what the kind cluster of the e2e tests looks like. KindConfig
// turns it into kind's own configuration; nothing here touches Docker.
type KindSpec struct {
	// Name of the kind cluster; the control-plane node is NAME-control-plane.
	Name string
	// NodeImage is the kindest/node image; "" takes kind's default.
	NodeImage string
	// Workers, in order. Each gets its Name as its Kubernetes node name.
	Workers []KindWorker
	// Mirrors make the nodes' containerd pull HOST/… from Endpoint: the
	// registry containers, reached by name on the kind network.
	Mirrors []RegistryMirror
	// CertsDir is the host directory holding one HOST/hosts.toml per mirror
	// (HostsTOML); it is mounted read-only at /etc/containerd/certs.d.
	CertsDir string
	// ToolsDir is the host directory with sockpipe (the CRI bridge, see
	// CRIForwarder); it is mounted read-only at NodeToolsDir.
	ToolsDir string
}

// KindWorker is one worker node.
type KindWorker struct {
	Name   string
	Labels map[string]string
	Taints []Taint
}

// Taint is a node taint kubeadm sets when the node joins.
type Taint struct {
	Key, Value, Effect string
}

// RegistryMirror sends pulls of Host/… to Endpoint (http://NAME:PORT).
type RegistryMirror struct {
	Host     string // what images are named with, from the host and the nodes: localhost:5001
	Endpoint string // where the nodes really pull from: http://coral-kind-registry:5000
}

const (
	// NodeCertsDir is containerd's registry config_path on the nodes.
	NodeCertsDir = "/etc/containerd/certs.d"
	// NodeToolsDir holds the e2e tools on the nodes.
	NodeToolsDir = "/coral-e2e"
	// NodeCRISocket is containerd's socket in a kind node.
	NodeCRISocket = "/run/containerd/containerd.sock"
)

// DefaultKindSpec is the kind twin of the local cluster: coral-node-1 and
// coral-node-2 in pool=web, coral-node-3 in pool=batch tainted
// dedicated=batch:NoSchedule, and the plain and the htpasswd registry
// mirrored into every node. The control plane (coral-control-plane) is a
// node too, as in every kind cluster.
func DefaultKindSpec(stateDir string, mirrors []RegistryMirror) KindSpec {
	return KindSpec{
		Name: "coral",
		Workers: []KindWorker{
			{Name: "coral-node-1", Labels: map[string]string{"pool": "web"}},
			{Name: "coral-node-2", Labels: map[string]string{"pool": "web"}},
			{Name: "coral-node-3", Labels: map[string]string{"pool": "batch"},
				Taints: []Taint{{Key: "dedicated", Value: "batch", Effect: "NoSchedule"}}},
		},
		Mirrors:  mirrors,
		CertsDir: path.Join(stateDir, "certs.d"),
		ToolsDir: path.Join(stateDir, "bin"),
	}
}

// NodeNames lists the Kubernetes node names the spec gives: the control
// plane first, then the workers.
func (s KindSpec) NodeNames() []string {
	names := []string{s.Name + "-control-plane"}
	for _, w := range s.Workers {
		names = append(names, w.Name)
	}
	return names
}

// containerdRegistryPatch turns on containerd's per-registry hosts.toml
// directory (kind's documented local-registry setup; node images of kind
// v0.27 and later have it already, older ones need it).
const containerdRegistryPatch = `[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "` + NodeCertsDir + `"`

// kubeletPatch keeps kubelet's image garbage collection off, as on the
// local cluster: the tests decide what a node holds.
const kubeletPatch = `kind: KubeletConfiguration
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99`

// KindConfig returns kind's v1alpha4 configuration for the spec.
func KindConfig(s KindSpec) (*v1alpha4.Cluster, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	mounts := []v1alpha4.Mount{
		{HostPath: s.CertsDir, ContainerPath: NodeCertsDir, Readonly: true},
		{HostPath: s.ToolsDir, ContainerPath: NodeToolsDir, Readonly: true},
	}
	cfg := &v1alpha4.Cluster{
		TypeMeta:                v1alpha4.TypeMeta{Kind: "Cluster", APIVersion: "kind.x-k8s.io/v1alpha4"},
		Name:                    s.Name,
		ContainerdConfigPatches: []string{containerdRegistryPatch},
		KubeadmConfigPatches:    []string{kubeletPatch},
		Nodes: []v1alpha4.Node{{
			Role:        v1alpha4.ControlPlaneRole,
			Image:       s.NodeImage,
			ExtraMounts: mounts,
		}},
	}
	for _, w := range s.Workers {
		patch, err := joinPatch(w)
		if err != nil {
			return nil, err
		}
		cfg.Nodes = append(cfg.Nodes, v1alpha4.Node{
			Role:                 v1alpha4.WorkerRole,
			Image:                s.NodeImage,
			Labels:               w.Labels,
			ExtraMounts:          mounts,
			KubeadmConfigPatches: []string{patch},
		})
	}
	return cfg, nil
}

// RenderKindConfig is KindConfig as the YAML kind reads (kind create
// cluster --config, or cluster.CreateWithRawConfig).
func RenderKindConfig(s KindSpec) ([]byte, error) {
	cfg, err := KindConfig(s)
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(cfg)
}

// joinPatch names the worker and taints it through kubeadm's
// JoinConfiguration: kind's config has node labels but no taints, and its
// worker names (NAME-worker, NAME-worker2, …) are not the ones the tests
// use. kubeadm passes the name to kubelet as --hostname-override. No
// apiVersion: the patch applies to whichever kubeadm API the node image uses.
func joinPatch(w KindWorker) (string, error) {
	type taint struct {
		Key    string `yaml:"key"`
		Value  string `yaml:"value,omitempty"`
		Effect string `yaml:"effect"`
	}
	type registration struct {
		Name   string  `yaml:"name"`
		Taints []taint `yaml:"taints,omitempty"`
	}
	p := struct {
		Kind             string       `yaml:"kind"`
		NodeRegistration registration `yaml:"nodeRegistration"`
	}{Kind: "JoinConfiguration", NodeRegistration: registration{Name: w.Name}}
	for _, t := range w.Taints {
		p.NodeRegistration.Taints = append(p.NodeRegistration.Taints, taint(t))
	}
	b, err := yaml.Marshal(p)
	return string(b), err
}

// HostsTOML is containerd's hosts.toml for a mirror: pulls of m.Host go to
// m.Endpoint, which speaks plain http.
func HostsTOML(m RegistryMirror) string {
	return fmt.Sprintf("# written by the coral e2e kind provider\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n", m.Endpoint)
}

// HostsFiles maps the path of each hosts.toml under CertsDir to its content.
func (s KindSpec) HostsFiles() map[string]string {
	files := map[string]string{}
	for _, m := range s.Mirrors {
		files[path.Join(s.CertsDir, m.Host, "hosts.toml")] = HostsTOML(m)
	}
	return files
}

func (s KindSpec) validate() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("the kind cluster needs a name"))
	}
	if !path.IsAbs(s.CertsDir) || !path.IsAbs(s.ToolsDir) {
		errs = append(errs, fmt.Errorf("kind mounts host directories by absolute path: CertsDir %q, ToolsDir %q", s.CertsDir, s.ToolsDir))
	}
	seen := map[string]bool{s.Name + "-control-plane": true}
	for _, w := range s.Workers {
		if w.Name == "" || seen[w.Name] {
			errs = append(errs, fmt.Errorf("worker name %q is empty or used twice (the control plane is %s-control-plane)", w.Name, s.Name))
		}
		seen[w.Name] = true
		for _, t := range w.Taints {
			switch t.Effect {
			case "NoSchedule", "PreferNoSchedule", "NoExecute":
			default:
				errs = append(errs, fmt.Errorf("worker %s: taint %s has effect %q, want NoSchedule, PreferNoSchedule or NoExecute", w.Name, t.Key, t.Effect))
			}
		}
	}
	for _, m := range s.Mirrors {
		if m.Host == "" || strings.ContainsAny(m.Host, "/ ") || !strings.HasPrefix(m.Endpoint, "http") {
			errs = append(errs, fmt.Errorf("registry mirror %q → %q: want HOST[:PORT] → http(s)://NAME:PORT", m.Host, m.Endpoint))
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
