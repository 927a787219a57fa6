// Package plan turns nodes and items into a Plan: one Task per node that will
// get the items, and a Skip with a reason for every selected node that will
// not. It decides node selection and discovers each node's container-runtime
// socket. It is pure: no I/O.
package plan

import (
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/coral-dev/coral/pkg/artifact"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Annotations and labels Coral reads from nodes.
const (
	// AnnotationCRISocket is kubeadm's record of a node's runtime socket.
	AnnotationCRISocket = "kubeadm.alpha.kubernetes.io/cri-socket"
	// AnnotationHostRoot, when set on a node, is prefixed to every host path
	// Coral writes on that node (e.g. nodes that share one host in tests, or
	// nodes whose writable root is not "/").
	AnnotationHostRoot = artifact.AnnotationHostRoot
	// AnnotationArtifactRoot, when set on a node, replaces the run's
	// artifact root directory on that node.
	AnnotationArtifactRoot = artifact.AnnotationRoot
)

// Item is one thing to bring to a node: an image reference or an artifact
// source URL, with the digest expected for it (empty when unknown).
type Item struct {
	Ref            string `json:"ref"`
	ExpectedDigest string `json:"expectedDigest,omitempty"`
}

// Task is the work for one node.
type Task struct {
	Node string
	// RuntimeSocket is the absolute path of the node's CRI socket on the host.
	RuntimeSocket string
	// SocketSource says how RuntimeSocket was found, for --dry-run and errors.
	SocketSource string
	// HostRoot is the node's host-root prefix ("" for "/").
	HostRoot string
	// ArtifactRoot is the node's own artifact root, if it has one.
	ArtifactRoot string
	Items        []Item
}

// Skip is a selected node that gets no task, with the reason.
type Skip struct {
	Node   string
	Reason string
}

// Plan is the per-node work of one run.
type Plan struct {
	Tasks   []Task
	Skipped []Skip
}

// Options select nodes and runtime sockets.
type Options struct {
	// Selector selects nodes by label; nil or empty selects all.
	Selector labels.Selector
	// NodeNames, when set, restricts the run to these nodes (all must exist).
	NodeNames []string
	// IncludeUnschedulable includes cordoned nodes.
	IncludeUnschedulable bool
	// RuntimeEndpoint, when set, overrides socket discovery on every node.
	RuntimeEndpoint string
	// SkipRuntimeSocket plans without a runtime socket (artifact runs).
	SkipRuntimeSocket bool
	// WorkerPlatforms are the os/arch pairs the worker image supports.
	WorkerPlatforms []string
}

// Errors callers branch on (they are the user's to fix: exit code 2).
var (
	ErrNoNodeMatched = errors.New("no node matched")
	ErrUnknownNode   = errors.New("unknown node")
	ErrNoItems       = errors.New("nothing to prefetch")
)

// DefaultWorkerPlatforms are the platforms of the published worker image.
var DefaultWorkerPlatforms = []string{"linux/amd64", "linux/arm64"}

// Build selects nodes and makes one task per usable node.
func Build(nodes []*corev1.Node, items []Item, o Options) (*Plan, error) {
	if len(items) == 0 {
		return nil, ErrNoItems
	}
	selected, err := Select(nodes, o.Selector, o.NodeNames)
	if err != nil {
		return nil, err
	}
	platforms := o.WorkerPlatforms
	if len(platforms) == 0 {
		platforms = DefaultWorkerPlatforms
	}
	// Sized once: a controller plans every node at every reconcile, and
	// growing the slice by doubling was most of what that allocated (5.4 of
	// 17 GB at 5000 nodes, bench-scale --modes controller).
	p := &Plan{Tasks: make([]Task, 0, len(selected))}
	for _, n := range selected {
		if reason := unusable(n, o.IncludeUnschedulable, platforms); reason != "" {
			p.Skipped = append(p.Skipped, Skip{Node: n.Name, Reason: reason})
			continue
		}
		var sock, src string
		if !o.SkipRuntimeSocket {
			var err error
			if sock, src, err = RuntimeSocket(n, o.RuntimeEndpoint); err != nil {
				p.Skipped = append(p.Skipped, Skip{Node: n.Name, Reason: err.Error()})
				continue
			}
		}
		p.Tasks = append(p.Tasks, Task{
			Node:          n.Name,
			RuntimeSocket: sock,
			SocketSource:  src,
			HostRoot:      artifact.HostRoot(n),
			ArtifactRoot:  n.Annotations[AnnotationArtifactRoot],
			Items:         append([]Item(nil), items...),
		})
	}
	return p, nil
}

// SlimNode copies the part of a Node that Build, Select and RuntimeSocket
// read (and what names and versions the object): labels, annotations,
// unschedulable, taints, conditions and node info. Managed fields, the
// images the node lists, addresses, capacity and volumes stay behind —
// most of a real node's bytes (its images alone up to 50 entries).
func SlimNode(n *corev1.Node) corev1.Node {
	return corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Generation: n.Generation,
			CreationTimestamp: n.CreationTimestamp, DeletionTimestamp: n.DeletionTimestamp,
			Labels: n.Labels, Annotations: n.Annotations,
		},
		Spec:   corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable, Taints: n.Spec.Taints},
		Status: corev1.NodeStatus{Conditions: n.Status.Conditions, NodeInfo: n.Status.NodeInfo},
	}
}

