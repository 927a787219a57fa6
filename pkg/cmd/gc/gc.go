// Package gc holds `kubectl coral gc`: it finds what one-shot runs of the
// plugin left behind when the plugin died before its cleanup (SIGKILL, a
// crashed laptop, a CI runner cut off) and deletes it.
package gc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/coral-dev/coral/pkg/version"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Options holds everything `kubectl coral gc` needs.
type Options struct {
	genericiooptions.IOStreams
	configFlags *genericclioptions.ConfigFlags

	AllNamespaces bool
	MinAge        time.Duration
	DryRun        string
	Output        string

	// Set by Complete (tests set client and namespace themselves).
	namespace string
	client    kubernetes.Interface
	now       func() time.Time
}

// NewOptions returns the defaults.
func NewOptions(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *Options {
	return &Options{
		IOStreams:   streams,
		configFlags: flags,
		MinAge:      time.Hour,
		DryRun:      "none",
		now:         time.Now,
	}
}

// NewCmdGC builds `kubectl coral gc`.
func NewCmdGC(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	return newCmd(NewOptions(flags, streams))
}

func newCmd(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gc [-n NAMESPACE | -A] [--dry-run] [--min-age DURATION] [-o name]",
		Short: "Delete what interrupted runs left behind (Leases, Jobs, pods)",
		Long: `Delete the Jobs and pods of runs whose plugin died before cleaning up
(killed with SIGKILL, a laptop closed, a CI job cut off).

Every run holds a Lease named coral-run-<run id> in its namespace and renews it
every 30s while the plugin runs (every 2m in a run of more than 200 nodes);
its Jobs and pods name the Lease as their owner. A Lease not renewed within
its duration (90s; 5m for those large runs) belongs to a dead plugin:
gc deletes it, and Kubernetes' garbage collector deletes the run's Jobs and
pods. A run whose Lease is fresh is never touched.

Jobs and pods of runs without a Lease (made by plugin versions before the
Lease) carry no sign of life: gc takes them only when they are older than
--min-age (default 1h) and no longer running within their activeDeadlineSeconds.
1h is the Jobs' ttlSecondsAfterFinished, the safety net that removes finished
Jobs on its own; gc removes them sooner and also takes Jobs that never finished
and pods whose Job is gone. Lower --min-age only when no older plugin may still
be running against the namespace.

Only objects labelled app.kubernetes.io/managed-by=kubectl-coral are
considered: what the Coral controller manages is never touched.

Exit codes: 0 done (also when there was nothing to delete), 1 a list or delete
failed, 2 bad flags.`,
		Example: `  # What would be deleted in the current namespace, and why
  kubectl coral gc --dry-run

  # Clean up after crashed runs in every namespace
  kubectl coral gc -A

  # Also take the Jobs of plugins from before the Lease once they are 10 minutes old
  kubectl coral gc -n coral-system --min-age=10m

  # Only the names of what was deleted, for a script
  kubectl coral gc -A -o name`,
		Args:              cobra.NoArgs,
		RunE:              cmdutil.RunE(o),
		ValidArgsFunction: cobra.NoFileCompletions,
	}
	f := cmd.Flags()
	f.BoolVarP(&o.AllNamespaces, "all-namespaces", "A", false, "look in every namespace")
	f.DurationVar(&o.MinAge, "min-age", o.MinAge, "minimum age of Jobs and pods of runs without a Lease (older plugins) before they are deleted")
	f.StringVar(&o.DryRun, "dry-run", o.DryRun, `"client": print what would be deleted, delete nothing; "server": also send the deletes as a server dry run`)
	f.Lookup("dry-run").NoOptDefVal = "client"
	f.StringVarP(&o.Output, "output", "o", "", `"name": print resource/name of each deleted object only (default: a line per object with why)`)
	_ = cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]string{"name"}, cobra.ShellCompDirectiveNoFileComp))
	_ = cmd.RegisterFlagCompletionFunc("dry-run", cobra.FixedCompletions([]string{"none", "client", "server"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// Complete reads the namespace and builds the client.
func (o *Options) Complete(_ *cobra.Command, _ []string) error {
	if o.now == nil {
		o.now = time.Now
	}
	if o.client != nil { // set by tests
		if o.namespace == "" {
			o.namespace = "default"
		}
		return nil
	}
	var err error
	o.namespace, _, err = o.configFlags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	cfg, err := o.configFlags.ToRESTConfig()
	if err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	cfg.UserAgent = "kubectl-coral/" + version.Version
	if o.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return cmdutil.BadInput(explainKubeconfig(err))
	}
	return nil
}

// Validate checks the flags.
func (o *Options) Validate() error {
	switch {
	case o.MinAge < 0:
		return cmdutil.BadInputf("--min-age must be 0 or more, got %s", o.MinAge)
	case o.Output != "" && o.Output != "name":
		return cmdutil.BadInputf(`--output %q is not supported: use "name", or leave it out for a line per object`, o.Output)
	}
	switch o.DryRun {
	case "none", "client", "server":
	default:
		return cmdutil.BadInputf(`--dry-run must be "none", "client" or "server", got %q`, o.DryRun)
	}
	if o.AllNamespaces && o.configFlags != nil && o.configFlags.Namespace != nil && *o.configFlags.Namespace != "" {
		return cmdutil.BadInputf("-A/--all-namespaces and -n/--namespace cannot be used together")
	}
	return nil
}

// Run finds what crashed runs left and deletes it.
func (o *Options) Run(ctx context.Context) error {
	ns := o.namespace
	where := fmt.Sprintf("namespace %q", ns)
	if o.AllNamespaces {
		ns, where = metav1.NamespaceAll, "any namespace"
	}
	inv, err := o.inventory(ctx, ns)
	if err != nil {
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: err}
	}
	sel := Select(inv, o.now(), o.MinAge)
	for _, k := range sel.Kept {
		fmt.Fprintf(o.ErrOut, "kept run %s in namespace %s: %s\n", k.RunID, k.Namespace, k.Why)
	}

	suffix := ""
	if o.DryRun != "none" {
		suffix = " (dry run)"
	}
	var deleted, gone, renewed int
	var errs []error
	for _, obj := range sel.Delete {
		if o.DryRun == "client" {
			o.print(obj, suffix)
			deleted++
			continue
		}
		err := o.delete(ctx, obj)
		switch {
		case err == nil:
			o.print(obj, suffix)
			deleted++
		case apierrors.IsNotFound(err):
			gone++
		case apierrors.IsConflict(err) && obj.Resource == ResourceLease:
			// The precondition failed: the plugin renewed its Lease after we
			// read it. It lives.
			renewed++
			fmt.Fprintf(o.ErrOut, "kept run %s in namespace %s: its Lease was renewed while gc ran\n", obj.RunID, obj.Namespace)
		default:
			errs = append(errs, fmt.Errorf("deleting %s/%s in namespace %s: %w", obj.Resource, obj.Name, obj.Namespace, explainAPI(err)))
		}
		if ctx.Err() != nil {
			errs = append(errs, errors.New("interrupted"))
			break
		}
	}

	verb := "deleted"
	if o.DryRun != "none" {
		verb = "would delete"
	}
	switch {
	case len(sel.Delete) == 0:
		fmt.Fprintf(o.ErrOut, "nothing to collect in %s\n", where)
	default:
		msg := fmt.Sprintf("%s %d object(s) in %s", verb, deleted, where)
		if gone > 0 {
			msg += fmt.Sprintf("; %d were already gone", gone)
		}
		if renewed > 0 {
			msg += fmt.Sprintf("; %d Lease(s) were renewed meanwhile and kept", renewed)
		}
		fmt.Fprintln(o.ErrOut, msg)
	}
	if len(errs) > 0 {
		if ctx.Err() != nil {
			return &cmdutil.ExitError{Code: cmdutil.ExitInterrupted, Err: errors.Join(errs...)}
		}
		return &cmdutil.ExitError{Code: cmdutil.ExitFailed, Err: errors.Join(errs...)}
	}
	return nil
}

func (o *Options) print(obj Object, suffix string) {
	if o.Output == "name" {
		fmt.Fprintf(o.Out, "%s/%s\n", obj.Resource, obj.Name)
		return
	}
	fmt.Fprintf(o.Out, "%s/%s deleted from namespace %s%s: run %s: %s\n", obj.Resource, obj.Name, obj.Namespace, suffix, obj.RunID, obj.Why)
}

// inventory lists the plugin's Leases, Jobs and pods: three lists, one label.
func (o *Options) inventory(ctx context.Context, ns string) (Inventory, error) {
	var inv Inventory
	opts := metav1.ListOptions{LabelSelector: Selector}
	leases, err := o.client.CoordinationV1().Leases(ns).List(ctx, opts)
	if err != nil {
		return inv, fmt.Errorf("listing Leases: %w", explainAPI(err))
	}
	js, err := o.client.BatchV1().Jobs(ns).List(ctx, opts)
	if err != nil {
		return inv, fmt.Errorf("listing Jobs: %w", explainAPI(err))
	}
	pods, err := o.client.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return inv, fmt.Errorf("listing pods: %w", explainAPI(err))
	}
	inv.Leases, inv.Jobs, inv.Pods = leases.Items, js.Items, pods.Items
	return inv, nil
}

