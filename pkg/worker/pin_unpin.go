package worker

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	"github.com/coral-dev/coral/pkg/report"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
)

// Unpinner releases a pin.
type Unpinner interface {
	// Unpin removes the pin of the image held under ref. held is false when
	// the runtime does not hold ref (nothing to do).
	Unpin(ctx context.Context, ref string) (held bool, err error)
}

// Unpin removes the pin label from every name of the image held under ref
// and checks over CRI that the runtime no longer reports it pinned, so
// kubelet's image GC may remove it again.
func (c *CRIClient) Unpin(ctx context.Context, ref string) (bool, error) {
	img, err := c.ImageStatus(ctx, ref)
	if err != nil {
		return false, fmt.Errorf("image status of %s: %s", ref, grpcMessage(err))
	}
	if img == nil {
		return false, nil
	}
	client := imagesapi.NewImagesClient(c.conn)
	nctx := metadata.AppendToOutgoingContext(ctx, "containerd-namespace", criNamespace)
	for _, n := range append(append([]string{img.GetId()}, img.GetRepoTags()...), img.GetRepoDigests()...) {
		if n == "" {
			continue
		}
		got, err := client.Get(nctx, &imagesapi.GetImageRequest{Name: n})
		if status.Code(err) == codes.NotFound {
			continue
		}
		if status.Code(err) == codes.Unimplemented {
			return true, fmt.Errorf("%w through its socket, nor unpin", ErrCannotPin)
		}
		if err != nil {
			return true, fmt.Errorf("unpinning %s: %s", n, grpcMessage(err))
		}
		im := got.GetImage()
		if _, ok := im.GetLabels()[pinLabel]; !ok {
			continue
		}
		delete(im.Labels, pinLabel)
		// A label named in the mask and absent from the image is removed.
		if _, err := client.Update(nctx, &imagesapi.UpdateImageRequest{Image: im, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels." + pinLabel}}}); err != nil {
			return true, fmt.Errorf("unpinning %s: %s", n, grpcMessage(err))
		}
	}
	for i := 0; i < 20; i++ {
		st, err := c.ImageStatus(ctx, ref)
		if err == nil && (st == nil || !st.GetPinned()) {
			return true, nil
		}
		time.Sleep(pinVerifyDelay)
	}
	return true, fmt.Errorf("unpinning %s: the runtime still reports it pinned", ref)
}

// UnpinAll releases the pins of items, one by one. An image the node does
// not hold is Skipped; an unpinned one is Present with Pinned false.
func UnpinAll(ctx context.Context, u Unpinner, items []Item) *report.WorkerReport {
	r := &report.WorkerReport{Version: report.WireVersion}
	for _, it := range items {
		start := time.Now()
		held, err := u.Unpin(ctx, it.Image)
		res := report.ItemResult{Item: it.Image, Status: report.StatusPresent, DurationMs: time.Since(start).Milliseconds()}
		switch {
		case err != nil:
			res.Status, res.Message = report.StatusFailed, err.Error()
		case !held:
			res.Status, res.Message = report.StatusSkipped, "not on the node"
		default:
			res.Message = "unpinned"
		}
		r.Items = append(r.Items, res)
	}
	return r
}

// mainUnpin is `coral-worker unpin --image=REF…`. It accepts the pull
// command's flags (a Job built for pulling only switches the verb) and
// ignores those it does not need.
func mainUnpin(ctx context.Context, args []string, stdout, stderr io.Writer, terminationPath string) int {
	fs := flag.NewFlagSet("coral-worker unpin", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var images imageFlags
	endpoint := fs.String("runtime-endpoint", "unix:///run/coral/cri.sock", "CRI socket")
	fs.Var(&images, "image", "image to unpin: REF or REF=DIGEST (repeatable)")
	for _, ignored := range []string{"max-parallel", "image-timeout", "retries", "backoff", "auth-dir"} {
		fs.String(ignored, "", "ignored (accepted for Jobs built for pull)")
	}
	fs.Bool("pin", false, "ignored")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if len(images) == 0 {
		fmt.Fprintln(stderr, "coral-worker: no --image given")
		return 2
	}
	expected := make([]string, len(images))
	client, err := Dial(ctx, *endpoint)
	if err != nil {
		r := &report.WorkerReport{Version: report.WireVersion}
		for _, it := range images {
			r.Items = append(r.Items, report.ItemResult{Item: it.Image, Status: report.StatusFailed, Message: err.Error()})
		}
		return finish(r, expected, stdout, stderr, terminationPath)
	}
	defer client.Close()
	return finish(UnpinAll(ctx, client, images), expected, stdout, stderr, terminationPath)
}
