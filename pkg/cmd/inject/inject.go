// Package inject holds `kubectl coral inject artifact`.
package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/coral-dev/coral/pkg/artifact"
	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	injectlib "github.com/coral-dev/coral/pkg/inject"
	"github.com/coral-dev/coral/pkg/source"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

// NewCmdInject builds `kubectl coral inject`.
func NewCmdInject(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "inject",
		Short:   "Mount prefetched artifacts into workloads",
		Example: `  kubectl coral inject artifact bert deployment/inference --mount-path /models/bert`,
		Args:    cobra.ArbitraryArgs,
		RunE:    cmdutil.RequireSubcommand,
	}
	cmd.AddCommand(NewCmdArtifact(flags, streams))
	return cmd
}

// ArtifactOptions holds `kubectl coral inject artifact`.
type ArtifactOptions struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	Name       string
	Targets    []string
	Filenames  []string
	MountPath  string
	Containers []string
	Local      bool
	DryRun     string
	Output     string
	Force      bool
	DestRoot   string

	namespace string
	client    kubernetes.Interface
}

// NewCmdArtifact builds `kubectl coral inject artifact`.
func NewCmdArtifact(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &ArtifactOptions{IOStreams: streams, configFlags: flags, DryRun: "none", DestRoot: artifact.DefaultRoot}
	cmd := &cobra.Command{
		Use:   "artifact NAME (TYPE/NAME... | -f FILE) [--mount-path PATH] [-c CONTAINER]",
		Short: "Mount a prefetched artifact into workloads and keep them on nodes that hold it",
		Long: `Change workloads so that they use an artifact that "kubectl coral prefetch
artifacts" put on nodes: a read-only hostPath volume for the artifact's
directory, a read-only mount in the chosen containers (all regular containers
by default), and required node affinity to the nodes labelled
artifacts.coral.dev/NAME, so the pods run only where the artifact is.

Works on every kind with a pod template (Deployment, StatefulSet, DaemonSet,
ReplicaSet, ReplicationController, Job, CronJob, PodTemplate). Against the
cluster it patches the objects; with --local -f it prints the changed
manifests (other objects pass through unchanged), for pre-deploy pipelines.
Injecting twice changes nothing.

Coral refuses to inject an artifact that no node holds, unless --force.`,
		Example: `  # Mount the bert artifact into a Deployment
  kubectl coral inject artifact bert deployment/inference --mount-path /models/bert

  # In a pipeline: change manifests, apply them
  kubectl coral inject artifact bert -f deploy.yaml --local -o yaml | kubectl apply -f -

  # Only one container, and see the result without changing anything
  kubectl coral inject artifact bert deployment/inference -c server --dry-run=client -o yaml`,
		Args: cobra.ArbitraryArgs,
		RunE: cmdutil.RunE(o),
	}
	f := cmd.Flags()
	f.StringArrayVarP(&o.Filenames, "filename", "f", nil, "manifests to change (with --local) or whose objects to patch; - for stdin")
	f.StringVar(&o.MountPath, "mount-path", "", "where containers see the artifact (default /artifacts/NAME)")
	f.StringSliceVarP(&o.Containers, "container", "c", nil, "containers to mount into (default: every regular container)")
	f.BoolVar(&o.Local, "local", false, "change the manifests given with -f and print them; do not contact the cluster's workloads")
	f.StringVar(&o.DryRun, "dry-run", o.DryRun, `"client": print what would change, change nothing`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.StringVarP(&o.Output, "output", "o", "", "print the changed objects: yaml or json")
	f.BoolVar(&o.Force, "force", false, "inject even when no node holds the artifact")
	f.StringVar(&o.DestRoot, "dest-root", o.DestRoot, "the artifact root used with prefetch --dest-root")
	return cmd
}

// Complete sets up names and the client.
func (o *ArtifactOptions) Complete(_ *cobra.Command, args []string) error {
	if len(args) == 0 {
		return cmdutil.BadInputf("name the artifact: kubectl coral inject artifact NAME (TYPE/NAME | -f FILE)")
	}
	o.Name, o.Targets = args[0], args[1:]
	if o.MountPath == "" {
		o.MountPath = "/artifacts/" + o.Name
	}
	ns, _, err := o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil && !o.Local {
		return cmdutil.BadInputf("reading the kubeconfig: %v", err)
	}
	o.namespace = ns
	if cfg, err := o.configFlags.ToRESTConfig(); err == nil {
		o.client, _ = kubernetes.NewForConfig(cfg)
	} else if !o.Local {
		return cmdutil.BadInputf("reading the kubeconfig: %v", err)
	}
	return nil
}

// Validate checks the flags.
func (o *ArtifactOptions) Validate() error {
	switch {
	case !path.IsAbs(o.MountPath):
		return cmdutil.BadInputf("--mount-path %q must be an absolute path", o.MountPath)
	case !path.IsAbs(o.DestRoot):
		return cmdutil.BadInputf("--dest-root %q must be an absolute path", o.DestRoot)
	case o.Local && len(o.Filenames) == 0:
		return cmdutil.BadInputf("--local needs manifests: pass -f FILE (or -f - for stdin)")
	case o.Local && len(o.Targets) > 0:
		return cmdutil.BadInputf("--local works on -f manifests, not on TYPE/NAME (%s)", strings.Join(o.Targets, " "))
	case !o.Local && len(o.Filenames) == 0 && len(o.Targets) == 0:
		return cmdutil.BadInputf("name the workloads: TYPE/NAME (e.g. deployment/inference) or -f FILE")
	case o.Output != "" && o.Output != "yaml" && o.Output != "json":
		return cmdutil.BadInputf("-o %q: use yaml or json", o.Output)
	case o.DryRun != "none" && o.DryRun != "client":
		return cmdutil.BadInputf(`--dry-run must be "client" (or unset), got %q`, o.DryRun)
	}
	return cmdutil.BadInput(artifact.ValidateName(o.Name))
}

// hostPath finds the artifact's directory on the nodes that hold it. Nodes
// may place it under their own roots (annotations); a pod template has one
// hostPath, so they must agree.
func (o *ArtifactOptions) hostPath(ctx context.Context) (string, error) {
	def := path.Join(o.DestRoot, o.Name)
	if o.client == nil {
		fmt.Fprintf(o.ErrOut, "warning: no cluster to check which nodes hold artifact %q; using %s\n", o.Name, def)
		return def, nil
	}
	label := artifact.LabelKey(o.Name)
	nodes, err := o.client.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: label})
	if err != nil {
		if o.Local {
			fmt.Fprintf(o.ErrOut, "warning: cannot check which nodes hold artifact %q (%v); using %s\n", o.Name, err, def)
			return def, nil
		}
		return "", cmdutil.BadInputf("listing the nodes that hold artifact %q: %v", o.Name, err)
	}
	if len(nodes.Items) == 0 {
		msg := fmt.Sprintf("no node holds artifact %q (no node is labelled %s): prefetch it first with kubectl coral prefetch artifacts … --name %s", o.Name, label, o.Name)
		if !o.Force {
			return "", cmdutil.BadInputf("%s, or pass --force", msg)
		}
		fmt.Fprintf(o.ErrOut, "warning: %s; injecting anyway (--force): pods will stay Pending until a node holds it\n", msg)
		return def, nil
	}
	paths := map[string][]string{}
	for _, n := range nodes.Items {
		p := artifact.NodeDir(&n, o.DestRoot, o.Name)
		paths[p] = append(paths[p], n.Name)
	}
	if len(paths) > 1 {
		var desc []string
		for p, ns := range paths {
			desc = append(desc, fmt.Sprintf("%s on %s", p, strings.Join(ns, ",")))
		}
		sort.Strings(desc)
		return "", cmdutil.BadInputf("the nodes that hold artifact %q keep it in different directories (%s); a pod template can mount only one", o.Name, strings.Join(desc, "; "))
	}
	for p := range paths {
		return p, nil
	}
	return def, nil
}

