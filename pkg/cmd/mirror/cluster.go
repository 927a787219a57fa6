package mirror

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"

	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/source"
)

// clusterImages lists the images of the pods and pod templates in scope,
// and the image pull secrets they name.
func (o *Options) clusterImages(ctx context.Context) ([]string, []secretRef, error) {
	client, err := o.newClient()
	if err != nil {
		return nil, nil, fmt.Errorf("--from-cluster: connecting to the cluster (--kubeconfig, --context): %w", err)
	}
	ns := o.namespace
	if o.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	objs, warnings, err := workloadObjects(ctx, client, ns)
	for _, w := range warnings {
		fmt.Fprintf(o.ErrOut, "warning: --from-cluster: %s\n", w)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("--from-cluster: %w", err)
	}
	return source.FromPodSpecs(objs), pullSecretsOf(objs), nil
}

// secretRef names a secret.
type secretRef struct{ namespace, name string }

// pullSecretsOf lists the imagePullSecrets of objs, each once, in order.
// Pods carry their service account's too (admission copies them in).
func pullSecretsOf(objs []runtime.Object) []secretRef {
	var refs []secretRef
	seen := map[secretRef]bool{}
	for _, obj := range objs {
		spec := source.PodSpecOf(obj)
		acc, err := meta.Accessor(obj)
		if spec == nil || err != nil {
			continue
		}
		for _, s := range spec.ImagePullSecrets {
			r := secretRef{acc.GetNamespace(), s.Name}
			if s.Name != "" && !seen[r] {
				seen[r] = true
				refs = append(refs, r)
			}
		}
	}
	return refs
}

// workloadObjects lists every object with a pod template in namespace ns
// ("" for all): live pods (not finished ones) and the templates of
// Deployments, StatefulSets, DaemonSets, ReplicaSets, ReplicationControllers,
// Jobs, CronJobs and PodTemplates. A kind the user may not list is skipped
// with a warning; any other error stops.
func workloadObjects(ctx context.Context, c kubernetes.Interface, ns string) ([]runtime.Object, []string, error) {
	var (
		objs     []runtime.Object
		warnings []string
	)
	opts := metav1.ListOptions{}
	type lister struct {
		kind string
		list func() ([]runtime.Object, error)
	}
	listers := []lister{
		{"pods", func() ([]runtime.Object, error) {
			l, err := c.CoreV1().Pods(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			var out []runtime.Object
			for i := range l.Items {
				if p := l.Items[i].Status.Phase; p == corev1.PodSucceeded || p == corev1.PodFailed {
					continue
				}
				out = append(out, &l.Items[i])
			}
			return out, nil
		}},
		{"deployments", func() ([]runtime.Object, error) {
			l, err := c.AppsV1().Deployments(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
		{"statefulsets", func() ([]runtime.Object, error) {
			l, err := c.AppsV1().StatefulSets(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
		{"daemonsets", func() ([]runtime.Object, error) {
			l, err := c.AppsV1().DaemonSets(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
		{"replicasets", func() ([]runtime.Object, error) {
			l, err := c.AppsV1().ReplicaSets(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
		{"replicationcontrollers", func() ([]runtime.Object, error) {
			l, err := c.CoreV1().ReplicationControllers(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
		{"jobs", func() ([]runtime.Object, error) {
			l, err := c.BatchV1().Jobs(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
		{"cronjobs", func() ([]runtime.Object, error) {
			l, err := c.BatchV1().CronJobs(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
		{"podtemplates", func() ([]runtime.Object, error) {
			l, err := c.CoreV1().PodTemplates(ns).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			return objects(l.Items), nil
		}},
	}
	for _, l := range listers {
		got, err := l.list()
		if apierrors.IsForbidden(err) {
			warnings = append(warnings, fmt.Sprintf("not allowed to list %s, skipping them", l.kind))
			continue
		}
		if err != nil {
			return nil, warnings, fmt.Errorf("listing %s: %w", l.kind, err)
		}
		objs = append(objs, got...)
	}
	return objs, warnings, nil
}

// objects returns pointers to the items of a typed list.
func objects[T any, PT interface {
	*T
	runtime.Object
}](items []T) []runtime.Object {
	out := make([]runtime.Object, len(items))
	for i := range items {
		out[i] = PT(&items[i])
	}
	return out
}

// keychains builds the source and destination credentials: --pull-secret
// and --push-secret first, then (sources only) the image pull secrets of
// the workloads read with --from-cluster, then the user's docker config and
// credential helpers.
func (o *Options) keychains(ctx context.Context, workloadSecrets []secretRef) (src, dst authn.Keychain, err error) {
	src, dst = authn.DefaultKeychain, authn.DefaultKeychain
	if len(o.PullSecrets) == 0 && len(o.PushSecrets) == 0 && len(workloadSecrets) == 0 {
		return src, dst, nil
	}
	client, err := o.newClient()
	if err != nil {
		return nil, nil, fmt.Errorf("--pull-secret/--push-secret: connecting to the cluster (--kubeconfig, --context): %w", err)
	}
	if len(o.PullSecrets) > 0 || len(workloadSecrets) > 0 {
		ring := &registryauth.Keyring{}
		if err := o.readSecrets(ctx, client, ring, "--pull-secret", o.PullSecrets); err != nil {
			return nil, nil, err
		}
		for _, r := range workloadSecrets {
			// The workloads' own secrets help; one we cannot read is no reason to stop.
			if err := o.readSecrets(ctx, client, ring, "imagePullSecrets", []string{r.namespace + "/" + r.name}); err != nil {
				fmt.Fprintf(o.ErrOut, "warning: --from-cluster: skipping %v\n", err)
			}
		}
		src = ring.Keychain(authn.DefaultKeychain)
	}
	if len(o.PushSecrets) > 0 {
		ring := &registryauth.Keyring{}
		if err := o.readSecrets(ctx, client, ring, "--push-secret", o.PushSecrets); err != nil {
			return nil, nil, err
		}
		dst = ring.Keychain(authn.DefaultKeychain)
	}
	return src, dst, nil
}

// readSecrets adds the credentials of the named secrets to ring.
func (o *Options) readSecrets(ctx context.Context, c kubernetes.Interface, ring *registryauth.Keyring, flag string, names []string) error {
	for _, n := range names {
		ns, name := o.namespace, n
		if before, after, ok := strings.Cut(n, "/"); ok {
			ns, name = before, after
		}
		if name == "" || ns == "" {
			return fmt.Errorf("%s %q: want NAME or NAMESPACE/NAME", flag, n)
		}
		s, err := c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			hint := ""
			if strings.HasPrefix(flag, "--") {
				hint = " (create it with kubectl create secret docker-registry, or pass -n)"
			}
			return fmt.Errorf("%s %s: no secret %q in namespace %q%s", flag, n, name, ns, hint)
		}
		if err != nil {
			return fmt.Errorf("%s %s: reading the secret: %w", flag, n, err)
		}
		if err := ring.AddSecret(string(s.Type), s.Data); err != nil {
			return fmt.Errorf("%s %s: %w", flag, n, err)
		}
	}
	return nil
}
