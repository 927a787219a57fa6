// Package install implements `kubectl coral install` and `kubectl coral
// uninstall`: the controller mode's CRDs, RBAC and Deployment, applied
// server-side from manifests embedded in the plugin, and removed again.
package install

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/version"
	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"
)

func intOrName(s string) intstr.IntOrString { return intstr.FromString(s) }

// Options hold `kubectl coral install`'s flags. NewOptions holds the defaults.
type Options struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	Config
	Wait    bool
	Timeout time.Duration
	DryRun  string
	Output  string

	dyn    dynamic.Interface
	client kubernetes.Interface
}

// NewOptions returns the defaults.
func NewOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *Options {
	return &Options{
		IOStreams: streams, configFlags: flags,
		Config: Config{
			Namespace: DefaultNamespace, ControllerImage: DefaultControllerImage(os.Getenv), WorkerImage: version.DefaultWorkerImage(),
			Replicas: 1, MaxJobsInFlight: 50, MetricsPort: 8080, HealthPort: 8081,
		},
		Wait: true, Timeout: 3 * time.Minute, DryRun: "none",
	}
}

// NewCmdInstall builds `kubectl coral install`.
func NewCmdInstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := NewOptions(flags, streams)
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Install the controller mode: CRDs, RBAC and the coral-controller Deployment",
		Long: `Install Coral's controller mode into the cluster.

The controller keeps ImagePrefetch and ArtifactPrefetch objects true: every
selected node holds the images (or files), nodes that join later get them
within seconds, moved tags are followed, and pinned images are kept from
kubelet's image garbage collection.

install applies, server-side and idempotently, the manifests embedded in this
plugin: the namespace (coral-system by default, labelled for Pod Security
"privileged" because the worker mounts the node's runtime socket), the CRDs,
least-privilege RBAC and the controller Deployment; then it waits until the
controller is ready. Run it again to upgrade to this plugin's version.`,
		Example: `  # Install with the images of this plugin version
  kubectl coral install

  # See what would be applied
  kubectl coral install --dry-run=client -o yaml

  # Images from your own registry
  kubectl coral install --controller-image registry.example.com/coral-controller:v0.3.0 --worker-image registry.example.com/coral-worker:v0.3.0`,
		Args: cobra.NoArgs,
		RunE: cmdutil.RunE(o),
	}
	f := cmd.Flags()
	f.StringVar(&o.ControllerImage, "controller-image", o.ControllerImage, "image of the controller; $"+EnvControllerImage+" overrides the default")
	f.StringVar(&o.WorkerImage, "worker-image", o.WorkerImage, "image of the worker the controller runs on nodes; $"+version.EnvWorkerImage+" overrides the default")
	f.Int32Var(&o.Replicas, "replicas", o.Replicas, "controller replicas (one leads, the others stand by)")
	f.IntVar(&o.MaxJobsInFlight, "max-jobs-in-flight", o.MaxJobsInFlight, "worker pods the controller runs at once across every object (Jobs waiting for a backlogged Job controller may exceed it)")
	f.BoolVar(&o.HostNetwork, "host-network", false, "run the controller in the node's network (for clusters whose pods cannot reach the service network)")
	f.StringVar(&o.APIServer, "api-server", "", "HOST:PORT the controller uses to reach the API server instead of the kubernetes Service")
	f.Int32Var(&o.MetricsPort, "metrics-port", o.MetricsPort, "port of the controller's Prometheus metrics (0 disables them)")
	f.Int32Var(&o.HealthPort, "health-port", o.HealthPort, "port of the controller's health probes")
	f.BoolVar(&o.Wait, "wait", o.Wait, "wait until the CRDs are established and the controller is ready")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "how long to wait")
	f.StringVar(&o.DryRun, "dry-run", o.DryRun, `"client": print the manifests, apply nothing`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.StringVarP(&o.Output, "output", "o", "", "with --dry-run: yaml (default) or json")
	return cmd
}

// Complete takes the namespace to install into from -n, when given: the
// kubeconfig's namespace is not a default here (coral-system is).
func (o *Options) Complete(cmd *cobra.Command, _ []string) error {
	if f := cmd.Flag("namespace"); f != nil && f.Changed {
		o.Namespace = f.Value.String()
	}
	return nil
}

// Validate checks the flags.
func (o *Options) Validate() error {
	switch {
	case o.DryRun != "none" && o.DryRun != "client":
		return cmdutil.BadInputf(`--dry-run must be "client" (or left out), got %q`, o.DryRun)
	case o.Output != "" && o.Output != "yaml" && o.Output != "json":
		return cmdutil.BadInputf("-o must be yaml or json, got %q", o.Output)
	case o.Output != "" && o.DryRun == "none":
		return cmdutil.BadInputf("-o prints the manifests: use it with --dry-run=client")
	case o.Replicas < 1:
		return cmdutil.BadInputf("--replicas must be at least 1, got %d", o.Replicas)
	case o.MaxJobsInFlight < 1:
		return cmdutil.BadInputf("--max-jobs-in-flight must be at least 1, got %d", o.MaxJobsInFlight)
	case o.ControllerImage == "" || o.WorkerImage == "":
		return cmdutil.BadInputf("--controller-image and --worker-image must not be empty")
	case o.HealthPort <= 0 || o.HealthPort > 65535 || o.MetricsPort < 0 || o.MetricsPort > 65535 || (o.MetricsPort == o.HealthPort):
		return cmdutil.BadInputf("--health-port and --metrics-port must be distinct ports (1-65535; --metrics-port 0 disables metrics)")
	}
	return nil
}