// Run injects and patches or prints.
func (o *ArtifactOptions) Run(ctx context.Context) error {
	hp, err := o.hostPath(ctx)
	if err != nil {
		return err
	}
	a := injectlib.Artifact{Name: o.Name, HostPath: hp, MountPath: o.MountPath, NodeLabel: artifact.LabelKey(o.Name), Containers: o.Containers}
	if o.Local {
		return o.runLocal(a)
	}
	return o.runCluster(ctx, a)
}

// runLocal changes manifests read from -f and prints every object.
func (o *ArtifactOptions) runLocal(a injectlib.Artifact) error {
	var objs []*unstructured.Unstructured
	for _, fn := range o.Filenames {
		var r io.Reader = o.In
		if fn != "-" {
			b, err := os.ReadFile(fn)
			if err != nil {
				return cmdutil.BadInputf("-f %s: %v", fn, err)
			}
			r = bytes.NewReader(b)
		}
		got, err := decodeAll(r)
		if err != nil {
			return cmdutil.BadInputf("-f %s: %v", fn, err)
		}
		objs = append(objs, got...)
	}
	injected := 0
	for _, u := range objs {
		_, after, ok, err := injectInto(u, a)
		if err != nil {
			return cmdutil.BadInputf("%s/%s: %v", strings.ToLower(u.GetKind()), u.GetName(), err)
		}
		if ok {
			injected++
			out, err := toUnstructured(after)
			if err != nil {
				return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: err}
			}
			u.Object = out.Object
		}
	}
	if injected == 0 {
		return cmdutil.BadInputf("the manifests hold no workload with a pod template")
	}
	return o.printAll(objs)
}

