package provider

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageServer is a CRI image service that knows one image.
type imageServer struct {
	runtimeapi.UnimplementedImageServiceServer
}

func (imageServer) ImageStatus(_ context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	if req.GetImage().GetImage() != "registry.test/app:v1" {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	return &runtimeapi.ImageStatusResponse{Image: &runtimeapi.Image{
		Id:          "sha256:aaaa",
		RepoDigests: []string{"registry.test/app@sha256:bbbb"},
	}}, nil
}

// buildSockpipe builds e2e/cmd/sockpipe for this machine.
func buildSockpipe(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	bin := filepath.Join(t.TempDir(), "sockpipe")
	cmd := exec.Command("go", "build", "-o", bin, "./e2e/cmd/sockpipe")
	cmd.Dir = filepath.Join(filepath.Dir(file), "..", "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building sockpipe: %v\n%s", err, out)
	}
	return bin
}

// sockDir is a short directory for unix sockets (their paths are limited
// to 108 bytes; t.TempDir can be longer).
func sockDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "crifwd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// The path the tests take to a kind node's containerd, with the one step
// that needs Docker replaced: the bridge process is sockpipe run here
// instead of `docker exec -i NODE sockpipe`. A real gRPC CRI server listens
// on the "node" socket; the client dials the forwarder as it dials any
// node's runtime.
func TestCRIForwarderCarriesGRPCThroughSockpipe(t *testing.T) {
	bin := buildSockpipe(t)
	dir := sockDir(t)
	nodeSock := filepath.Join(dir, "containerd.sock")
	ln, err := net.Listen("unix", nodeSock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterImageServiceServer(srv, imageServer{})
	go srv.Serve(ln)
	defer srv.Stop()

	var mu sync.Mutex
	bridges := 0
	fwd, err := ForwardCRI(filepath.Join(dir, "node.sock"), func(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
		mu.Lock()
		bridges++
		mu.Unlock()
		cmd := exec.CommandContext(ctx, bin, nodeSock)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, os.Stderr
		return cmd.Run()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()

	// Two connections one after the other, several calls on each: each
	// connection gets its own bridge, and a closed one does not hang.
	for round := 0; round < 2; round++ {
		conn, err := grpc.NewClient(fwd.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		images := runtimeapi.NewImageServiceClient(conn)
		for i := 0; i < 3; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			resp, err := images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "registry.test/app:v1"}})
			cancel()
			if err != nil {
				t.Fatalf("round %d call %d through the forwarder: %v", round, i, err)
			}
			if got := resp.GetImage().GetRepoDigests(); len(got) != 1 || got[0] != "registry.test/app@sha256:bbbb" {
				t.Fatalf("round %d: repo digests %v", round, got)
			}
			resp, err = images.ImageStatus(context.Background(), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "registry.test/absent:v1"}})
			if err != nil || resp.Image != nil {
				t.Fatalf("an absent image: %v %v", resp, err)
			}
		}
		conn.Close()
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return bridges == 2 }, "one bridge per connection")

	done := make(chan error)
	go func() { done <- fwd.Close() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs with finished connections")
	}
	if _, err := os.Stat(fwd.Path); !os.IsNotExist(err) {
		t.Errorf("the forward socket is left after Close: %v", err)
	}
}

// A bridge that cannot reach the runtime ends the client's connection: the
// call fails instead of hanging.
func TestCRIForwarderBridgeFailureFailsTheCall(t *testing.T) {
	bin := buildSockpipe(t)
	dir := sockDir(t)
	fwd, err := ForwardCRI(filepath.Join(dir, "node.sock"), func(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
		cmd := exec.CommandContext(ctx, bin, filepath.Join(dir, "no-runtime.sock"))
		cmd.Stdin, cmd.Stdout = stdin, stdout
		return cmd.Run()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer fwd.Close()
	conn, err := grpc.NewClient(fwd.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = runtimeapi.NewImageServiceClient(conn).ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "x"}})
	if err == nil {
		t.Fatal("a call through a bridge to no runtime succeeded")
	}
	if ctx.Err() != nil {
		t.Errorf("the call waited for its deadline instead of failing: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(fmt.Sprintf("%s: not within 5s", what))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