// Run applies (or prints) the manifests and waits.
func (o *Options) Run(ctx context.Context) error {
	objs, err := Objects(o.Config)
	if err != nil {
		return err
	}
	if o.DryRun == "client" {
		return printObjects(o.Out, objs, o.Output)
	}
	if err := o.clients(); err != nil {
		return err
	}
	for _, u := range objs {
		if err := o.apply(ctx, u); err != nil {
			return err
		}
	}
	fmt.Fprintf(o.ErrOut, "applied %d objects (namespace %s, controller %s, worker %s)\n", len(objs), o.Namespace, o.ControllerImage, o.WorkerImage)
	if !o.Wait {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := o.waitReady(wctx, objs); err != nil {
		return err
	}
	fmt.Fprintf(o.Out, "coral-controller is ready in namespace %s\n", o.Namespace)
	return nil
}

func (o *Options) clients() error {
	if o.dyn != nil {
		return nil
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return cmdutil.BadInput(err)
	}
	if o.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return err
	}
	o.client, err = kubernetes.NewForConfig(cfg)
	return err
}

func resourceFor(dyn dynamic.Interface, u *unstructured.Unstructured) dynamic.ResourceInterface {
	g := gvrs[u.GetKind()]
	if g.namespaced {
		return dyn.Resource(g.gvr).Namespace(u.GetNamespace())
	}
	return dyn.Resource(g.gvr)
}

func (o *Options) apply(ctx context.Context, u *unstructured.Unstructured) error {
	_, err := resourceFor(o.dyn, u).Apply(ctx, u.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("applying %s %s: %w (install needs cluster-admin-like rights: it creates CRDs, a ClusterRole and a namespace)", u.GetKind(), u.GetName(), err)
		}
		return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return nil
}

// waitReady waits for the CRDs to be established and the Deployment to
// have a ready, up-to-date replica; on a timeout it says what the pod waits for.
func (o *Options) waitReady(ctx context.Context, objs []*unstructured.Unstructured) error {
	for _, u := range objs {
		if u.GetKind() != "CustomResourceDefinition" {
			continue
		}
		err := wait.PollUntilContextCancel(ctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			cur, err := resourceFor(o.dyn, u).Get(ctx, u.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s is not established after %s", u.GetName(), o.Timeout)
		}
	}
	err := wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		d, err := o.client.AppsV1().Deployments(o.Namespace).Get(ctx, Name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		want := int32(1)
		if d.Spec.Replicas != nil {
			want = *d.Spec.Replicas
		}
		return d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == want && d.Status.AvailableReplicas >= 1 && d.Status.Replicas == d.Status.UpdatedReplicas, nil
	})
	if err != nil {
		return fmt.Errorf("the controller is not ready after %s%s", o.Timeout, o.podTrouble())
	}
	return nil
}

// podTrouble describes why the controller's pods are not ready.
func (o *Options) podTrouble() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pods, err := o.client.CoreV1().Pods(o.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=" + Name})
	if err != nil || len(pods.Items) == 0 {
		return fmt.Sprintf(" (no controller pod: kubectl describe deployment -n %s %s)", o.Namespace, Name)
	}
	var why []string
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			switch {
			case cs.State.Waiting != nil && strings.Contains(cs.State.Waiting.Reason, "Image"):
				why = append(why, fmt.Sprintf("pod %s cannot pull %s (%s): push the controller image where nodes reach it (make controllerimage REGISTRY=…) or pass --controller-image", p.Name, cs.Image, cs.State.Waiting.Reason))
			case cs.State.Waiting != nil:
				why = append(why, fmt.Sprintf("pod %s: %s %s", p.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message))
			case cs.LastTerminationState.Terminated != nil:
				why = append(why, fmt.Sprintf("pod %s restarted (%s; kubectl logs -n %s %s --previous)", p.Name, cs.LastTerminationState.Terminated.Reason, o.Namespace, p.Name))
			}
		}
		if len(p.Status.ContainerStatuses) == 0 && p.Status.Phase == corev1.PodPending {
			why = append(why, fmt.Sprintf("pod %s is pending (kubectl describe pod -n %s %s)", p.Name, o.Namespace, p.Name))
		}
	}
	if len(why) == 0 {
		return fmt.Sprintf(" (kubectl logs -n %s deploy/%s)", o.Namespace, Name)
	}
	return ": " + strings.Join(why, "; ")
}

func printObjects(w io.Writer, objs []*unstructured.Unstructured, format string) error {
	if format == "json" {
		list := &unstructured.UnstructuredList{Object: map[string]any{"apiVersion": "v1", "kind": "List"}}
		for _, u := range objs {
			list.Items = append(list.Items, *u)
		}
		b, err := list.MarshalJSON()
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	for i, u := range objs {
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return err
		}
		if i > 0 {
			fmt.Fprintln(w, "---")
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}
