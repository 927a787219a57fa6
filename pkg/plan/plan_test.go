package plan

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

type nodeOpt func(*corev1.Node)

func node(name string, opts ...nodeOpt) corev1.Node {
	n := corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}, Annotations: map[string]string{}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			NodeInfo:   corev1.NodeSystemInfo{ContainerRuntimeVersion: "containerd://2.1.0", KubeletVersion: "v1.37.2"},
		},
	}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func label(k, v string) nodeOpt    { return func(n *corev1.Node) { n.Labels[k] = v } }
func annotate(k, v string) nodeOpt { return func(n *corev1.Node) { n.Annotations[k] = v } }
func runtimeVersion(v string) nodeOpt {
	return func(n *corev1.Node) { n.Status.NodeInfo.ContainerRuntimeVersion = v }
}
func kubelet(v string) nodeOpt { return func(n *corev1.Node) { n.Status.NodeInfo.KubeletVersion = v } }
func cordoned(n *corev1.Node)  { n.Spec.Unschedulable = true }
func notReadyNode(n *corev1.Node) {
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}}
}

var items = []Item{{Ref: "nginx:1.27"}}

// ptrs is nodes as Build takes them: pointers, as a cache holds them.
func ptrs(nodes ...corev1.Node) []*corev1.Node {
	out := make([]*corev1.Node, len(nodes))
	for i := range nodes {
		out[i] = &nodes[i]
	}
	return out
}

func TestBuildSelection(t *testing.T) {
	nodes := []corev1.Node{
		node("c", label("pool", "batch")),
		node("a", label("pool", "web")),
		node("b", label("pool", "web"), cordoned),
		node("d", label("pool", "web"), notReadyNode),
		node("e", label("type", "virtual-kubelet")),
		node("f", label("kubernetes.io/arch", "s390x")),
	}
	tests := []struct {
		name        string
		sel         string
		names       []string
		unsched     bool
		wantTasks   []string
		wantSkipped map[string]string
		wantErr     error
	}{
		{name: "all nodes", wantTasks: []string{"a", "c"}, wantSkipped: map[string]string{"b": "cordoned", "d": "not Ready (Ready=Unknown, NodeStatusUnknown)", "e": "virtual node", "f": "no linux/s390x build"}},
		{name: "selector", sel: "pool=web", wantTasks: []string{"a"}, wantSkipped: map[string]string{"b": "--include-unschedulable", "d": "not Ready"}},
		{name: "set-based selector", sel: "pool in (batch),!type", wantTasks: []string{"c"}},
		{name: "include unschedulable", sel: "pool=web", unsched: true, wantTasks: []string{"a", "b"}, wantSkipped: map[string]string{"d": "not Ready"}},
		{name: "names", names: []string{"c", "b"}, wantTasks: []string{"c"}, wantSkipped: map[string]string{"b": "cordoned"}},
		{name: "names and selector intersect", sel: "pool=web", names: []string{"a", "c"}, wantTasks: []string{"a"}},
		{name: "unknown name", names: []string{"a", "zz"}, wantErr: ErrUnknownNode},
		{name: "selector matches nothing", sel: "pool=gpu", wantErr: ErrNoNodeMatched},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sel := labels.Everything()
			if tt.sel != "" {
				var err error
				if sel, err = labels.Parse(tt.sel); err != nil {
					t.Fatal(err)
				}
			}
			p, err := Build(ptrs(nodes...), items, Options{Selector: sel, NodeNames: tt.names, IncludeUnschedulable: tt.unsched})
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, task := range p.Tasks {
				got = append(got, task.Node)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantTasks, ",") {
				t.Errorf("tasks %v, want %v", got, tt.wantTasks)
			}
			if len(p.Skipped) != len(tt.wantSkipped) {
				t.Errorf("skipped %+v, want %v", p.Skipped, tt.wantSkipped)
			}
			for _, s := range p.Skipped {
				want, ok := tt.wantSkipped[s.Node]
				if !ok || !strings.Contains(s.Reason, want) {
					t.Errorf("skip %s: reason %q, want it to contain %q", s.Node, s.Reason, want)
				}
			}
		})
	}
}