// delete removes one object, only if it is still the one gc read (UID) and,
// for a Lease, not renewed since (resourceVersion). Background propagation:
// the garbage collector takes the dependents.
func (o *Options) delete(ctx context.Context, obj Object) error {
	bg := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{}}
	if obj.UID != "" {
		opts.Preconditions.UID = &obj.UID
	}
	if obj.ResourceVersion != "" {
		opts.Preconditions.ResourceVersion = &obj.ResourceVersion
	}
	if o.DryRun == "server" {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	switch obj.Resource {
	case ResourceLease:
		return o.client.CoordinationV1().Leases(obj.Namespace).Delete(ctx, obj.Name, opts)
	case ResourceJob:
		return o.client.BatchV1().Jobs(obj.Namespace).Delete(ctx, obj.Name, opts)
	case ResourcePod:
		return o.client.CoreV1().Pods(obj.Namespace).Delete(ctx, obj.Name, opts)
	}
	return fmt.Errorf("unknown resource %q", obj.Resource)
}

func explainKubeconfig(err error) error {
	if clientcmd.IsEmptyConfig(err) {
		return errors.New("no kubeconfig found: set KUBECONFIG, pass --kubeconfig, or run inside a cluster")
	}
	return fmt.Errorf("reading the kubeconfig: %w", err)
}

// explainAPI adds what to do to the errors a user can act on.
func explainAPI(err error) error {
	var ue *url.Error
	var ne net.Error
	switch {
	case errors.As(err, &ue), errors.As(err, &ne):
		return fmt.Errorf("cannot reach the API server: %w (check --context, --kubeconfig and that the cluster is up)", err)
	case apierrors.IsUnauthorized(err):
		return fmt.Errorf("the API server did not accept your credentials: %w", err)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w (gc needs list and delete on leases.coordination.k8s.io, jobs.batch and pods: see the RBAC section of the README)", err)
	}
	return err
}
