package provider

import (
	"bytes"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// parseAsKind decodes raw the way kind's own loader does
// (pkg/internal/apis/config/encoding.Parse, not importable): yaml v3 into
// kind's v1alpha4 types, unknown fields refused.
func parseAsKind(t *testing.T, raw []byte) *v1alpha4.Cluster {
	t.Helper()
	cfg := &v1alpha4.Cluster{}
	d := yaml.NewDecoder(bytes.NewReader(raw))
	d.KnownFields(true)
	if err := d.Decode(cfg); err != nil {
		t.Fatalf("the rendered config does not decode as kind's v1alpha4 Cluster: %v\n%s", err, raw)
	}
	if cfg.Kind != "Cluster" || cfg.APIVersion != "kind.x-k8s.io/v1alpha4" {
		t.Fatalf("kind %q apiVersion %q: kind reads only Cluster kind.x-k8s.io/v1alpha4", cfg.Kind, cfg.APIVersion)
	}
	return cfg
}

// joinRegistration decodes a node's JoinConfiguration patch.
type joinRegistration struct {
	Kind             string `yaml:"kind"`
	NodeRegistration struct {
		Name   string `yaml:"name"`
		Taints []struct {
			Key, Value, Effect string
		} `yaml:"taints"`
	} `yaml:"nodeRegistration"`
}

func TestKindConfigIsTheLocalClusterTwin(t *testing.T) {
	state := "/tmp/coral/_output/kind"
	spec := DefaultKindSpec(state, KindMirrors())
	raw, err := RenderKindConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg := parseAsKind(t, raw)
	v1alpha4.SetDefaultsCluster(cfg) // what kind does next; must not disturb ours

	if cfg.Name != "coral" {
		t.Errorf("cluster name %q, want coral", cfg.Name)
	}
	if len(cfg.Nodes) != 4 || cfg.Nodes[0].Role != v1alpha4.ControlPlaneRole {
		t.Fatalf("%d nodes (first %q), want a control plane and 3 workers", len(cfg.Nodes), cfg.Nodes[0].Role)
	}
	want := []struct {
		name   string
		labels map[string]string
		taint  string
	}{
		{"coral-node-1", map[string]string{"pool": "web"}, ""},
		{"coral-node-2", map[string]string{"pool": "web"}, ""},
		{"coral-node-3", map[string]string{"pool": "batch"}, "dedicated=batch:NoSchedule"},
	}
	for i, w := range want {
		n := cfg.Nodes[i+1]
		if n.Role != v1alpha4.WorkerRole {
			t.Errorf("node %d: role %q, want worker", i+1, n.Role)
		}
		if !reflect.DeepEqual(n.Labels, w.labels) {
			t.Errorf("%s: labels %v, want %v", w.name, n.Labels, w.labels)
		}
		if len(n.KubeadmConfigPatches) != 1 {
			t.Fatalf("%s: %d kubeadm patches, want 1", w.name, len(n.KubeadmConfigPatches))
		}
		var p joinRegistration
		d := yaml.NewDecoder(strings.NewReader(n.KubeadmConfigPatches[0]))
		d.KnownFields(true)
		if err := d.Decode(&p); err != nil {
			t.Fatalf("%s: patch does not parse: %v\n%s", w.name, err, n.KubeadmConfigPatches[0])
		}
		if p.Kind != "JoinConfiguration" || p.NodeRegistration.Name != w.name {
			t.Errorf("%s: patch %+v, want a JoinConfiguration naming the node %s", w.name, p, w.name)
		}
		var taints []string
		for _, tn := range p.NodeRegistration.Taints {
			taints = append(taints, tn.Key+"="+tn.Value+":"+tn.Effect)
		}
		if got := strings.Join(taints, ","); got != w.taint {
			t.Errorf("%s: taints %q, want %q", w.name, got, w.taint)
		}
	}

	// Every node mounts the registry config and the tools, read-only.
	for i, n := range cfg.Nodes {
		mounts := map[string]v1alpha4.Mount{}
		for _, m := range n.ExtraMounts {
			mounts[m.ContainerPath] = m
		}
		if m := mounts[NodeCertsDir]; m.HostPath != filepath.Join(state, "certs.d") || !m.Readonly {
			t.Errorf("node %d: %s mount %+v, want %s/certs.d read-only", i, NodeCertsDir, m, state)
		}
		if m := mounts[NodeToolsDir]; m.HostPath != filepath.Join(state, "bin") || !m.Readonly {
			t.Errorf("node %d: %s mount %+v, want %s/bin read-only", i, NodeToolsDir, m, state)
		}
	}

	// containerd reads hosts.toml from the mounted directory.
	if len(cfg.ContainerdConfigPatches) != 1 {
		t.Fatalf("containerd patches %q", cfg.ContainerdConfigPatches)
	}
	var patch map[string]any
	if _, err := toml.Decode(cfg.ContainerdConfigPatches[0], &patch); err != nil {
		t.Fatalf("the containerd patch is not TOML: %v", err)
	}
	reg := patch["plugins"].(map[string]any)["io.containerd.grpc.v1.cri"].(map[string]any)["registry"].(map[string]any)
	if reg["config_path"] != NodeCertsDir {
		t.Errorf("containerd registry config_path %v, want %s", reg["config_path"], NodeCertsDir)
	}
	if !strings.Contains(strings.Join(cfg.KubeadmConfigPatches, "\n"), "imageGCHighThresholdPercent: 100") {
		t.Errorf("kubelet image GC is not off: %q", cfg.KubeadmConfigPatches)
	}
}

func TestKindRegistryHostsFiles(t *testing.T) {
	spec := DefaultKindSpec("/state", KindMirrors())
	files := spec.HostsFiles()
	want := map[string]string{
		"/state/certs.d/localhost:5001/hosts.toml": "http://coral-kind-registry:5000",
		"/state/certs.d/localhost:5002/hosts.toml": "http://coral-kind-registry-auth:5000",
	}
	if !reflect.DeepEqual(sortedKeys(files), sortedKeys(want)) {
		t.Fatalf("hosts files %v, want %v", sortedKeys(files), sortedKeys(want))
	}
	for p, endpoint := range want {
		var h struct {
			Host map[string]struct {
				Capabilities []string `toml:"capabilities"`
			} `toml:"host"`
		}
		md, err := toml.Decode(files[p], &h)
		if err != nil {
			t.Fatalf("%s: %v\n%s", p, err, files[p])
		}
		if len(md.Undecoded()) > 0 {
			t.Errorf("%s: unexpected keys %v", p, md.Undecoded())
		}
		caps, ok := h.Host[endpoint]
		if len(h.Host) != 1 || !ok || !reflect.DeepEqual(caps.Capabilities, []string{"pull", "resolve"}) {
			t.Errorf("%s: hosts %+v, want only %s with pull and resolve", p, h.Host, endpoint)
		}
	}
}

func TestKindConfigRefusesWhatKindWouldNot(t *testing.T) {
	ok := DefaultKindSpec("/state", KindMirrors())
	for name, mutate := range map[string]func(*KindSpec){
		"relative state dir":      func(s *KindSpec) { s.CertsDir = "_output/kind/certs.d" },
		"two workers of one name": func(s *KindSpec) { s.Workers[1].Name = s.Workers[0].Name },
		"worker named as the control plane": func(s *KindSpec) {
			s.Workers[0].Name = "coral-control-plane"
		},
		"bad taint effect": func(s *KindSpec) { s.Workers[2].Taints[0].Effect = "NoScheduled" },
		"mirror with a path": func(s *KindSpec) {
			s.Mirrors = []RegistryMirror{{Host: "localhost:5001/x", Endpoint: "http://r:5000"}}
		},
		"no name": func(s *KindSpec) { s.Name = "" },
	} {
		t.Run(name, func(t *testing.T) {
			s := ok
			s.Workers = append([]KindWorker(nil), ok.Workers...)
			s.Workers[2].Taints = append([]Taint(nil), ok.Workers[2].Taints...)
			mutate(&s)
			if _, err := KindConfig(s); err == nil {
				t.Errorf("KindConfig accepted %s", name)
			}
		})
	}
	if _, err := KindConfig(ok); err != nil {
		t.Errorf("the default spec: %v", err)
	}
}

func TestKindSpecNodeImageAndNames(t *testing.T) {
	spec := DefaultKindSpec("/state", nil)
	spec.NodeImage = "kindest/node:v1.37.0"
	cfg, err := KindConfig(spec)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range cfg.Nodes {
		if n.Image != spec.NodeImage {
			t.Errorf("node image %q, want %q", n.Image, spec.NodeImage)
		}
	}
	if got := strings.Join(spec.NodeNames(), " "); got != "coral-control-plane coral-node-1 coral-node-2 coral-node-3" {
		t.Errorf("node names %q", got)
	}
}

func TestNodeContainersFromProviderIDs(t *testing.T) {
	spec := DefaultKindSpec("/state", nil)
	node := func(name, providerID string, ready corev1.ConditionStatus) corev1.Node {
		n := corev1.Node{Spec: corev1.NodeSpec{ProviderID: providerID}}
		n.Name = name
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}}
		return n
	}
	list := []corev1.Node{
		node("coral-control-plane", "kind://docker/coral/coral-control-plane", corev1.ConditionTrue),
		node("coral-node-1", "kind://docker/coral/coral-worker2", corev1.ConditionTrue),
		node("coral-node-2", "kind://docker/coral/coral-worker", corev1.ConditionTrue),
		node("coral-node-3", "kind://docker/coral/coral-worker3", corev1.ConditionFalse),
		node("coral-worker4", "kind://docker/other/coral-worker4", corev1.ConditionTrue),
	}
	got, missing := NodeContainers(list, spec)
	want := map[string]string{"coral-control-plane": "coral-control-plane", "coral-node-1": "coral-worker2", "coral-node-2": "coral-worker"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("containers %v, want %v", got, want)
	}
	if !reflect.DeepEqual(missing, []string{"coral-node-3"}) {
		t.Errorf("missing %v, want the node that is not Ready", missing)
	}
}