func TestUnknownNodeMessageListsNodes(t *testing.T) {
	_, err := Build(ptrs(node("a"), node("b")), items, Options{NodeNames: []string{"x"}})
	if err == nil || !strings.Contains(err.Error(), `"x"`) || !strings.Contains(err.Error(), "a, b") {
		t.Fatalf("err = %v", err)
	}
	if _, err := Build(ptrs(node("a")), nil, Options{}); !errors.Is(err, ErrNoItems) {
		t.Fatalf("no items: %v", err)
	}
}

func TestRuntimeSocket(t *testing.T) {
	tests := []struct {
		name     string
		n        corev1.Node
		override string
		want     string
		wantErr  string
	}{
		{name: "kubeadm annotation", n: node("a", annotate(AnnotationCRISocket, "unix:///var/run/containerd/containerd.sock")), want: "/var/run/containerd/containerd.sock"},
		{name: "annotation without scheme", n: node("a", annotate(AnnotationCRISocket, "/run/crio/crio.sock")), want: "/run/crio/crio.sock"},
		{name: "override wins", n: node("a", annotate(AnnotationCRISocket, "unix:///x.sock")), override: "unix:///custom/cri.sock", want: "/custom/cri.sock"},
		{name: "containerd", n: node("a"), want: "/run/containerd/containerd.sock"},
		{name: "k3s", n: node("a", kubelet("v1.31.4+k3s1")), want: "/run/k3s/containerd/containerd.sock"},
		{name: "rke2", n: node("a", kubelet("v1.31.4+rke2r1")), want: "/run/k3s/containerd/containerd.sock"},
		{name: "cri-o", n: node("a", runtimeVersion("cri-o://1.31.0")), want: "/var/run/crio/crio.sock"},
		{name: "unknown runtime", n: node("a", runtimeVersion("frakti://1")), wantErr: "--runtime-endpoint"},
		{name: "tcp endpoint refused", n: node("a"), override: "tcp://1.2.3.4:1", wantErr: "only unix://"},
		{name: "relative path refused", n: node("a", annotate(AnnotationCRISocket, "run/x.sock")), wantErr: "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := RuntimeSocket(&tt.n, tt.override)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestUndiscoverableSocketIsSkipped(t *testing.T) {
	p, err := Build(ptrs(node("a", runtimeVersion("")), node("b", annotate(AnnotationHostRoot, "/srv/nodes/b"))), items, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Skipped) != 1 || p.Skipped[0].Node != "a" || !strings.Contains(p.Skipped[0].Reason, "--runtime-endpoint") {
		t.Fatalf("skipped = %+v", p.Skipped)
	}
	if len(p.Tasks) != 1 || p.Tasks[0].HostRoot != "/srv/nodes/b" {
		t.Fatalf("tasks = %+v", p.Tasks)
	}
}

// SlimNode keeps all a plan reads: the same nodes, full or slimmed, make
// the same plan, and the slim copy holds no images or managed fields.
func TestSlimNodePlansAlike(t *testing.T) {
	heavy := func(n *corev1.Node) {
		n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}
		n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause@sha256:" + strings.Repeat("a", 64)}, SizeBytes: 1 << 20}}
		n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}}
		n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule}}
	}
	full := []corev1.Node{
		node("a", label("pool", "web"), heavy),
		node("b", label("pool", "web"), cordoned, heavy),
		node("c", label("pool", "batch"), notReadyNode, heavy),
		node("d", label("pool", "web"), annotate(AnnotationCRISocket, "unix:///run/crio/crio.sock"), annotate(AnnotationHostRoot, "/host/d"), heavy),
		node("e", label("pool", "web"), runtimeVersion("docker://27.0.0"), heavy),
		node("f", label("kubernetes.io/arch", "s390x"), heavy),
		node("g", label("type", "virtual-kubelet"), kubelet("v1.30.0-vk"), heavy),
	}
	var slim []corev1.Node
	for i := range full {
		s := SlimNode(&full[i])
		if s.ManagedFields != nil || s.Status.Images != nil || s.Status.Addresses != nil {
			t.Fatalf("%s: slim copy kept managed fields, images or addresses", s.Name)
		}
		slim = append(slim, s)
	}
	web, _ := labels.Parse("pool=web")
	for _, o := range []Options{{}, {Selector: web}, {Selector: web, IncludeUnschedulable: true}, {NodeNames: []string{"d", "e"}}} {
		a, errA := Build(ptrs(full...), items, o)
		b, errB := Build(ptrs(slim...), items, o)
		if (errA == nil) != (errB == nil) || !reflect.DeepEqual(a, b) {
			t.Errorf("options %+v: full nodes plan %+v (%v), slim nodes %+v (%v)", o, a, errA, b, errB)
		}
	}
}

