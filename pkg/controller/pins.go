package controller

import (
	"context"

	coralv1 "github.com/coral-dev/coral/pkg/apis/coral/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func metaName(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// releasePins runs when a pinning ImagePrefetch is deleted. This version
// does not unpin on the nodes: it says so on the object (an event), with the
// nodes that keep pinned images, so nothing is silently left behind.
func (s *shared) releasePins(ctx context.Context, obj client.Object) error {
	ip, ok := obj.(*coralv1.ImagePrefetch)
	if !ok || !ip.Spec.Pin {
		return nil
	}
	recs, err := s.listRecords(ctx, ip.Namespace, string(ip.UID))
	if err != nil {
		return err
	}
	n := 0
	for _, r := range recs {
		for _, it := range r.Items {
			if it.Pinned {
				n++
				break
			}
		}
	}
	if n > 0 {
		s.events.Eventf(obj, nil, corev1.EventTypeWarning, "PinsKept", "Delete", "%d nodes keep this object's images pinned: this controller version does not unpin them", n)
	}
	return nil
}
