package worker

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// maxMsgSize matches kubelet's CRI client (16 MiB): image lists can be large.
const maxMsgSize = 16 * 1024 * 1024

// CRIClient talks to a container runtime's CRI socket.
type CRIClient struct {
	conn     *grpc.ClientConn
	images   runtimeapi.ImageServiceClient
	runtime  runtimeapi.RuntimeServiceClient
	endpoint string
}

// Dial connects to endpoint (unix:///path/to.sock) and checks that a CRI
// runtime answers there, so a wrong socket fails with one clear message.
func Dial(ctx context.Context, endpoint string) (*CRIClient, error) {
	if !strings.HasPrefix(endpoint, "unix://") {
		return nil, fmt.Errorf("runtime endpoint %q: want unix:///path/to/socket", endpoint)
	}
	conn, err := grpc.NewClient(endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsgSize), grpc.MaxCallSendMsgSize(maxMsgSize)),
	)
	if err != nil {
		return nil, fmt.Errorf("connecting to the container runtime at %s: %w", endpoint, err)
	}
	c := &CRIClient{conn: conn, images: runtimeapi.NewImageServiceClient(conn), runtime: runtimeapi.NewRuntimeServiceClient(conn), endpoint: endpoint}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := c.runtime.Version(vctx, &runtimeapi.VersionRequest{}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("the container runtime at %s does not answer: %s", endpoint, grpcMessage(err))
	}
	return c, nil
}

// Version returns the runtime's name and version.
func (c *CRIClient) Version(ctx context.Context) (string, error) {
	v, err := c.runtime.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return "", err
	}
	return v.GetRuntimeName() + " " + v.GetRuntimeVersion(), nil
}

// Close closes the connection.
func (c *CRIClient) Close() error { return c.conn.Close() }

// ImageStatus returns the image or nil when the runtime does not have it.
func (c *CRIClient) ImageStatus(ctx context.Context, ref string) (*runtimeapi.Image, error) {
	resp, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return nil, err
	}
	return resp.GetImage(), nil
}

// PullImage pulls ref with optional credentials.
func (c *CRIClient) PullImage(ctx context.Context, ref string, auth *runtimeapi.AuthConfig) error {
	_, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
	return err
}