// TestSameInputs: every change Build can see makes two versions differ, and
// the changes it cannot see (what a heartbeat or an image pull updates)
// leave them the same — and leave the plan as it was.
func TestSameInputs(t *testing.T) {
	base := func() corev1.Node {
		return node("a", label("pool", "web"), func(n *corev1.Node) {
			n.Spec.Taints = []corev1.Taint{{Key: "dedicated", Value: "web", Effect: corev1.TaintEffectNoSchedule}}
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse})
			n.Status.NodeInfo.OperatingSystem, n.Status.NodeInfo.Architecture = "linux", "amd64"
		})
	}
	differ := map[string]nodeOpt{
		"label":        label("pool", "batch"),
		"new label":    label("zone", "b"),
		"annotation":   annotate(AnnotationCRISocket, "unix:///run/crio.sock"),
		"cordon":       cordoned,
		"not ready":    notReadyNode,
		"ready reason": func(n *corev1.Node) { n.Status.Conditions[0].Reason = "KubeletReady" },
		"taint": func(n *corev1.Node) {
			n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "virtual-kubelet.io/provider", Effect: corev1.TaintEffectNoSchedule})
		},
		"taint effect":       func(n *corev1.Node) { n.Spec.Taints[0].Effect = corev1.TaintEffectNoExecute },
		"runtime":            runtimeVersion("cri-o://1.33.0"),
		"kubelet":            kubelet("v1.37.2+k3s1"),
		"operating system":   func(n *corev1.Node) { n.Status.NodeInfo.OperatingSystem = "windows" },
		"architecture":       func(n *corev1.Node) { n.Status.NodeInfo.Architecture = "arm64" },
		"no ready condition": func(n *corev1.Node) { n.Status.Conditions = n.Status.Conditions[1:] },
	}
	for name, change := range differ {
		a, b := base(), base()
		change(&b)
		if SameInputs(&a, &b) || SameInputs(&b, &a) {
			t.Errorf("%s: SameInputs says the same", name)
		}
	}
	same := map[string]nodeOpt{
		"heartbeat": func(n *corev1.Node) {
			for i := range n.Status.Conditions {
				n.Status.Conditions[i].LastHeartbeatTime = metav1.Now()
			}
		},
		"ready message":    func(n *corev1.Node) { n.Status.Conditions[0].Message = "kubelet is posting ready status" },
		"other condition":  func(n *corev1.Node) { n.Status.Conditions[1].Status = corev1.ConditionTrue },
		"resource version": func(n *corev1.Node) { n.ResourceVersion = "42" },
		"images":           func(n *corev1.Node) { n.Status.Images = []corev1.ContainerImage{{Names: []string{"nginx:1.27"}}} },
		"taint time":       func(n *corev1.Node) { n.Spec.Taints[0].TimeAdded = &metav1.Time{} },
	}
	for name, change := range same {
		a, b := base(), base()
		change(&b)
		if !SameInputs(&a, &b) {
			t.Errorf("%s: SameInputs says they differ", name)
			continue
		}
		pa, err := Build(ptrs(a), items, Options{})
		if err != nil {
			t.Fatal(err)
		}
		pb, err := Build(ptrs(b), items, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(pa, pb) {
			t.Errorf("%s: SameInputs says the same, but the plans differ: %+v vs %+v", name, pa, pb)
		}
	}
}
