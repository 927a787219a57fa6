package artifact

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// A node's artifact label always describes what is on the node's disk:
//
//   - before a run may change a node's copy, the label is removed (Unlabel),
//     so no new workload is sent to a node whose content is about to be
//     replaced, or is left mixed by a run that fails half-way;
//   - after a run, the label is set on the nodes where every source
//     succeeded, and stays off the others (Relabel).
//
// A node whose label already says exactly what the run will bring keeps it:
// the run can only confirm it.

// Nodes is the part of the node API labelling needs;
// client.CoreV1().Nodes() is one.
type Nodes interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Node, error)
}

// NodeOutcome is what a run did on one node.
type NodeOutcome struct {
	Node string
	// Succeeded is true when every source is on the node, verified.
	Succeeded bool
	// Digests are the sources' digests (used when Succeeded).
	Digests []string
}

// LabelError is a label write that failed on one node.
type LabelError struct {
	Node string
	// Set is true for setting the label, false for removing it.
	Set bool
	Err error
}

func (e *LabelError) Error() string {
	if e.Set {
		return fmt.Sprintf("labelling node %s: %v", e.Node, e.Err)
	}
	return fmt.Sprintf("removing the label from node %s: %v", e.Node, e.Err)
}

func (e *LabelError) Unwrap() error { return e.Err }

// Labels returns the current label value of every node that holds artifact
// name (one List, by label selector).
func Labels(ctx context.Context, nodes Nodes, name string) (map[string]string, error) {
	key := LabelKey(name)
	l, err := nodes.List(ctx, metav1.ListOptions{LabelSelector: key})
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(l.Items))
	for _, n := range l.Items {
		if v, ok := n.Labels[key]; ok {
			out[n.Name] = v
		}
	}
	return out, nil
}

// Unlabel removes artifact name's label from the given nodes before a run
// that may change their copy. current is the label state (from Labels);
// keep, when not empty, is the value a full success would set: nodes already
// labelled with it keep their label. It returns the labels it removed (node →
// value, for Restore) and one error per node it could not unlabel.
func Unlabel(ctx context.Context, nodes Nodes, name string, targets []string, current map[string]string, keep string) (removed map[string]string, errs []*LabelError) {
	removed = map[string]string{}
	for _, n := range sorted(targets) {
		v, ok := current[n]
		if !ok || (keep != "" && v == keep) {
			continue
		}
		if err := patchLabel(ctx, nodes, n, LabelKey(name), nil); err != nil {
			errs = append(errs, &LabelError{Node: n, Err: err})
			continue
		}
		removed[n] = v
		delete(current, n)
	}
	return removed, errs
}

// Relabel makes the label of every node in outcomes describe its disk after
// a run: set to LabelValue(digests) where every source succeeded, removed
// where anything failed. current is the label state after Unlabel; it is
// updated. Nodes already in the right state are not written to.
func Relabel(ctx context.Context, nodes Nodes, name string, outcomes []NodeOutcome, current map[string]string) []*LabelError {
	var errs []*LabelError
	sort.Slice(outcomes, func(i, j int) bool { return outcomes[i].Node < outcomes[j].Node })
	for _, o := range outcomes {
		v, has := current[o.Node]
		if !o.Succeeded {
			if !has {
				continue
			}
			if err := patchLabel(ctx, nodes, o.Node, LabelKey(name), nil); err != nil {
				errs = append(errs, &LabelError{Node: o.Node, Err: err})
				continue
			}
			delete(current, o.Node)
			continue
		}
		want := LabelValue(o.Digests)
		if has && v == want {
			continue
		}
		if err := patchLabel(ctx, nodes, o.Node, LabelKey(name), &want); err != nil {
			errs = append(errs, &LabelError{Node: o.Node, Set: true, Err: err})
			continue
		}
		current[o.Node] = want
	}
	return errs
}

// Restore puts back labels that Unlabel removed, for a run that ended
// before it changed any node (values: node → label value).
func Restore(ctx context.Context, nodes Nodes, name string, values map[string]string) []*LabelError {
	var errs []*LabelError
	for _, n := range sortedKeys(values) {
		v := values[n]
		if err := patchLabel(ctx, nodes, n, LabelKey(name), &v); err != nil {
			errs = append(errs, &LabelError{Node: n, Set: true, Err: err})
		}
	}
	return errs
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// patchLabel sets (value != nil) or removes one label with a merge patch.
func patchLabel(ctx context.Context, nodes Nodes, node, key string, value *string) error {
	var v any
	if value != nil {
		v = *value
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{key: v}}})
	if err != nil {
		return err
	}
	_, err = nodes.Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}
