package install

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coral-dev/coral/pkg/cmd/cmdutil"
	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// prefetchKinds are the objects users create; uninstall refuses while they exist.
var prefetchKinds = []schema.GroupVersionResource{
	{Group: "coral.dev", Version: "v1alpha1", Resource: "imageprefetches"},
	{Group: "coral.dev", Version: "v1alpha1", Resource: "artifactprefetches"},
}

var jobsGVR = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}

// UninstallOptions hold `kubectl coral uninstall`'s flags.
type UninstallOptions struct {
	*Options
	DeletePrefetches bool
	Force            bool
}

// NewCmdUninstall builds `kubectl coral uninstall`.
func NewCmdUninstall(flags *genericclioptions.ConfigFlags, streams genericiooptions.IOStreams) *cobra.Command {
	o := &UninstallOptions{Options: NewOptions(flags, streams)}
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove the controller mode: Deployment, RBAC, CRDs and the namespace install created",
		Long: `Remove everything kubectl coral install created: the controller Deployment,
its RBAC, the CRDs, the controller's Jobs in every namespace, and the namespace
(when install created it).

Prefetch objects (ImagePrefetch, ArtifactPrefetch) would be deleted with their
CRDs, so uninstall refuses while any exist unless told what to do with them:
--delete-prefetches deletes them first and lets the controller clean up after
each; --force deletes them without that cleanup. Images and files already on
nodes stay there. Running uninstall again is harmless.`,
		Example: `  # Remove the controller; refuses while prefetch objects exist
  kubectl coral uninstall

  # Delete the prefetch objects too (the controller cleans up after each)
  kubectl coral uninstall --delete-prefetches`,
		Args: cobra.NoArgs,
		RunE: cmdutil.RunE(o),
	}
	f := cmd.Flags()
	f.BoolVar(&o.DeletePrefetches, "delete-prefetches", false, "delete every ImagePrefetch and ArtifactPrefetch first, letting the controller clean up")
	f.BoolVar(&o.Force, "force", false, "delete prefetch objects without the controller's cleanup (their finalizers are removed)")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "how long to wait for objects to go")
	return cmd
}

// Validate checks the flags: every value uninstall takes is usable. (It
// shadows install's Validate, which checks flags uninstall does not have;
// Complete, the namespace from -n, is install's.)
func (o *UninstallOptions) Validate() error { return nil }

// Run removes what install applied. Objects already gone are fine.
func (o *UninstallOptions) Run(ctx context.Context) error {
	if err := o.clients(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if err := o.prefetches(wctx); err != nil {
		return err
	}
	objs, err := Objects(o.Config)
	if err != nil {
		return err
	}
	removed := 0
	// The controller first, so it starts nothing new; then its Jobs.
	for _, u := range objs {
		if u.GetKind() == "Deployment" {
			n, err := o.remove(wctx, u)
			if err != nil {
				return err
			}
			removed += n
		}
	}
	jobs, err := o.dyn.Resource(jobsGVR).List(wctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/managed-by=coral-controller"})
	if err != nil {
		return fmt.Errorf("listing the controller's Jobs: %w", err)
	}
	for i := range jobs.Items {
		j := &jobs.Items[i]
		err := o.dyn.Resource(jobsGVR).Namespace(j.GetNamespace()).Delete(wctx, j.GetName(), metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationBackground)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting Job %s/%s: %w", j.GetNamespace(), j.GetName(), err)
		}
	}
	for i := len(objs) - 1; i >= 0; i-- {
		u := objs[i]
		if u.GetKind() == "Deployment" {
			continue
		}
		if u.GetKind() == "Namespace" && !o.createdNamespace(wctx) {
			continue
		}
		n, err := o.remove(wctx, u)
		if err != nil {
			return err
		}
		removed += n
	}
	fmt.Fprintf(o.Out, "removed %d objects and %d controller Jobs\n", removed, len(jobs.Items))
	return nil
}

// prefetches refuses while prefetch objects exist, or deletes them.
func (o *UninstallOptions) prefetches(ctx context.Context) error {
	var found []unstructured.Unstructured
	for _, gvr := range prefetchKinds {
		l, err := o.dyn.Resource(gvr).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue // no CRD: nothing of this kind
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		found = append(found, l.Items...)
	}
	if len(found) == 0 {
		return nil
	}
	if !o.DeletePrefetches && !o.Force {
		var names []string
		for i, u := range found {
			if i == 5 {
				names = append(names, fmt.Sprintf("and %d more", len(found)-5))
				break
			}
			names = append(names, fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName()))
		}
		return cmdutil.BadInputf("%d prefetch objects exist (%s); removing the CRDs would delete them.\n"+
			"Delete them first: kubectl delete imageprefetches,artifactprefetches --all -A\n"+
			"or pass --delete-prefetches (the controller cleans up after each), or --force (no cleanup)", len(found), strings.Join(names, ", "))
	}
	for _, u := range found {
		r := o.dyn.Resource(gvrOf(u)).Namespace(u.GetNamespace())
		if o.Force {
			_, err := r.Patch(ctx, u.GetName(), types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("removing the finalizer of %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
			}
		}
		if err := r.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
	}
	for _, u := range found {
		r := o.dyn.Resource(gvrOf(u)).Namespace(u.GetNamespace())
		err := wait.PollUntilContextCancel(ctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			_, err := r.Get(ctx, u.GetName(), metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			return fmt.Errorf("%s %s/%s is still there after %s: is the controller running (kubectl get pods -n %s)? --force removes it without the controller", u.GetKind(), u.GetNamespace(), u.GetName(), o.Timeout, o.Namespace)
		}
	}
	fmt.Fprintf(o.ErrOut, "deleted %d prefetch objects\n", len(found))
	return nil
}

func gvrOf(u unstructured.Unstructured) schema.GroupVersionResource {
	if u.GetKind() == "ArtifactPrefetch" {
		return prefetchKinds[1]
	}
	return prefetchKinds[0]
}

// createdNamespace says whether install created the namespace (its label);
// a namespace that was there before keeps existing.
func (o *UninstallOptions) createdNamespace(ctx context.Context) bool {
	ns, err := o.client.CoreV1().Namespaces().Get(ctx, o.Namespace, metav1.GetOptions{})
	return err == nil && ns.Labels["app.kubernetes.io/managed-by"] == FieldManager
}

// remove deletes one object and waits until it is gone; 0 when it was not there.
func (o *UninstallOptions) remove(ctx context.Context, u *unstructured.Unstructured) (int, error) {
	r := resourceFor(o.dyn, u)
	err := r.Delete(ctx, u.GetName(), metav1.DeleteOptions{PropagationPolicy: ptrTo(metav1.DeletePropagationForeground)})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("deleting %s %s: %w", u.GetKind(), u.GetName(), err)
	}
	err = wait.PollUntilContextCancel(ctx, 300*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := r.Get(ctx, u.GetName(), metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return 0, fmt.Errorf("%s %s is still there after %s", u.GetKind(), u.GetName(), o.Timeout)
	}
	return 1, nil
}

func ptrTo[T any](v T) *T { return &v }