// SameInputs says whether two versions of a node look the same to Build,
// Select and RuntimeSocket: labels, annotations, cordon, taints, the Ready
// condition and the runtime and platform it reports. A controller keeps a
// plan while every node update is one of the others (heartbeats, images,
// capacity), so a reconcile replans only when a plan could change.
func SameInputs(a, b *corev1.Node) bool {
	ra, rb := readyCondition(a), readyCondition(b)
	ia, ib := a.Status.NodeInfo, b.Status.NodeInfo
	return a.Name == b.Name && maps.Equal(a.Labels, b.Labels) && maps.Equal(a.Annotations, b.Annotations) &&
		a.Spec.Unschedulable == b.Spec.Unschedulable &&
		slices.EqualFunc(a.Spec.Taints, b.Spec.Taints, func(x, y corev1.Taint) bool {
			return x.Key == y.Key && x.Value == y.Value && x.Effect == y.Effect
		}) &&
		ra.Status == rb.Status && ra.Reason == rb.Reason &&
		ia.OperatingSystem == ib.OperatingSystem && ia.Architecture == ib.Architecture &&
		ia.ContainerRuntimeVersion == ib.ContainerRuntimeVersion && ia.KubeletVersion == ib.KubeletVersion
}

// readyCondition is a node's Ready condition, or the zero condition.
func readyCondition(n *corev1.Node) corev1.NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c
		}
	}
	return corev1.NodeCondition{}
}