func decodeAll(r io.Reader) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(r, 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("not valid YAML or JSON: %w", err)
		}
		if len(m) == 0 {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if u.IsList() {
			l, err := u.ToList()
			if err != nil {
				return nil, err
			}
			for i := range l.Items {
				out = append(out, &l.Items[i])
			}
			continue
		}
		out = append(out, u)
	}
}

// injectInto returns the object before and after the injection, both typed
// (so that defaults and field order match); ok is false for kinds without a
// pod template.
func injectInto(u *unstructured.Unstructured, a injectlib.Artifact) (before, after runtime.Object, ok bool, err error) {
	typed := source.NewObjectForKind(u.GetKind())
	if typed == nil {
		return nil, nil, false, nil
	}
	if _, isPod := typed.(*corev1.Pod); isPod {
		return nil, nil, false, errors.New("a Pod's volumes cannot change: inject into the workload that owns it")
	}
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, typed); err != nil {
		return nil, nil, false, err
	}
	changed := typed.DeepCopyObject()
	if _, err := injectlib.PodSpec(source.PodSpecOf(changed), a); err != nil {
		return nil, nil, false, err
	}
	return typed, changed, true, nil
}

// toUnstructured converts for printing, without status and server noise.
func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	out := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(out.Object, "status")
	unstructured.RemoveNestedField(out.Object, "metadata", "creationTimestamp")
	return out, nil
}

// runCluster patches live objects with a strategic-merge patch.
func (o *ArtifactOptions) runCluster(ctx context.Context, a injectlib.Artifact) error {
	r := resource.NewBuilder(o.configFlags).
		Unstructured().
		NamespaceParam(o.namespace).DefaultNamespace().
		FilenameParam(false, &resource.FilenameOptions{Filenames: o.Filenames}).
		ResourceTypeOrNameArgs(true, o.Targets...).
		Latest().Flatten().Do()
	infos, err := r.Infos()
	if err != nil {
		return cmdutil.BadInputf("finding the workloads: %v", err)
	}
	var printed []*unstructured.Unstructured
	for _, info := range infos {
		u, ok := info.Object.(*unstructured.Unstructured)
		if !ok {
			return cmdutil.BadInputf("%s: unexpected object type", info.Name)
		}
		ref := fmt.Sprintf("%s/%s", strings.ToLower(u.GetKind()), u.GetName())
		typed := source.NewObjectForKind(u.GetKind())
		if typed == nil {
			return cmdutil.BadInputf("%s has no pod template to inject into", ref)
		}
		before, after, ok, err := injectInto(u, a)
		if err != nil {
			return cmdutil.BadInputf("%s: %v", ref, err)
		}
		if !ok {
			continue
		}
		orig, _ := json.Marshal(before)
		mod, _ := json.Marshal(after)
		changed, err := toUnstructured(after)
		if err != nil {
			return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: err}
		}
		patch, err := strategicpatch.CreateTwoWayMergePatch(orig, mod, typed)
		if err != nil {
			return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: fmt.Errorf("%s: computing the patch: %w", ref, err)}
		}
		if string(patch) == "{}" {
			fmt.Fprintf(o.ErrOut, "%s unchanged (artifact %s already injected)\n", ref, a.Name)
			printed = append(printed, u)
			continue
		}
		if o.DryRun == "client" {
			fmt.Fprintf(o.ErrOut, "%s injected (dry run)\n", ref)
			printed = append(printed, changed)
			continue
		}
		res, err := resource.NewHelper(info.Client, info.Mapping).Patch(info.Namespace, info.Name, types.StrategicMergePatchType, patch, nil)
		if err != nil {
			return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: fmt.Errorf("%s: patching: %w", ref, err)}
		}
		fmt.Fprintf(o.ErrOut, "%s injected: artifact %s at %s (from %s on the node)\n", ref, a.Name, a.MountPath, a.HostPath)
		if ru, ok := res.(*unstructured.Unstructured); ok {
			printed = append(printed, ru)
		}
	}
	if o.Output != "" {
		return o.printAll(printed)
	}
	return nil
}

func (o *ArtifactOptions) printAll(objs []*unstructured.Unstructured) error {
	if o.Output == "json" {
		for _, u := range objs {
			b, err := json.MarshalIndent(u.Object, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(o.Out, string(b))
		}
		return nil
	}
	for i, u := range objs {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(o.Out, "---")
		}
		o.Out.Write(b)
	}
	return nil
}
