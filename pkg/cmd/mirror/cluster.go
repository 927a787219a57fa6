package mirror

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/coral-dev/coral/pkg/registryauth"
	"github.com/coral-dev/coral/pkg/source"
)

// clusterImages lists the images of the pods and pod templates in scope,
// and the image pull secrets they name (pkg/source reads the cluster).
func (o *Options) clusterImages(ctx context.Context) ([]string, []source.SecretRef, error) {
	client, err := o.newClient()
	if err != nil {
		return nil, nil, fmt.Errorf("--from-cluster: connecting to the cluster (--kubeconfig, --context): %w", err)
	}
	ns := o.namespace
	if o.AllNamespaces {
		ns = metav1.NamespaceAll
	}
	got, err := source.FromCluster(ctx, client, ns)
	if err != nil {
		return nil, nil, fmt.Errorf("--from-cluster: %w", err)
	}
	for _, w := range got.Warnings {
		fmt.Fprintf(o.ErrOut, "warning: --from-cluster: %s\n", w)
	}
	return got.Images, got.PullSecrets, nil
}

// keychains builds the source and destination credentials: --pull-secret
// and --push-secret first, then (sources only) the image pull secrets of
// the workloads read with --from-cluster, then the user's docker config and
// credential helpers.
func (o *Options) keychains(ctx context.Context, workloadSecrets []source.SecretRef) (src, dst authn.Keychain, err error) {
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
			if err := o.readSecrets(ctx, client, ring, "imagePullSecrets", []string{r.Namespace + "/" + r.Name}); err != nil {
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