// Select returns the nodes matching the selector and names, sorted by name:
// nodes' own pointers, which it neither copies nor changes (a controller
// plans over every node of its cache on each reconcile).
// Unknown names and an empty result are errors that say what to change.
func Select(nodes []*corev1.Node, sel labels.Selector, names []string) ([]*corev1.Node, error) {
	byName := make(map[string]*corev1.Node, len(nodes))
	for _, n := range nodes {
		byName[n.Name] = n
	}
	var unknown []string
	want := map[string]bool{}
	for _, n := range names {
		if byName[n] == nil {
			unknown = append(unknown, n)
		}
		want[n] = true
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("%w %s in --nodes: the cluster has %s", ErrUnknownNode, quoteList(unknown), describeNames(nodes))
	}
	var out []*corev1.Node
	for _, n := range nodes {
		if len(want) > 0 && !want[n.Name] {
			continue
		}
		if sel != nil && !sel.Empty() && !sel.Matches(labels.Set(n.Labels)) {
			continue
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		switch {
		case len(nodes) == 0:
			return nil, fmt.Errorf("%w: the cluster has no nodes", ErrNoNodeMatched)
		case sel != nil && !sel.Empty() && len(names) > 0:
			return nil, fmt.Errorf("%w both --selector %q and --nodes %s", ErrNoNodeMatched, sel.String(), strings.Join(names, ","))
		case sel != nil && !sel.Empty():
			return nil, fmt.Errorf("%w the selector %q (check the labels with: kubectl get nodes --show-labels)", ErrNoNodeMatched, sel.String())
		}
		return nil, fmt.Errorf("%w", ErrNoNodeMatched)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}

func describeNames(nodes []*corev1.Node) string {
	names := make([]string, 0, len(nodes))
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	if len(names) > 10 {
		return fmt.Sprintf("%d nodes, e.g. %s", len(names), strings.Join(names[:10], ", "))
	}
	return strings.Join(names, ", ")
}

// unusable says why a node cannot get a task, or "".
func unusable(n *corev1.Node, includeUnschedulable bool, platforms []string) string {
	if isVirtual(n) {
		return "virtual node (no container runtime to pull into)"
	}
	if reason := notReady(n); reason != "" {
		return reason
	}
	if n.Spec.Unschedulable && !includeUnschedulable {
		return "node is cordoned (use --include-unschedulable to include it)"
	}
	osName, arch := n.Labels[corev1.LabelOSStable], n.Labels[corev1.LabelArchStable]
	if osName == "" {
		osName = n.Status.NodeInfo.OperatingSystem
	}
	if arch == "" {
		arch = n.Status.NodeInfo.Architecture
	}
	if osName != "" && arch != "" {
		ok := false
		for _, p := range platforms {
			if p == osName+"/"+arch {
				ok = true
			}
		}
		if !ok {
			return fmt.Sprintf("the worker image has no %s/%s build (it has %s)", osName, arch, strings.Join(platforms, ", "))
		}
	}
	return ""
}

func notReady(n *corev1.Node) string {
	for _, c := range n.Status.Conditions {
		if c.Type != corev1.NodeReady {
			continue
		}
		if c.Status == corev1.ConditionTrue {
			return ""
		}
		msg := fmt.Sprintf("node is not Ready (Ready=%s", c.Status)
		if c.Reason != "" {
			msg += ", " + c.Reason
		}
		return msg + ")"
	}
	return "node is not Ready (it reports no Ready condition)"
}

// isVirtual recognises nodes backed by no kubelet/runtime of their own:
// virtual-kubelet providers (e.g. ACI, Fargate-style) and simulated nodes.
func isVirtual(n *corev1.Node) bool {
	if n.Labels["type"] == "virtual-kubelet" || n.Annotations["kwok.x-k8s.io/node"] != "" {
		return true
	}
	for _, t := range n.Spec.Taints {
		if strings.HasPrefix(t.Key, "virtual-kubelet.io/") {
			return true
		}
	}
	return false
}

// RuntimeSocket finds the node's CRI socket path: override, then the kubeadm
// annotation, then the runtime named in status.nodeInfo. It returns the path
// and where it came from.
func RuntimeSocket(n *corev1.Node, override string) (string, string, error) {
	if override != "" {
		p, err := socketPath(override)
		if err != nil {
			return "", "", fmt.Errorf("--runtime-endpoint: %w", err)
		}
		return p, "--runtime-endpoint", nil
	}
	if a := n.Annotations[AnnotationCRISocket]; a != "" {
		p, err := socketPath(a)
		if err != nil {
			return "", "", fmt.Errorf("annotation %s: %w", AnnotationCRISocket, err)
		}
		return p, "annotation " + AnnotationCRISocket, nil
	}
	rv := n.Status.NodeInfo.ContainerRuntimeVersion
	kv := n.Status.NodeInfo.KubeletVersion
	runtime, _, _ := strings.Cut(rv, "://")
	switch {
	case runtime == "containerd" && (strings.Contains(kv, "+k3s") || strings.Contains(kv, "+rke2")):
		return "/run/k3s/containerd/containerd.sock", "k3s/RKE2 containerd (" + kv + ")", nil
	case runtime == "containerd":
		return "/run/containerd/containerd.sock", "containerRuntimeVersion " + rv, nil
	case runtime == "cri-o":
		return "/var/run/crio/crio.sock", "containerRuntimeVersion " + rv, nil
	case runtime == "docker":
		return "/run/cri-dockerd.sock", "containerRuntimeVersion " + rv + " (cri-dockerd)", nil
	}
	if rv == "" {
		rv = "unknown"
	}
	return "", "", fmt.Errorf("cannot tell the runtime socket of this node (runtime %q, no %s annotation): pass --runtime-endpoint", rv, AnnotationCRISocket)
}

func socketPath(endpoint string) (string, error) {
	p := endpoint
	if strings.Contains(endpoint, "://") {
		scheme, rest, _ := strings.Cut(endpoint, "://")
		if scheme != "unix" {
			return "", fmt.Errorf("runtime endpoint %q: only unix:// sockets are supported", endpoint)
		}
		p = rest
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("runtime endpoint %q: want an absolute socket path such as unix:///run/containerd/containerd.sock", endpoint)
	}
	return path.Clean(p), nil
}
