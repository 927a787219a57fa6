package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Pinning keeps kubelet's image garbage collection from removing a
// prefetched image before a workload uses it. CRI has no call for it: on
// containerd it is the image label io.cri-containerd.pinned=pinned on every
// name of the image, set through containerd's images API on the same socket
// (namespace k8s.io). Whether the runtime honours it is read back from CRI
// (Image.pinned): containerd 1.6.26+ and 2.x do, older ones store the label
// and ignore it, CRI-O pins only from its own configuration.
const (
	pinLabel       = "io.cri-containerd.pinned"
	pinValue       = "pinned"
	criNamespace   = "k8s.io"
	pinVerifyDelay = 50 * time.Millisecond
)

// ErrCannotPin says the runtime offers no way to pin through its socket.
var ErrCannotPin = errors.New("the runtime cannot pin")

// Pinner pins an image the runtime holds.
type Pinner interface {
	Pin(ctx context.Context, ref string, img *runtimeapi.Image) error
}

// Pin labels every name of img and checks over CRI that the runtime now
// reports it pinned.
func (c *CRIClient) Pin(ctx context.Context, ref string, img *runtimeapi.Image) error {
	if img.GetPinned() {
		return nil
	}
	client := imagesapi.NewImagesClient(c.conn)
	nctx := metadata.AppendToOutgoingContext(ctx, "containerd-namespace", criNamespace)
	names := append(append([]string{img.GetId()}, img.GetRepoTags()...), img.GetRepoDigests()...)
	labelled := 0
	for _, n := range names {
		if n == "" {
			continue
		}
		got, err := client.Get(nctx, &imagesapi.GetImageRequest{Name: n})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if status.Code(err) == codes.Unimplemented {
			return fmt.Errorf("%w through its socket (CRI-O pins images from its own configuration)", ErrCannotPin)
		}
		if err != nil {
			return fmt.Errorf("pinning %s: %s", n, grpcMessage(err))
		}
		im := got.GetImage()
		if im.Labels == nil {
			im.Labels = map[string]string{}
		}
		im.Labels[pinLabel] = pinValue
		if _, err := client.Update(nctx, &imagesapi.UpdateImageRequest{Image: im, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels." + pinLabel}}}); err != nil {
			return fmt.Errorf("pinning %s: %s", n, grpcMessage(err))
		}
		labelled++
	}
	if labelled == 0 {
		return fmt.Errorf("pinning %s: the runtime lists none of its names", ref)
	}
	for i := 0; i < 20; i++ {
		st, err := c.ImageStatus(ctx, ref)
		if err == nil && st.GetPinned() {
			return nil
		}
		time.Sleep(pinVerifyDelay)
	}
	return fmt.Errorf("%w: it ignores the pin label (containerd 1.6.26+ or 2.x honours it)", ErrCannotPin)
}
